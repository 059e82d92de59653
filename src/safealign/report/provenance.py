"""The report's provenance: the config hash, the git commit, library versions per stage, the
configured and the loaded models / judges / datasets, judge templates and the trainers' effective
hyperparameters."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import io
from ..specs import ReportSpec
from .sections import esc


def effective_hyperparameters_table(train_logs: dict[str, Any]):
    """Variant x effective training hyperparameter, from train.json's ``effective_hyperparameters``
    (what the trainer actually ran with); None when no train.json carries the key."""
    import pandas as pd

    rows = {k: v["effective_hyperparameters"] for k, v in sorted(train_logs.items())
            if isinstance(v.get("effective_hyperparameters"), dict)}
    if not rows:
        return None
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.map(lambda v: json.dumps(v) if isinstance(v, list | dict) else v)

def variant_metas(paths: list[str]) -> dict[str, Any]:
    """The grid cells' provenance files merged per variant: ``<model>/<variant>/generation`` from
    each ``generations/<model>/<variant>/<benchmark>.meta.json`` (their ``benchmarks`` joined), and
    ``<model>/<variant>/<judge>`` from each ``judgments/<model>/<variant>/<benchmark>/<judge>.meta.json``
    (their ``files`` joined). The rest of a record (model, libraries, serving) is the variant's,
    the same in each of its cells; the first cell's is kept."""
    metas: dict[str, Any] = {}
    for path in paths:
        q = Path(path).parts
        name = q[-1].removesuffix(".meta.json")
        if len(q) >= 5 and q[-5] == "judgments":
            key, joined = f"{q[-4]}/{q[-3]}/{name}", "files"
        else:
            key, joined = f"{q[-3]}/{q[-2]}/generation", "benchmarks"
        meta = io.read_json(path)
        if key in metas:
            metas[key][joined] = {**(metas[key].get(joined) or {}), **(meta.get(joined) or {})}
        else:
            metas[key] = meta
    return metas


def git_commit(cwd: Path) -> str:
    """The checkout's commit at run time (with '+ uncommitted changes' when dirty), or a note."""
    import subprocess

    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "not a git checkout"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha.stdout.strip() + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"


REPORT_LIBRARIES = ("numpy", "scipy", "pandas", "seaborn", "matplotlib", "scikit-learn", "snakemake")


def library_table(sources: dict[str, dict[str, str]]):
    """Library x the versions each stage recorded (train, generation, judging, capability) and the
    report's own environment; one row per library."""
    import importlib.metadata as md

    import pandas as pd

    own = {}
    for name in REPORT_LIBRARIES:
        with contextlib.suppress(md.PackageNotFoundError):
            own[name] = md.version(name)
    table: dict[str, dict[str, str]] = {}
    for stage, libs in list(sources.items()) + [("report", own)]:
        for lib, version in (libs or {}).items():
            table.setdefault(lib, {})[stage] = str(version)
    return pd.DataFrame.from_dict(table, orient="index").sort_index().fillna("")


def provenance_html(params: dict[str, Any] | ReportSpec, train_logs: dict[str, Any], metas: dict[str, Any],
                    capability: dict[str, Any], cwd: Path) -> str:
    import pandas as pd

    spec = ReportSpec.from_params(params)
    parts = ["<table class='grid'>",
             f"<tr><th>config sha256</th><td><code>{esc(spec.config_sha256)}</code> "
             "(canonical JSON of the merged, validated config)</td></tr>",
             f"<tr><th>git commit</th><td><code>{esc(git_commit(cwd))}</code></td></tr>",
             f"<tr><th>generated</th><td>{datetime.now(UTC).isoformat(timespec='seconds')}</td></tr></table>"]
    sources = {}
    for key, log in sorted(train_logs.items()):
        sources.setdefault("train", log.get("libraries") or {})
    for key, meta in sorted(metas.items()):
        stage = "generate" if key.endswith("/generation") else "judge"
        sources.setdefault(stage, meta.get("libraries") or {})
    for key, cap in sorted(capability.items()):
        sources.setdefault("capability", (cap.get("provenance") or {}).get("libraries") or {})
    parts += ["<h3>Library versions</h3>", library_table(sources).to_html(classes="grid")]
    refs = spec.sources
    if refs:
        parts += ["<h3>Models, judges and datasets as configured</h3><p>A hub revision that is not a "
                  "commit sha is not reproducible (the workflow warns at parse time).</p>",
                  pd.DataFrame(refs, columns=["kind", "name", "source", "revision", "config", "split"]).fillna("")
                  .to_html(index=False, classes="grid")]
    rows = []
    for key, meta in sorted(metas.items()):
        if key.endswith("/generation"):
            model = meta.get("model") or {}
            rows.append({"what": key.removesuffix("/generation"), "kind": "policy",
                         "source": model.get("hub") or model.get("path") or "",
                         "revision": model.get("revision") or model.get("commit") or "",
                         "weights sha256": "; ".join(f"{k}: {v[:16]}…" for k, v in
                                                     {**(model.get("weights_sha256") or {}),
                                                      **(model.get("adapter") or {})}.items())})
    judge_rows, templates = {}, {}
    for key, meta in sorted(metas.items()):
        if key.endswith("/generation"):
            continue
        for _, info in sorted((meta.get("files") or {}).items()):
            model = info.get("model") or {}
            jname = meta.get("judge") or key.rsplit("/", 1)[-1]
            judge_rows[jname] = {"what": jname, "kind": f"judge ({meta.get('type', '')})",
                                 "source": model.get("hub") or model.get("path") or "no model (rule-based)",
                                 "revision": model.get("revision") or model.get("commit") or "",
                                 "weights sha256": "; ".join(f"{k}: {v[:16]}…" for k, v in
                                                             (model.get("weights_sha256") or {}).items())}
            if info.get("template_sha256"):
                templates.setdefault(jname, set()).add(info["template_sha256"])
    rows += list(judge_rows.values())
    if rows:
        parts += ["<h3>What was loaded</h3>", pd.DataFrame(rows).to_html(index=False, classes="grid small")]
    if templates:
        parts += ["<h3>Judge prompt templates</h3><ul>" + "".join(
            f"<li>{esc(j)}: <code>{esc(', '.join(sorted(h)))}</code> (sha256 of the rendered chat "
            "template)</li>" for j, h in sorted(templates.items())) + "</ul>"]
    hp = effective_hyperparameters_table(train_logs)
    if hp is not None:
        parts += ["<h3>Effective training hyperparameters</h3><p>What each trainer ran with "
                  "(train.json <code>effective_hyperparameters</code>), after method defaults and mappings.</p>",
                  hp.to_html(na_rep="–", classes="grid small")]
    elif train_logs:
        parts += ["<p>No train.json records <code>effective_hyperparameters</code>.</p>"]
    return "".join(parts)


