"""Build the tiny world's models from scratch: the base policy, the safety judge, the toxicity scorer.

Tokenizers are byte-level BPE trained with ``tokenizers``; models are small ``LlamaForCausalLM`` /
``LlamaForSequenceClassification`` (head_dim 32, so vLLM can serve them) trained with TRL's
``SFTTrainer`` or transformers' ``Trainer``, and saved with ``save_pretrained`` so that the same
loader that loads hub ids loads them.
"""

from __future__ import annotations

import random
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from ..chat import conversation, render

SPECIAL_CHATML = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SPECIAL_GUARD = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                 "<|finetune_right_pad_id|>"]


def template(name: str) -> str:
    return resources.files("safealign.resources").joinpath(name).read_text(encoding="utf-8")


def train_tokenizer(texts: list[str], vocab_size: int, special: list[str], chat_template: str,
                    eos: str, pad: str):
    """Train a byte-level BPE tokenizer and wrap it as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad)
    fast.chat_template = chat_template
    return fast


def llama_config(arch: dict[str, Any], tokenizer, num_labels: int | None = None):
    from transformers import LlamaConfig

    hidden = int(arch["hidden_size"])
    heads = int(arch["num_attention_heads"])
    if hidden // heads < 32:
        raise ValueError(f"head_dim = hidden_size / num_attention_heads = {hidden // heads} < 32: "
                         "vLLM cannot serve it")
    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=int(arch["intermediate_size"]),
        num_hidden_layers=int(arch["num_hidden_layers"]), num_attention_heads=heads,
        num_key_value_heads=heads, max_position_embeddings=int(arch["max_position_embeddings"]),
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    if num_labels:
        cfg.num_labels = num_labels
        cfg.id2label = {0: "non_toxic", 1: "toxic"}
        cfg.label2id = {"non_toxic": 0, "toxic": 1}
    return cfg


def split_heldout(rows: list[dict[str, Any]], spec: dict[str, Any], seed: int) -> tuple[list, list]:
    """Seeded (held-out, train) split of labelled examples (``validation_share`` held out)."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    n_val = max(1, int(len(rows) * float(spec.get("validation_share", 0.2))))
    return rows[:n_val], rows[n_val:]


def save(model, tok, out: Path) -> None:
    """``save_pretrained`` model and tokenizer; generation stops at the tokenizer's eos."""
    if getattr(model, "generation_config", None) is not None and tok.eos_token_id is not None:
        model.generation_config.eos_token_id = tok.eos_token_id
        model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    shutil.rmtree(out / "_trainer", ignore_errors=True)  # the Trainer's output_dir: empty (save_strategy "no")


def _training_args(cls, out: Path, train: dict[str, Any], seed: int, **extra):
    return cls(
        output_dir=str(out / "_trainer"), use_cpu=True, bf16=False, report_to=[], seed=seed,
        num_train_epochs=float(train["epochs"]), learning_rate=float(train["learning_rate"]),
        per_device_train_batch_size=int(train["batch_size"]), lr_scheduler_type="cosine",
        warmup_steps=int(train.get("warmup_steps", 10)), weight_decay=0.0, save_strategy="no",
        logging_steps=20, disable_tqdm=False, dataloader_num_workers=0, **extra,
    )


def build_base_model(corpus: list[dict[str, Any]], spec: dict[str, Any], out: Path, seed: int) -> dict:
    """Pretrain the tiny base policy on the instruction corpus; returns training stats."""
    import torch
    from datasets import Dataset
    from transformers import LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    from ..train import trl_compat

    trl_compat.score_labelled_positions_only()
    torch.manual_seed(seed)
    chat_tpl = template("chatml_chat_template.jinja")
    texts = [m["content"] for row in corpus for m in row["messages"]]
    tok = train_tokenizer(texts, int(spec["vocab_size"]), SPECIAL_CHATML, chat_tpl,
                          eos="<|im_end|>", pad="<|endoftext|>")
    model = LlamaForCausalLM(llama_config(spec["architecture"], tok))
    args = _training_args(SFTConfig, out, spec["train"], seed,
                          max_length=int(spec["architecture"]["max_position_embeddings"]))
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(corpus),
                         processing_class=tok)
    result = trainer.train()
    save(model, tok, out)
    return {"train_loss": result.training_loss, "n_parameters": model.num_parameters(),
            "n_conversations": len(corpus)}


def build_judge(rows: list[dict[str, Any]], spec: dict[str, Any], out: Path, seed: int,
                chat_template: str | None = None) -> dict:
    """Train the tiny safety judge to answer in Llama Guard 3's format; returns held-out accuracy.

    ``chat_template`` replaces the shipped Llama Guard 3 template (tests train a judge on one that
    ends at ``<|end_header_id|>``, whose verdicts start with the blank line).
    """
    import torch
    from datasets import Dataset
    from transformers import LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    from ..train import trl_compat

    trl_compat.score_labelled_positions_only()  # the verdict's few tokens, not the ~250 of the prompt
    torch.manual_seed(seed)
    val, train = split_heldout(rows, spec, seed)
    guard_tpl = chat_template or template("llama_guard3_chat_template.jinja")
    # Render once with a throwaway tokenizer to give the BPE the judge prompt's fixed text.
    from jinja2 import Template

    jt = Template(guard_tpl)
    sample_texts = [jt.render(messages=conversation(r["prompt"], response=r["response"]))
                    for r in train[:200]]
    texts = sample_texts + [r["verdict"] for r in train] + ["safe", "unsafe"] * 50
    tok = train_tokenizer(texts, int(spec["vocab_size"]), SPECIAL_GUARD, guard_tpl,
                          eos="<|eot_id|>", pad="<|finetune_right_pad_id|>")
    model = LlamaForCausalLM(llama_config(spec["architecture"], tok))

    def example(r):
        # Tokenize prompt and verdict separately, exactly as the judge sees them at inference:
        # the template ends in "\n\n", which BPE would merge differently with the verdict.
        prompt = tok(render(tok, conversation(r["prompt"], response=r["response"])),
                     add_special_tokens=False)["input_ids"]
        answer = tok(r["verdict"] + "<|eot_id|>", add_special_tokens=False)["input_ids"]
        return {"input_ids": prompt + answer, "completion_mask": [0] * len(prompt) + [1] * len(answer)}

    args = _training_args(SFTConfig, out, spec["train"], seed,
                          max_length=int(spec["architecture"]["max_position_embeddings"]),
                          completion_only_loss=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list([example(r) for r in train]),
                         processing_class=tok)
    result = trainer.train()
    save(model, tok, out)
    return {"train_loss": result.training_loss, "n_train": len(train), "validation": val}


def build_toxicity_classifier(rows: list[dict[str, Any]], spec: dict[str, Any], out: Path, seed: int) -> dict:
    """Train the tiny toxicity classifier (``AutoModelForSequenceClassification``)."""
    import torch
    from datasets import Dataset
    from transformers import LlamaForSequenceClassification, Trainer, TrainingArguments

    torch.manual_seed(seed)
    val, train = split_heldout(rows, spec, seed)
    tok = train_tokenizer([r["text"] for r in train], int(spec["vocab_size"]), ["<|endoftext|>", "<|pad|>"],
                          chat_template="", eos="<|endoftext|>", pad="<|pad|>")
    tok.chat_template = None
    model = LlamaForSequenceClassification(llama_config(spec["architecture"], tok, num_labels=2))

    def encode(batch):
        enc = tok(batch["text"], truncation=True, max_length=64)
        enc["labels"] = batch["label"]
        return enc

    ds = Dataset.from_list(train).map(encode, batched=True, remove_columns=["id", "text", "label"])
    from transformers import DataCollatorWithPadding

    args = _training_args(TrainingArguments, out, spec["train"], seed)
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      data_collator=DataCollatorWithPadding(tok))
    result = trainer.train()
    save(model, tok, out)
    return {"train_loss": result.training_loss, "n_train": len(train), "validation": val}
