"""The one chat-template renderer.

Every prompt a model sees, the policy's and the judge's, is rendered by the model tokenizer's own
chat template (``tokenizer.apply_chat_template``), never by string formatting in this project.
"""

from __future__ import annotations

from typing import Any

from .io import sha256_text

Message = dict[str, str]


def conversation(prompt: str, system: str | None = None, response: str | None = None) -> list[Message]:
    """Build a conversation: optional system turn, the user prompt, optional assistant turn."""
    msgs: list[Message] = []
    if system:
        msgs.append({"role": "system", "content": system})
    msgs.append({"role": "user", "content": prompt})
    if response is not None:
        msgs.append({"role": "assistant", "content": response})
    return msgs


PROMPT_PLACEHOLDER = "{prompt}"


def user_turn(template: str | None, prompt: str) -> str:
    """The user turn for a benchmark prompt: ``template`` with ``{prompt}`` replaced by ``prompt``.

    Plain replacement, not ``str.format``: a template may hold other braces verbatim. ``None`` is the
    bare prompt. config.benchmarks.<b>.user_template is checked at parse time to hold the placeholder.
    """
    if template is None:
        return prompt
    if PROMPT_PLACEHOLDER not in template:
        raise ValueError(f"user template {template!r} has no {PROMPT_PLACEHOLDER} placeholder")
    return template.replace(PROMPT_PLACEHOLDER, prompt)


def render(tokenizer: Any, messages: list[Message], add_generation_prompt: bool = True) -> str:
    """Render ``messages`` with the tokenizer's own chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no chat template")
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


PLACEHOLDER_USER = "<<USER_PROMPT>>"
PLACEHOLDER_ASSISTANT = "<<ASSISTANT_RESPONSE>>"


def template_hash(tokenizer: Any) -> str:
    """SHA-256 of a user + assistant conversation of placeholder texts, rendered with the tokenizer's
    chat template: two tokenizers with the same hash render byte-identical prompts for the same
    conversation. Recorded for the judge (judgment meta) and for the policy (``chat_template_sha256``
    in train.json, generation meta and capability provenance; :func:`check_same_template`).
    """
    return sha256_text(
        render(tokenizer, conversation(PLACEHOLDER_USER, response=PLACEHOLDER_ASSISTANT))
    )


def check_same_template(variant: str, hashes: dict[str, str | None]) -> None:
    """Fail when the stages of one variant rendered its prompts with different chat templates.

    ``hashes`` maps a stage and the file that records it (``"training (train.json)"``) to the
    :func:`template_hash` that stage recorded; ``None`` is a stage that applied no chat template
    (lm-eval with ``apply_chat_template: false``) and is not compared. Scores of a model trained
    with one template and evaluated with another are not comparable (lm-evaluation-harness #1841).
    """
    seen = {stage: h for stage, h in hashes.items() if h is not None}
    if len(set(seen.values())) > 1:
        listed = "; ".join(f"{stage}: {h}" for stage, h in seen.items())
        raise ValueError(f"variant {variant}: the policy's chat template differs between stages ({listed}); "
                         "rerun the stages whose template is not the one the variant was trained with")
