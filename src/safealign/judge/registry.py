"""The judge types: one table from which the schema's ``judges.<name>.type`` enum (checked by
tests/test_registries.py), :class:`safealign.specs.JudgeSpec`, the parse-time checks, the judge
stage's dispatch (:mod:`safealign.judge.__main__`), judge agreement and the tiny world's judges
are derived.

A judge type is its own module ``safealign.judge.<module>`` plus one line here. The module defines

- ``run(spec, rows) -> (judged, meta)``: the judge's own fields for each generation row (a list
  as long as ``rows``) and its provenance;
- ``safe(row, judged) -> bool | None``: the normalised ``safe`` of one judgment, which every
  later stage reads (None: not applicable, or no verdict);
- ``validate(spec, examples) -> (truth, pred, extra)``, only where ``world_data`` is set: the
  labels and predictions on held-out labelled examples of the tiny world.

Importable without torch: the workflow reads it while it parses, and dispatch imports a type's
module only when a job runs it (tests/test_registries.py imports every one).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class JudgeType:
    """One judge type (``judges.<name>.type``)."""

    module: str  # safealign.judge.<module> holds run / safe (/ validate)
    needs_model: bool  # judges.<name>.model is required
    question: str | None = None  # what it answers about a response (judge agreement); None: not compared
    world_data: str | None = None  # tiny world: world file key its model is trained on and validated against
    generates: bool = False  # decodes through the configured generation backend (vLLM or transformers)


JUDGE_TYPES: dict[str, JudgeType] = {
    "llama_guard": JudgeType("llama_guard", needs_model=True, question="is the response safe",
                             world_data="judge", generates=True),
    "refusal": JudgeType("refusal", needs_model=False, question="did the model refuse"),
    "toxicity": JudgeType("toxicity", needs_model=True, world_data="toxicity"),
}

# What every judge type's module defines; "validate" where the type has world_data.
MODULE_API = ("run", "safe")


def judge_type(name: str) -> JudgeType:
    """The registry entry of ``name``; an unknown name is an error listing the known ones."""
    if name not in JUDGE_TYPES:
        raise ValueError(f"judge type must be one of {sorted(JUDGE_TYPES)}, got {name!r} "
                         "(safealign.judge.registry.JUDGE_TYPES)")
    return JUDGE_TYPES[name]


def module(name: str) -> ModuleType:
    """The module that implements judge type ``name``, checked to define its functions."""
    entry = judge_type(name)
    mod = importlib.import_module(f"safealign.judge.{entry.module}")
    wanted = MODULE_API + (("validate",) if entry.world_data else ())
    missing = [f for f in wanted if not callable(getattr(mod, f, None))]
    if missing:
        raise TypeError(f"judge type {name!r}: module {mod.__name__} does not define {missing} "
                        "(safealign.judge.registry)")
    return mod
