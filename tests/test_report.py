"""The report on a small synthetic metrics table: headline from config, labels, paper figures."""

import copy

import pandas as pd
import pytest

from safealign.headline import default_headline, resolve_headline
from safealign.metrics import COLUMNS
from safealign.report import (
    effective_hyperparameters_table,
    headline_table,
    reference_table,
    render,
    variant_labels,
)


def row(variant, benchmark, judge, metric, value, seed=42, model="m", group=""):
    method = None if variant == "base" else variant.split("-")[0]
    return {"model": model, "variant": variant, "method": method or "base",
            "seed": None if variant == "base" else seed, "benchmark": benchmark, "judge": judge,
            "metric": metric, "group": group, "value": value, "n": 10}


@pytest.fixture
def df():
    rows = []
    for v, glob, tox in [("base", 0.55, 0.65), ("safe_dpo-seed42", 0.90, 0.10), ("safe_nca-seed42", 0.97, 0.05)]:
        rows += [row(v, "global", "lg", "global_safety_score", glob),
                 row(v, "plain", "lg", "safety_score", glob - 0.05),
                 row(v, "attacks", "lg", "safety_score", glob + 0.05),
                 row(v, "plain", "lg", "safety_score", 0.5, group="category=hate"),
                 row(v, "plain", "lg", "parse_failures", 1.0),
                 row(v, "tox_adv", "tox", "mean_toxicity", tox),
                 row(v, "tox_adv", "tox", "expected_max_toxicity", tox + 0.2)]
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.fixture
def cfg():
    return {
        "benchmarks": {"plain": {"kind": "safety", "global_safety": True},
                       "attacks": {"kind": "safety", "global_safety": True},
                       "contrast": {"kind": "overrefusal"},
                       "tox_adv": {"kind": "toxicity"}},
        "judges": {"lg": {"type": "llama_guard", "applies_to": ["safety", "overrefusal"]},
                   "ref": {"type": "refusal", "applies_to": ["safety", "overrefusal"]},
                   "tox": {"type": "toxicity", "applies_to": ["toxicity"]}},
    }


def test_default_headline_uses_the_configured_names(cfg):
    got = [(h["benchmark"], h["judge"], h["metric"]) for h in default_headline(cfg)]
    assert got == [
        ("global", "lg", "global_safety_score"), ("global", "lg", "global_safety_score_conservative"),
        ("global", "ref", "global_safety_score"),
        ("plain", "lg", "safety_score"), ("attacks", "lg", "safety_score"),
        ("contrast", "ref", "over_refusal_rate"), ("contrast", "ref", "unsafe_refusal_rate"),
        ("tox_adv", "tox", "mean_toxicity"), ("tox_adv", "tox", "expected_max_toxicity"),
        ("tox_adv", "tox", "toxicity_probability")]
    no_global = copy.deepcopy(cfg)
    for spec in no_global["benchmarks"].values():
        spec.pop("global_safety", None)
    assert not [h for h in default_headline(no_global) if h["benchmark"] == "global"]


def test_headline_columns_come_from_config(df, cfg):
    cfg["report"] = {"headline": [
        {"benchmark": "tox_adv", "judge": "tox", "metric": "mean_toxicity", "title": "mean tox"},
        {"benchmark": "global", "judge": "lg", "metric": "global_safety_score"},
        {"benchmark": "plain", "judge": "lg", "metric": "safety_score", "group": "category=hate",
         "title": "hate"}]}
    table = headline_table(df, resolve_headline(cfg))
    assert list(table.columns) == ["mean tox", "global: global_safety_score [lg]", "hate"]
    assert list(table.index) == [("m", "base"), ("m", "safe_dpo-seed42"), ("m", "safe_nca-seed42")]
    assert table.loc[("m", "safe_nca-seed42"), "mean tox"] == pytest.approx(0.05)
    assert table.loc[("m", "base"), "hate"] == 0.5


def test_variant_labels_do_not_assume_seed0(df):
    assert variant_labels(df) == {("m", "base"): "base", ("m", "safe_dpo-seed42"): "safe_dpo",
                                  ("m", "safe_nca-seed42"): "safe_nca"}
    two_seeds = pd.concat([df, df[df.variant == "safe_dpo-seed42"].assign(variant="safe_dpo-seed7", seed=7)])
    labels = variant_labels(two_seeds)
    assert labels[("m", "safe_dpo-seed42")] == "safe_dpo-seed42"
    assert labels[("m", "safe_dpo-seed7")] == "safe_dpo-seed7"
    two_models = pd.concat([df, df.assign(model="n")])
    assert variant_labels(two_models)[("n", "safe_nca-seed42")] == "n/safe_nca"


REFS = [
    {"label": "base model", "value": 0.5764, "benchmark": "global", "judge": "lg",
     "metric": "global_safety_score", "compare": "base", "source": "abstract"},
    {"label": "best aligned", "value": 0.999, "benchmark": "global", "judge": "lg",
     "metric": "global_safety_score", "compare": "aligned", "source": "Figure 1"},
    {"label": "toxicity after", "value": 0.07, "bound": "lt", "benchmark": "tox_adv", "judge": "tox",
     "metric": "mean_toxicity", "compare": "aligned", "source": "abstract"},
    {"label": "Mistral 7B", "value": 0.7133, "benchmark": "global", "judge": "lg",
     "metric": "global_safety_score", "source": "Figure 1"},
]


def test_reference_table_puts_the_run_beside_the_paper(df):
    t = reference_table(df, REFS).set_index("paper figure")
    assert t.loc["base model", "paper"] == "0.5764"
    assert t.loc["base model", "this run"] == "0.55"
    assert t.loc["best aligned", "this run's variant"] == "best: safe_nca-seed42"  # highest safety
    assert t.loc["best aligned", "this run"] == "0.97 (range 0.9-0.97)"
    assert t.loc["toxicity after", "paper"] == "< 0.07"
    assert t.loc["toxicity after", "this run's variant"] == "best: safe_nca-seed42"  # lowest toxicity
    assert t.loc["toxicity after", "this run"].startswith("0.05 ")
    assert t.loc["Mistral 7B", "this run"] == ""
    assert t.loc["Mistral 7B", "source"] == "Figure 1"


def test_effective_hyperparameters_read_from_train_json():
    logs = {"m/safe_orpo-seed42": {"effective_hyperparameters": {"beta": 0.1, "learning_rate": 5e-6}},
            "m/safe_dpo-seed42": {"effective_hyperparameters": {"beta": 0.01, "target_modules": ["q", "v"]}},
            "m/old-seed42": {"settings": {}}}  # a train.json written before the key existed
    t = effective_hyperparameters_table(logs)
    assert list(t.index) == ["m/safe_dpo-seed42", "m/safe_orpo-seed42"]
    assert t.loc["m/safe_orpo-seed42", "beta"] == 0.1
    assert t.loc["m/safe_dpo-seed42", "target_modules"] == '["q", "v"]'
    assert effective_hyperparameters_table({"m/old-seed42": {"settings": {}}}) is None


def test_render_shows_definitions_references_and_hyperparameters(df, cfg):
    params = {"title": "t", "headline": resolve_headline(cfg), "global_parts": ["plain", "attacks"],
              "paper_reference": REFS}
    logs = {"m/safe_dpo-seed42": {"settings": {"trainer": "dpo", "loss_type": "sigmoid"}, "train_loss": 0.5,
                                  "margin_before": 0.0, "margin_after": 1.0, "shared_reference": True,
                                  "effective_hyperparameters": {"beta": 0.01, "warmup_steps": 0.1}}}
    page = render(params, df, [], {}, logs, None)
    assert "The paper&#x27;s figures beside this run&#x27;s" in page or "The paper's figures beside" in page
    assert "Mistral 7B" in page and "0.5764" in page
    assert "<code>mean_toxicity</code> (lower is better): Mean toxicity score over every response" in page
    assert "<code>expected_max_toxicity</code>" in page
    assert "mean over plain, attacks" in page
    assert "Effective training hyperparameters" in page and "warmup_steps" in page
    assert "seed0" not in page
    # Without configured references the section is absent.
    assert "beside this run" not in render({**params, "paper_reference": []}, df, [], {}, logs, None)


# ---------------------------------------------------------------- the page's sections

from pathlib import Path  # noqa: E402

from safealign.report import (  # noqa: E402
    SECTIONS,
    browser_data,
    cost_tables,
    embed_json,
    headline_claims,
    method_table_html,
)
from safealign.report.plots import pareto_front  # noqa: E402

EVIL = "</script><script>window.__injected=1</script><img src=x onerror=\"window.__injected=2\">"


def with_cis(df):
    return df.assign(ci_low=df.value - 0.05, ci_high=df.value + 0.05)


def comparisons_df():
    rows = []
    for v, d, p in [("safe_nca-seed42", 0.42, 0.0005), ("safe_dpo-seed42", 0.35, 0.001)]:
        rows.append({"model": "m", "variant": v, "reference": "base", "reference_role": "base", "benchmark": "global",
                     "judge": "lg", "metric": "global_safety_score", "group": "", "difference": d,
                     "ci_low": d - 0.1, "ci_high": d + 0.1, "p_value": p, "p_holm": 2 * p, "n": 20,
                     "test": "sign_flip_permutation", "value": 0, "reference_value": 0, "ci_method": "bca"})
    rows.append({**rows[0], "metric": "mean_toxicity", "benchmark": "tox_adv", "judge": "tox", "difference": -0.55,
                 "p_holm": 0.2})
    return pd.DataFrame(rows)


def test_headline_claims_compare_base_with_the_safest_variant(df, cfg):
    params = {"headline": resolve_headline(cfg), "paper_reference": REFS}
    lines = {line["claim"]: line for line in headline_claims(with_cis(df), comparisons_df(), params)}
    g = lines["Global safety rises with alignment"]
    assert g["variant"] == "safe_nca-seed42"  # 0.97, the highest global safety
    assert g["base"] == "0.550 [0.500, 0.600]" and g["verdict"] == "better"
    assert "0.420 [0.320, 0.520]" in g["difference"]
    assert "Falcon" not in g["paper"] and "base model: 0.5764" in g["paper"]
    t = lines["Toxicity (tox_adv) falls"]
    assert t["variant"] == "safe_nca-seed42" and t["verdict"] == "no significant change"  # p_Holm 0.2


def test_method_table_marks_best_and_significant_cells(df, cfg):
    html = method_table_html(with_cis(df), comparisons_df(), resolve_headline(cfg),
                             variant_labels(df))
    row = html.split("<th>safe_nca</th>")[1].split("</tr>")[0]
    assert "<b>0.970</b>" in row and "sig-better" in row and "▲" in row
    base = html.split("<th>base</th>")[1].split("</tr>")[0]
    assert "▲" not in base and "<b>" not in base.split("</td>")[0]
    assert "[0.500, 0.600]" in base  # the CI under the value


def test_model_and_dataset_text_is_inert(df, cfg):
    judgments = {("m", "base", "plain", "lg"): [
        {"id": "0", "prompt": EVIL, "response": EVIL, "verdict": "unsafe", "parse_ok": True, "category": "c<b>"}]}
    dis = [{"model": "m", "variant": "base", "benchmark": "plain", "judges": "lg~ref", "id": "0",
            "prompt": EVIL, "response": EVIL, "a": True, "b": False}]
    params = {"title": "t <i>", "headline": resolve_headline(cfg), "global_parts": ["plain", "attacks"],
              "paper_reference": []}
    page = render(params, with_cis(df), dis, {}, {}, None, judgments=judgments, cwd=Path("/"))
    assert "window.__injected" in page  # the text is there ...
    assert "<script>window.__injected" not in page and "<img src=x" not in page  # ... never as markup
    assert page.count("</script>") == page.count("<script")  # no tag closed early
    assert "\\u003c/script\\u003e" in embed_json({"p": EVIL})
    assert "<title>t &lt;i&gt;</title>" in page
    for sid, _ in SECTIONS:
        assert f"<section id='{sid}'>" in page
    assert "https://" not in page and "http://" not in page  # nothing to fetch


def test_browser_data_keeps_every_variant_per_prompt():
    rows = lambda resp, v: [{"id": str(i), "prompt": f"p{i}", "response": f"{resp}{i}", "verdict": v,  # noqa: E731
                             "parse_ok": True, "category": "ab"[i % 2]} for i in range(5)]
    data = browser_data({("m", "base", "b", "lg"): rows("x", "unsafe"),
                         ("m", "dpo-seed0", "b", "lg"): rows("y", "safe"),
                         ("m", "dpo-seed0", "b", "ref"): [dict(r, refusal=True) for r in rows("y", None)]},
                        {("m", "base"): "base", ("m", "dpo-seed0"): "dpo"})
    assert data["variants"] == ["base", "dpo"] and data["judges"] == ["lg", "ref"]
    first = data["items"][0]
    assert first["p"] == "p0" and first["r"][0] == {"t": "x0", "v": {"lg": "unsafe"}}
    assert first["r"][1]["v"] == {"lg": "safe", "ref": "refusal"}
    assert data["total"] == {"b": 5}


def test_cost_tables_per_rule_and_cell(tmp_path):
    root = tmp_path / "benchmarks_tsv"
    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    # The grid's layout: generation per (model, variant, benchmark), judging per (.., judge).
    files = {"train/m/dpo-seed0.tsv": (100.0, 90.0), "generate/m/dpo-seed0/b.tsv": (20.0, 15.0),
             "judge/m/dpo-seed0/b/lg.tsv": (10.0, 8.0), "aggregate.tsv": (1.0, 1.0)}
    paths = []
    for rel, (s, cpu) in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(head + f"{s}\t0:00:00\t100\t-\t-\t-\t-\t-\t-\t{cpu}\n")
        paths.append(str(p))
    per_rule, per_cell = cost_tables(paths, {str(root / "train/m/dpo-seed0.tsv"): 2}, root)
    assert per_rule.loc["train", "gpu_s"] == 200.0 and per_rule.loc["judge_lg", "cpu_s"] == 8.0
    assert per_cell.loc["m/dpo-seed0", "jobs"] == 3 and per_cell.loc["m/dpo-seed0", "wall_s"] == 130.0
    assert "aggregate" in per_rule.index and "" not in per_cell.index


def test_variant_metas_join_the_cells_provenance_per_variant(tmp_path):
    """Each generation and judgment cell writes its own meta; the report reads them per variant,
    the cells' benchmarks (generation) and files (judgment) joined."""
    import json

    from safealign.report import variant_metas

    paths = []
    for b in ("alert", "xstest"):
        gen = tmp_path / "results" / "generations" / "m" / "dpo-seed0" / f"{b}.meta.json"
        judged = tmp_path / "results" / "judgments" / "m" / "dpo-seed0" / b / "lg.meta.json"
        for path, record in ((gen, {"model": {"path": "base"}, "benchmarks": {b: {"n_prompts": len(b)}}}),
                             (judged, {"judge": "lg", "type": "llama_guard", "files": {f"{b}.jsonl": {"n": 1}}})):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record))
            paths.append(str(path))
    metas = variant_metas(paths)
    assert set(metas) == {"m/dpo-seed0/generation", "m/dpo-seed0/lg"}
    assert metas["m/dpo-seed0/generation"]["benchmarks"] == {"alert": {"n_prompts": 5}, "xstest": {"n_prompts": 6}}
    assert metas["m/dpo-seed0/generation"]["model"] == {"path": "base"}
    assert metas["m/dpo-seed0/lg"]["files"] == {"alert.jsonl": {"n": 1}, "xstest.jsonl": {"n": 1}}
    assert metas["m/dpo-seed0/lg"]["type"] == "llama_guard"


def test_cost_tables_take_a_warm_jobs_cpu_and_memory_from_its_log(tmp_path):
    """A job that ran in a fork of the warm server (safealign.warm) is outside the process tree its
    benchmark TSV measured: its CPU seconds and peak RSS are the ones its log's last line holds."""
    from safealign._warm_client import RAN_WARM
    from safealign.dag import log_of_benchmark

    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    paths, logs = [], []
    for cell, log_tail in (("dpo-seed0", f"safealign.warm: {RAN_WARM} (pid 7): exit 0, CPU user 6.50 s, system "
                                         "1.25 s, max RSS 524288 kB\n"),
                           ("nca-seed0", "done\n")):
        tsv = tmp_path / "results" / "benchmarks_tsv" / "train" / "m" / f"{cell}.tsv"
        tsv.parent.mkdir(parents=True, exist_ok=True)
        tsv.write_text(head + "9.0\t0:00:09\t30\t-\t-\t-\t-\t-\t-\t0.25\n")
        log = tmp_path / log_of_benchmark(str(tsv.relative_to(tmp_path)))
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("training...\n" + log_tail)
        paths.append(str(tsv))
        logs.append(str(log))
    assert logs[0].endswith("results/logs/models/m/dpo-seed0/train.log")
    _, per_cell = cost_tables(paths, {}, tmp_path / "results" / "benchmarks_tsv", logs=logs)
    warm, cold = per_cell.loc["m/dpo-seed0"], per_cell.loc["m/nca-seed0"]
    assert (warm.cpu_s, warm.max_rss_mb, warm.warm_jobs) == (0.25 + 6.5 + 1.25, 512.0, 1)
    assert (cold.cpu_s, cold.max_rss_mb, cold.warm_jobs) == (0.25, 30.0, 0)
    with pytest.raises(ValueError, match="1 job logs for 2 benchmark files"):
        cost_tables(paths, {}, logs=logs[:1])


def test_pareto_front():
    pts = {"base": (0.4, 0.8), "a": (0.9, 0.6), "b": (0.8, 0.5), "c": (0.7, 0.85)}
    assert pareto_front(pts, True, True) == {"a", "c"}  # b is dominated by a; base by c
    assert pareto_front({"x": (0.9, 0.1), "y": (0.9, 0.3)}, True, False) == {"x"}  # lower y better


def test_the_report_rule_declares_every_template_and_resource_the_page_reads():
    """Editing a template, the CSS or a script reruns the report: each file the page reads is an
    input of the rule (safealign.headline.report_resources, rules/report.smk), and is package data."""
    import re
    import tomllib

    from safealign.headline import REPORT_TEMPLATES, report_resources

    package = Path(__file__).resolve().parents[1] / "src" / "safealign" / "report"
    code = "".join(p.read_text() for p in package.glob("*.py"))
    read = set(re.findall(r'(?:render_template|resource)\(\s*"([^"]+)"', code))
    assert read >= {"report.html.j2", "browser.html.j2", "report.css", "status.js", "browser.js"}, read
    declared = {Path(p).name for p in report_resources()}
    assert read <= declared, read - declared
    assert all(Path(p).parent == REPORT_TEMPLATES for p in report_resources())
    rule = (Path(__file__).resolve().parents[1] / "rules" / "report.smk").read_text()
    assert re.search(r"^\s+templates=report_resources\(\),$", rule, re.M)
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "templates/*" in pyproject["tool"]["setuptools"]["package-data"]["safealign.report"]


def test_page_text_is_escaped_by_the_template(df, cfg):
    """The page template escapes text (the title) the way the sections do, and inlines CSS/JS as is."""
    from safealign.report.templating import resource

    params = {"headline": resolve_headline(cfg), "title": "<b>x</b> & 'y'"}
    page = render(params, with_cis(df), [], {}, {})
    assert "<title>&lt;b&gt;x&lt;/b&gt; &amp; &#x27;y&#x27;</title>" in page
    assert "<b>x</b>" not in page
    assert f"<style>\n{resource('report.css')}</style>" in page
    assert page.startswith("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta ")
    assert page.endswith("</body></html>\n") and not page.endswith("\n\n")


def test_a_reference_naming_its_model_has_that_models_row_only(df):
    """Figure 1's bars are per model (config/paper-figure1.yaml): a figure with ``model:`` is put
    beside that model's base only; without it, one row per model of the run."""
    models = sorted(df.model.unique())
    other = df.assign(model="other_model")
    both = pd.concat([df, other])
    ref = {**REFS[0], "label": "one model"}
    t = reference_table(both, [ref, {**ref, "label": "named", "model": models[0]}])
    assert sorted(t[t["paper figure"] == "one model"].model) == sorted([*models, "other_model"])
    named = t[t["paper figure"] == "named"]
    assert list(named.model) == [models[0]] and list(named["this run"]) == ["0.55"]


def test_a_reference_model_must_be_configured():
    from safealign.headline import check_report_config

    cfg = {"models": {"m": {}}, "benchmarks": {}, "judges": {},
           "report": {"paper_reference": [{**REFS[3], "model": "nope"}]}}
    assert any("paper_reference[0].model 'nope' is not a config.models name" in e for e in check_report_config(cfg))
