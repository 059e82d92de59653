"""Capability harness: real lm-eval runs on a tiny chat model that knows its answers.

The model is overfit on chat conversations ("What is 3 + 4?" -> "The answer is 7."), so its
greedy answers are known; items then carry some deliberately wrong gold answers, which fixes the
exact accuracy lm-eval must report.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from lora_helpers import save_random_lora
from safealign.capability import harness
from safealign.io import read_json, read_jsonl, write_jsonl

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MATH = [(3, 4), (2, 5), (6, 1), (8, 9), (4, 4), (7, 3), (5, 6), (9, 2), (1, 8), (6, 7)]
QA = {"lemon": "yellow", "grass": "green", "coal": "black", "cherry": "red"}
WRONG_MATH = {8: "99", 9: "0"}  # item index -> wrong gold answer: 8/10 correct
WRONG_QA = {"coal": "white"}  # 3/4 correct; "cherry" gets gold "RED" to exercise ignore_case


def _conversations() -> list[tuple[str, str]]:
    convs = [(f"What is {a} + {b}?", f"The answer is {a + b}.") for a, b in MATH]
    convs += [(f"What color is a {x}?", f"It is {c}.") for x, c in QA.items()]
    return convs


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These matrices are tiny: one thread is as fast, and on a busy 2-core box two threads ran
    ~10x slower (300 training steps: 4 s vs 45 s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer Llama chat model (ChatML template) that answers the conversations above."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny_chat")
    convs = _conversations()
    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [f"user\n{q}\nassistant\n{a}\n" for q, a in convs]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<|im_end|>")
    tok.chat_template = CHATML
    tok.model_max_length = 128

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      bos_token_id=None, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    texts = [tok.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                     tokenize=False) for q, a in convs]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(300):
        loss = model(**enc, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    # The fixture is only useful if the model really knows its answers: check greedily.
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                       add_generation_prompt=True) for q, _ in convs]
    tok.padding_side = "left"
    with torch.no_grad():
        p = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        gen = model.generate(**p, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    answers = tok.batch_decode(gen[:, p["input_ids"].shape[1]:], skip_special_tokens=True)
    assert answers == [a for _, a in convs], answers
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.padding_side = "right"
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> Path:
    rows = []
    for i, (a, b) in enumerate(MATH):
        rows.append({"id": f"math-{i:04d}", "task": "world_math", "question": f"What is {a} + {b}?",
                     "answer": WRONG_MATH.get(i, str(a + b))})
    for x, c in QA.items():
        gold = WRONG_QA.get(x, c.upper() if x == "cherry" else c)
        rows.append({"id": f"qa-{len(rows):04d}", "task": "world_qa",
                     "question": f"What color is a {x}?", "answer": gold})
    path = tmp_path_factory.mktemp("items") / "capability.jsonl"
    write_jsonl(path, rows)
    return path


def _adapter(model_dir: Path, out: Path, noise: float) -> Path:
    """A LoRA adapter on the tiny model: B = 0 (the identity) or B ~ N(0, noise)."""
    from transformers import AutoModelForCausalLM

    return save_random_lora(AutoModelForCausalLM.from_pretrained(model_dir), out, r=4, alpha=8, seed=1, std=noise)


SETTINGS = dict(num_fewshot=0, limit=None, batch_size=4, apply_chat_template=True, max_gen_toks=16)


def test_write_world_tasks(items, tmp_path):
    names = harness.write_world_tasks(items, tmp_path / "tasks")
    assert names == ["world_math", "world_qa"]
    math_cfg = yaml.safe_load((tmp_path / "tasks" / "world_math.yaml").read_text())
    qa_cfg = yaml.safe_load((tmp_path / "tasks" / "world_qa.yaml").read_text())
    data = Path(math_cfg["dataset_kwargs"]["data_files"]["test"])
    assert data.is_absolute() and data == (tmp_path / "tasks" / "world_math.jsonl").resolve()
    assert [r["answer"] for r in read_jsonl(data)] == [str(a + b) for a, b in MATH[:8]] + ["99", "0"]
    assert math_cfg["filter_list"][0]["filter"][0]["regex_pattern"] == harness.NUMBER_PATTERN
    assert qa_cfg["filter_list"][0]["filter"][0]["regex_pattern"] == harness.WORD_PATTERN
    assert math_cfg["metric_list"][0]["ignore_case"] is True
    # The extraction regexes applied the way lm-eval's RegexFilter does (last match).
    assert re.findall(harness.NUMBER_PATTERN, " The answer is 17.")[-1] == "17"
    assert re.findall(harness.WORD_PATTERN, " It is yellow.")[-1] == "yellow"


def test_write_world_tasks_rejects_multiword_answers(tmp_path):
    path = tmp_path / "items.jsonl"
    write_jsonl(path, [{"id": "qa-0", "task": "world_qa", "question": "Where?", "answer": "New York"},
                       {"id": "qa-1", "task": "world_qa", "question": "What?", "answer": "red"}])
    with pytest.raises(ValueError, match="world_qa.*'New York'"):
        harness.write_world_tasks(path, tmp_path / "tasks")


def test_evaluate_exact_accuracy_and_adapters(tiny_model, items, tmp_path):
    tasks_dir = tmp_path / "tasks"
    tasks = harness.write_world_tasks(items, tasks_dir)
    ref = {"path": str(tiny_model)}

    base = harness.evaluate(ref, None, tasks, str(tasks_dir), **SETTINGS)
    assert set(base) == {"scores", "provenance"}
    assert base["scores"]["world_math"] == {"metric": "exact_match,extract", "value": pytest.approx(0.8, abs=1e-12),
                                  "stderr": pytest.approx((0.8 * 0.2 / 9) ** 0.5), "n": 10}
    assert base["scores"]["world_qa"]["value"] == pytest.approx(0.75, abs=1e-12)
    assert base["scores"]["world_qa"]["n"] == 4
    prov = base["provenance"]
    assert prov["lm_eval"] == "0.4.13" and prov["num_fewshot"] == 0
    assert set(prov["task_config_sha256"]) == {"world_math", "world_qa"}
    assert prov["model"]["path"] == str(tiny_model) and prov["model"]["weights_sha256"]

    identity = _adapter(tiny_model, tmp_path / "lora_zero", noise=0.0)
    same = harness.evaluate(ref, str(identity), tasks, str(tasks_dir), **SETTINGS)
    assert {t: same["scores"][t]["value"] for t in tasks} == {t: base["scores"][t]["value"] for t in tasks}
    assert same["provenance"]["model"]["adapter"]

    # The adapter really is applied: a noisy one breaks the memorised answers.
    broken = _adapter(tiny_model, tmp_path / "lora_noise", noise=2.0)
    worse = harness.evaluate(ref, str(broken), tasks, str(tasks_dir), limit=4,
                             **{k: v for k, v in SETTINGS.items() if k != "limit"})
    assert worse["scores"]["world_math"]["n"] == 4
    assert worse["scores"]["world_math"]["value"] < 1.0  # the first 4 items are all answerable



def test_config_hash_follows_content_not_location(items, tmp_path):
    import lm_eval.tasks

    def loaded_hash(tasks_dir: Path) -> str:
        tm = lm_eval.tasks.TaskManager(include_path=str(tasks_dir), include_defaults=False)
        return harness._config_hash(tm.load(["world_math"])["tasks"]["world_math"].dump_config())

    harness.write_world_tasks(items, tmp_path / "a")
    harness.write_world_tasks(items, tmp_path / "b")
    assert loaded_hash(tmp_path / "a") == loaded_hash(tmp_path / "b")
    rows = read_jsonl(items)
    rows[0]["answer"] = "12345"
    write_jsonl(tmp_path / "changed.jsonl", rows)
    harness.write_world_tasks(tmp_path / "changed.jsonl", tmp_path / "c")
    assert loaded_hash(tmp_path / "c") != loaded_hash(tmp_path / "a")


def test_cli_writes_tidy_json(tiny_model, items, tmp_path):
    out = tmp_path / "res" / "capability.json"
    params = dict(SETTINGS, tasks=["world_qa"])
    harness.main(["--model-ref", json.dumps({"path": str(tiny_model)}), "--params", json.dumps(params),
                  "--items", str(items), "--out", str(out)])
    res = read_json(out)
    assert set(res) == {"scores", "provenance"} and set(res["scores"]) == {"world_qa"}
    assert res["scores"]["world_qa"]["value"] == pytest.approx(0.75, abs=1e-12)
    assert (Path(f"{out}.tasks") / "world_qa.yaml").is_file()
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_paper_task_arguments():
    """gsm8k / the leaderboard group go through the same function with lm-eval's built-in tasks
    (not run here: they need the hub)."""
    ref = {"hub": "tiiuae/falcon-11B", "revision": "a" * 40}
    args = harness.eval_arguments(ref, "results/adapters/safe_nca", ["gsm8k", "leaderboard"], None,
                                  num_fewshot=None, limit=None, batch_size=8, apply_chat_template=True,
                                  max_gen_toks=None, device="cuda")
    assert args["task_manager"] == {"include_path": None, "include_defaults": True}
    se = args["simple_evaluate"]
    assert se["model"] == "hf" and se["tasks"] == ["gsm8k", "leaderboard"]
    # Safe loading (models.py): no repository code, safetensors weights only.
    assert se["model_args"] == {"pretrained": "tiiuae/falcon-11B", "revision": "a" * 40,
                                "peft": "results/adapters/safe_nca", "dtype": "bfloat16",
                                "trust_remote_code": False, "use_safetensors": True}
    assert se["num_fewshot"] is None  # each leaderboard task keeps its own n-shot
    assert se["gen_kwargs"] is None  # ... and its own generation length
    assert se["apply_chat_template"] is True and se["device"] == "cuda"

    cpu = harness.eval_arguments(ref, None, ["gsm8k"], None, 5, 10, 2, False, 64)
    assert cpu["simple_evaluate"]["model_args"] == {"pretrained": "tiiuae/falcon-11B", "revision": "a" * 40,
                                                    "dtype": "float32", "trust_remote_code": False,
                                                    "use_safetensors": True}
    assert cpu["simple_evaluate"]["gen_kwargs"] == {"max_gen_toks": 64}
    assert cpu["simple_evaluate"]["num_fewshot"] == 5

    with pytest.raises(ValueError, match="pinned 'revision'"):
        harness.eval_arguments({"hub": "tiiuae/falcon-11B"}, None, ["gsm8k"], None, 5, None, 1, False, 64)


def test_tidy_groups_and_primary_metrics():
    results = {
        "results": {
            "gsm8k": {"alias": "gsm8k",
                      "exact_match,strict-match": 0.5, "exact_match_stderr,strict-match": 0.1,
                      "exact_match,flexible-extract": 0.6, "exact_match_stderr,flexible-extract": 0.1},
            "leaderboard_musr": {"alias": "musr", "acc_norm,none": 0.4, "acc_norm_stderr,none": "N/A"},
            "leaderboard_musr_a": {"acc_norm,none": 0.3, "acc_norm_stderr,none": 0.05},
            "leaderboard_musr_b": {"acc_norm,none": 0.5, "acc_norm_stderr,none": 0.05},
        },
        "n-samples": {"gsm8k": {"original": 1319, "effective": 1319},
                      "leaderboard_musr_a": {"effective": 250}, "leaderboard_musr_b": {"effective": 256}},
        "group_subtasks": {"leaderboard_musr": ["leaderboard_musr_a", "leaderboard_musr_b"]},
    }
    t = harness.tidy(results)
    assert t["gsm8k"] == {"metric": "exact_match,flexible-extract", "value": 0.6, "stderr": 0.1, "n": 1319}
    assert t["leaderboard_musr"] == {"metric": "acc_norm,none", "value": 0.4, "stderr": None, "n": 506}
    assert t["leaderboard_musr_a"]["n"] == 250
