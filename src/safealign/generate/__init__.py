"""Generation behind one interface with two backends (transformers, vLLM).

``generate_texts(model_ref, adapter, prompts, settings, backend)`` takes prompts already rendered
by :func:`safealign.chat.render` and returns one dict per (prompt, sample)::

    {"prompt_index": i, "sample": k, "text": "...",
     "first_token_logprobs": {"<token text>": logprob, ...}}   # only if settings["first_token_logprobs"]

``settings`` keys: max_new_tokens, do_sample, temperature, top_p, num_samples, seed, batch_size,
and optionally first_token_logprobs (top-k count to return for the first generated token).
"""

from __future__ import annotations

from typing import Any


def generate_texts(
    model_ref: dict[str, Any],
    adapter: str | None,
    prompts: list[str],
    settings: dict[str, Any],
    backend: str = "transformers",
) -> list[dict[str, Any]]:
    from ..models import resolve_trained

    model_ref, adapter = resolve_trained(model_ref, adapter)
    if backend == "transformers":
        from .hf import generate_texts as impl
    elif backend == "vllm":
        from .vllm_backend import generate_texts as impl
    else:
        raise ValueError(f"generation backend must be 'transformers' or 'vllm', got {backend!r}")
    return impl(model_ref, adapter, prompts, settings)
