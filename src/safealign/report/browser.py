"""The responses browser: every variant's response and each judge's verdict per prompt, embedded
as JSON (inert: <, > and & escaped) and shown by templates/browser.js as text, never as HTML."""

from __future__ import annotations

import json
from typing import Any

from markupsafe import Markup

from ..grid import BASE
from .templating import render_template, resource

MAX_PROMPTS_PER_BENCHMARK = 200  # per benchmark in the embedded browser, categories interleaved


def _verdict(row: dict[str, Any]) -> str:
    if "toxicity" in row:
        return f"toxicity {row['toxicity']:.3f}"
    if not row.get("parse_ok", True):
        return "parse failure"
    if "refusal" in row:
        return "refusal" if row["refusal"] else "compliance"
    cats = ",".join(row.get("categories") or [])
    return f"{row.get('verdict')}{' ' + cats if cats else ''}"


def browser_data(judgments: dict[tuple[str, str, str, str], list[dict]], labels) -> dict[str, Any]:
    """Every variant's response and verdicts per prompt (and sample), per benchmark; at most
    MAX_PROMPTS_PER_BENCHMARK prompts each, chosen deterministically across categories."""
    variants = sorted({(m, v) for m, v, _, _ in judgments}, key=lambda mv: (mv[0], mv[1] != BASE, mv[1]))
    judges = sorted({j for _, _, _, j in judgments})
    items: dict[tuple[str, str, int], dict[str, Any]] = {}
    for (model, variant, bench, judge), rows in sorted(judgments.items()):
        col = variants.index((model, variant))
        for r in rows:
            key = (bench, str(r.get("id")), int(r.get("sample") or 0))
            item = items.get(key)
            if item is None:
                item = items[key] = {"b": bench, "id": str(r.get("id")), "s": key[2], "p": r.get("prompt") or "",
                                     "c": r.get("category") or "", "a": r.get("attack_type") or "",
                                     "l": r.get("label") or "", "r": [None] * len(variants)}
            cell = item["r"][col] or {"t": r.get("response") or "", "v": {}}
            cell["v"][judge] = _verdict(r)
            item["r"][col] = cell
    chosen = []
    for bench in sorted({k[0] for k in items}):
        keys = [k for k in items if k[0] == bench]
        by_cat: dict[str, list] = {}
        for k in keys:
            by_cat.setdefault(items[k]["c"], []).append(k)
        queues = [list(v) for _, v in sorted(by_cat.items())]
        picked = []
        while len(picked) < MAX_PROMPTS_PER_BENCHMARK and any(queues):
            for q in queues:
                if q and len(picked) < MAX_PROMPTS_PER_BENCHMARK:
                    picked.append(q.pop(0))
        chosen += sorted(picked, key=lambda k: keys.index(k))
    return {"variants": [labels.get(mv, mv[1]) for mv in variants], "judges": judges,
            "items": [items[k] for k in chosen],
            "total": {b: sum(1 for k in items if k[0] == b) for b in sorted({k[0] for k in items})}}


def embed_json(data: Any) -> str:
    """JSON safe inside <script type="application/json">: <, > and & escaped as \\u sequences,
    so a '</script>' in a response cannot close the tag (and nothing is ever parsed as HTML)."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def browser_html(data: dict[str, Any]) -> str:
    """The section's controls, the embedded data and its script (templates/browser.html.j2)."""
    if not data["items"]:
        return "<p>No judged responses.</p>"
    return render_template("browser.html.j2", shown=len(data["items"]), total=sum(data["total"].values()),
                           max_prompts=MAX_PROMPTS_PER_BENCHMARK, data_json=Markup(embed_json(data)),
                           script=resource("browser.js"))
