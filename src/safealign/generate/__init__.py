"""Generation behind one interface with two backends (transformers, vLLM).

``generate_texts(model_ref, adapter, prompts, settings, backend)`` takes prompts already rendered
by :func:`safealign.chat.render` and returns one dict per (prompt, sample)::

    {"prompt_index": i, "sample": k, "text": "...",
     "finished": True,   # the sample ended with EOS, not at max_new_tokens
     "first_token_logprobs": {"<token text>": logprob, ...},  # only if settings["first_token_logprobs"]
     "token_ids": [id, ...],                                # only if settings["logprobs"]:
     "logprobs": [{"<token text>": logprob, ...}, ...]}     # generated ids (EOS included) and
                                                            # each position's top-k
``settings`` keys: max_new_tokens, do_sample, temperature, top_p, num_samples, seed, batch_size,
and optionally first_token_logprobs (top-k count to return for the first generated token) and
logprobs (top-k count to return at every generated position). Top-k entries are keyed by
``tokenizer.decode([id])`` and are the log-probabilities after logits processing.
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
