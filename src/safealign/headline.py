"""What the report shows, resolved from config at parse time: the headline columns
(config.report.headline or the default from the configured names), the paper's reference figures
checked against the configured benchmarks, judges and metrics, the benchmarks the global score
averages, every configured model / judge / dataset source, and the template and resource files
the report rule reads. ``safealign.dag`` and ``safealign.checks`` use it; it imports nothing of the
report itself (pandas, seaborn, jinja2), so parsing the workflow stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .metrics import GLOBAL, METRICS, NOT_SHARES

# The report's page template and its CSS / JS, inputs of the report rule (editing one reruns it).
REPORT_TEMPLATES = Path(__file__).resolve().parent / "report" / "templates"


def report_resources() -> list[str]:
    """Every file under the report's templates directory (the page template, its fragments, its
    CSS and JS), sorted: the report rule declares them as ``input:``."""
    return sorted(str(p) for p in REPORT_TEMPLATES.iterdir() if p.is_file())


# The values of config.report.paper_reference[].compare.
REFERENCE_COMPARE = ("base", "aligned", "none")


def _judges_of_kind(config: dict[str, Any], kind: str) -> list[str]:
    return [j for j, s in config["judges"].items() if kind in s.get("applies_to", [])]


def global_parts(config: dict[str, Any]) -> list[str]:
    """The benchmarks whose safety_score the global score averages (config order)."""
    return [b for b, s in config["benchmarks"].items() if s.get("global_safety")]


def default_headline(config: dict[str, Any]) -> list[dict[str, str]]:
    """The headline when config.report.headline is unset, built from the configured names only.

    Global score per safety judge (and the conservative one for Llama Guard judges), each global
    part with the Llama Guard judges, over-refusal with the refusal judges, every toxicity metric.
    """
    types = {j: s["type"] for j, s in config["judges"].items()}
    out: list[dict[str, str]] = []
    parts = global_parts(config)
    safety_judges = _judges_of_kind(config, "safety")
    if parts:
        for j in safety_judges:
            out.append({"benchmark": GLOBAL, "judge": j, "metric": "global_safety_score"})
            if types[j] == "llama_guard":
                out.append({"benchmark": GLOBAL, "judge": j, "metric": "global_safety_score_conservative"})
    for b, spec in config["benchmarks"].items():
        kind = spec["kind"]
        for j in _judges_of_kind(config, kind):
            if kind == "safety" and types[j] == "llama_guard" and b in parts:
                out.append({"benchmark": b, "judge": j, "metric": "safety_score"})
            elif kind == "overrefusal" and types[j] == "refusal":
                out += [{"benchmark": b, "judge": j, "metric": m}
                        for m in ("over_refusal_rate", "unsafe_refusal_rate")]
            elif kind == "toxicity":
                out += [{"benchmark": b, "judge": j, "metric": m}
                        for m in ("mean_toxicity", "expected_max_toxicity", "toxicity_probability")]
    return out


def resolve_headline(config: dict[str, Any]) -> list[dict[str, str]]:
    """config.report.headline (or the default), each entry with its title and group filled in."""
    entries = (config.get("report") or {}).get("headline") or default_headline(config)
    return [{"title": e.get("title") or f"{e['benchmark']}: {e['metric']} [{e['judge']}]",
             "benchmark": e["benchmark"], "judge": e["judge"], "metric": e["metric"],
             "group": e.get("group") or ""} for e in entries]


def check_metric_ref(config: dict[str, Any], entry: dict[str, Any], key: str) -> list[str]:
    """Why ``entry`` (a benchmark/judge/metric triple at config key ``key``) names nothing, if so."""
    errors = []
    bench, judge, metric = entry.get("benchmark"), entry.get("judge"), entry.get("metric")
    benchmarks = config["benchmarks"]
    if bench == GLOBAL:
        kind = GLOBAL
        if not global_parts(config):
            errors.append(f"{key}.benchmark is {GLOBAL!r} but no benchmark is marked "
                          "global_safety: true (config.benchmarks.<name>.global_safety)")
    elif bench in benchmarks:
        kind = benchmarks[bench]["kind"]
    else:
        return [f"{key}.benchmark {bench!r} is not a configured benchmark "
                f"(config.benchmarks: {list(benchmarks)}, or {GLOBAL!r})"]
    if judge not in config["judges"]:
        errors.append(f"{key}.judge {judge!r} is not a configured judge (config.judges: {list(config['judges'])})")
    elif (kind_needed := "safety" if kind == GLOBAL else kind) not in config["judges"][judge].get("applies_to", []):
        errors.append(f"{key}.judge {judge!r} does not judge benchmark kind {kind_needed!r} "
                      f"(config.judges.{judge}.applies_to)")
    if metric not in METRICS:
        errors.append(f"{key}.metric {metric!r} is not a metric (valid: {sorted(METRICS)})")
    elif kind not in METRICS[metric].kinds:
        valid = sorted(m for m, info in METRICS.items() if kind in info.kinds)
        errors.append(f"{key}.metric {metric!r} is not produced for {bench!r} (kind {kind!r}); "
                      f"valid: {valid}")
    return errors


def check_report_config(config: dict[str, Any]) -> list[str]:
    """Every error of config.report (headline and paper_reference entries), each naming its key."""
    report = config.get("report") or {}
    errors = []
    for i, e in enumerate(report.get("headline") or []):
        errors += check_metric_ref(config, e, f"config.report.headline[{i}]")
    for i, e in enumerate(report.get("paper_reference") or []):
        errors += check_metric_ref(config, e, f"config.report.paper_reference[{i}]")
        if e.get("compare", "none") not in REFERENCE_COMPARE:
            errors.append(f"config.report.paper_reference[{i}].compare must be one of "
                          f"{list(REFERENCE_COMPARE)}, got {e.get('compare')!r}")
        if e.get("model") is not None and e["model"] not in (config.get("models") or {}):
            errors.append(f"config.report.paper_reference[{i}].model {e['model']!r} is not a config.models name; "
                          f"models: {sorted(config.get('models') or {})}")
        value = e.get("value")
        if (isinstance(value, (int, float)) and e.get("metric") not in NOT_SHARES
                and not 0 <= value <= 1):
            errors.append(f"config.report.paper_reference[{i}].value must be a share in [0, 1] like every "
                          f"score of the report, not per cent: got {value}, write {value / 100:g} for "
                          f"{value:g} %")
    return errors


def configured_sources(config: dict[str, Any]) -> list[dict[str, str]]:
    """Every model, judge and dataset the config names, with where it comes from and its revision
    (for the report's provenance; what was actually loaded is in the stages' meta files)."""
    out = []

    def add(kind: str, name: str, spec: dict[str, Any] | None) -> None:
        spec = spec or {}
        where = (f"hub {spec['hub']}" if "hub" in spec else f"path {spec['path']}" if "path" in spec
                 else f"tiny world ({spec['world'] if isinstance(spec.get('world'), str) else 'built'})"
                 if "world" in spec else "lm-eval built-in")
        out.append({"kind": kind, "name": name, "source": where, "revision": str(spec.get("revision") or ""),
                    "config": str(spec.get("config") or ""), "split": str(spec.get("split") or "")})

    for name, spec in config["models"].items():
        add("model", name, spec)
    for name, spec in config["judges"].items():
        if spec.get("model"):
            add(f"judge ({spec['type']})", name, spec["model"])
    add("dataset", "preference_data", config["preference_data"]["source"])
    for name, spec in config["benchmarks"].items():
        add(f"dataset ({spec['kind']})", name, spec["source"])
    add("dataset (capability)", "capability", config.get("capability", {}).get("source"))
    return out
