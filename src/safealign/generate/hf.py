"""transformers ``generate`` backend: batched, left-padded."""

from __future__ import annotations

import json
from typing import Any

from tqdm.auto import tqdm

from ..models import load_model, load_tokenizer
from ..specs import GenerationSettings

_LOADED: dict[str, tuple] = {}


def _load(model_ref: dict[str, Any], adapter: str | None, dtype: str, quantization: str | None = None):
    """Load once per process: a job generating several benchmarks reuses the model.

    ``quantization="4bit"``: the NF4 base a QLoRA adapter was trained on (generation.qlora_base).
    """
    key = json.dumps([model_ref, adapter, dtype, quantization], sort_keys=True)
    if key not in _LOADED:
        import torch

        model = load_model(model_ref, adapter=adapter, dtype=dtype, quantization=quantization)
        # from_pretrained loads on the CPU; generate on the GPU (scripts/gpu-check). A 4-bit model is
        # already placed by bitsandbytes, one spread over a job's GPUs by device_map="auto".
        if torch.cuda.is_available() and quantization is None and getattr(model, "hf_device_map", None) is None:
            model.to("cuda")
        _LOADED[key] = (load_tokenizer(model_ref, padding_side="left"), model)
    return _LOADED[key]


def generate_texts(
    model_ref: dict[str, Any], adapter: str | None, prompts: list[str],
    settings: dict[str, Any] | GenerationSettings,
) -> list[dict[str, Any]]:
    """Generate with transformers; ``settings`` as :class:`safealign.specs.GenerationSettings`
    (its defaults: the config schema's)."""
    import torch

    s = GenerationSettings.from_params(settings)
    tok, model = _load(model_ref, adapter, s.dtype, s.quantization)
    do_sample = bool(s.do_sample)
    num_samples = int(s.num_samples)
    top_k_lp = int(s.first_token_logprobs or 0)
    per_pos_lp = int(s.logprobs or 0)
    batch_size = int(s.batch_size)
    gen_kwargs: dict[str, Any] = dict(
        max_new_tokens=int(s.max_new_tokens),
        do_sample=do_sample,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        num_return_sequences=num_samples,
        output_scores=bool(top_k_lp or per_pos_lp),
        return_dict_in_generate=True,
    )
    if do_sample:
        gen_kwargs.update(temperature=float(s.temperature), top_p=float(s.top_p))
    else:
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    torch.manual_seed(int(s.seed))
    names: dict[int, str] = {}  # token id -> text: per-position top-k decodes the same ids again

    def name(i: int) -> str:
        if i not in names:
            names[i] = tok.decode([i])
        return names[i]

    out: list[dict[str, Any]] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="generate", unit="batch"):
        batch = prompts[start : start + batch_size]
        enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        with torch.no_grad():
            res = model.generate(**enc, **gen_kwargs)
        new_tokens = res.sequences[:, enc["input_ids"].shape[1] :]
        texts = tok.batch_decode(new_tokens, skip_special_tokens=True)
        first_lp = None
        if top_k_lp:
            first_lp = torch.log_softmax(res.scores[0].float(), dim=-1)
        steps = []
        if per_pos_lp:
            # Top-k per step, never the whole (rows, steps, vocab) tensor: 128k-vocab judges.
            steps = [tuple(t.tolist() for t in torch.log_softmax(s.float(), dim=-1).topk(per_pos_lp))
                     for s in res.scores]
        for j, text in enumerate(texts):
            ids = new_tokens[j].tolist()
            # Up to and including EOS; what follows is padding.
            finished = tok.eos_token_id in ids
            ids = ids[: ids.index(tok.eos_token_id) + 1] if finished else ids
            row: dict[str, Any] = {
                "prompt_index": start + j // num_samples,
                "sample": j % num_samples,
                "text": text,
                "finished": finished,
            }
            if per_pos_lp:
                row["token_ids"] = ids
                row["logprobs"] = [
                    {name(i): v for v, i in zip(vals[j], idx[j], strict=True)}
                    for vals, idx in steps[: len(ids)]
                ]
            if first_lp is not None:
                vals, idx = first_lp[j].topk(top_k_lp)
                row["first_token_logprobs"] = {
                    tok.decode([int(i)]): float(v) for v, i in zip(vals, idx, strict=True)
                }
            out.append(row)
    return out
