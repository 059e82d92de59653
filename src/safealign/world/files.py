"""The tiny world's files: one registry for the rule that writes them (rules/data.smk), the code
that writes them (:mod:`safealign.world.__main__`), the config's ``source: {world: <key>}``
(workflow/schemas/config.schema.yaml, tested against this) and :mod:`safealign.dag`.

Importable without torch: the workflow reads it while it parses.
"""

from __future__ import annotations

from ..judge.registry import JUDGE_TYPES

# A world file's key (what `source: {world: <key>}` names) -> its file name under results/world/data/.
FILES = {
    "corpus": "corpus.jsonl",
    "preference": "preference.jsonl",
    "alert": "alert.jsonl",
    "alert_adversarial": "alert_adversarial.jsonl",
    "xstest": "xstest.csv",
    "rtp": "rtp.jsonl",
    "capability": "capability.jsonl",
    "judge": "judge.jsonl",
    "toxicity": "toxicity.jsonl",
}

# A tiny-world judge's type -> the world file it trains on, which is also the `python -m
# safealign.world` subcommand that trains it (safealign.judge.registry: world_data).
JUDGE_DATA = {name: t.world_data for name, t in JUDGE_TYPES.items() if t.world_data}
