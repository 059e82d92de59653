"""Selection on a development split (config.selection, src/safealign/selection.py).

Unit cases (milliseconds): the objective's pick, its config checks, the development split's
disjointness check, which cells the evaluation receives and what an objective edit reruns. One
workflow case runs the tiny world with tests/configs/selection.yaml (one method sweeping two
learning rates, two seeds) and checks the pick, the evaluated variants and a rerun after an
objective edit, against that run.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from safealign import grid, selection
from safealign.checks import config_problems
from safealign.dag import Dag

REPO = Path(__file__).resolve().parents[1]
OVERLAY = REPO / "tests" / "configs" / "selection.yaml"


def merged(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def selection_config() -> dict:
    """config/config.yaml + tests/configs/selection.yaml, the schema's defaults filled in."""
    from safealign.configload import resolve_removals
    from test_rerun_contract import SCHEMA, _Filler

    config = merged(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), yaml.safe_load(OVERLAY.read_text()))
    assert resolve_removals(config) == []  # `null` removes a key, as the workflow reads it
    _Filler(SCHEMA).validate(config)
    return config


CONFIG = selection_config()
SWEPT = selection.swept_methods(CONFIG)
CELLS = {m: [c for c, _ in grid.method_cells(m, CONFIG["methods"][m])] for m in SWEPT}


def rows(global_score: float, over_refusal: float) -> list[dict]:
    return [{"benchmark": "global", "judge": "refusal", "metric": "global_safety_score", "group": "",
             "value": global_score},
            {"benchmark": "xstest-dev", "judge": "refusal", "metric": "over_refusal_rate", "group": "",
             "value": over_refusal}]


GLOBAL = {"benchmark": "global", "judge": "refusal", "metric": "global_safety_score"}
OVER = {"benchmark": "xstest", "judge": "refusal", "metric": "over_refusal_rate"}
CANDS = [("a", "a-seed0", {"learning_rate": 1e-3}, rows(0.6, 0.10)),
         ("b", "b-seed0", {"learning_rate": 5e-3}, rows(0.9, 0.40))]


def test_the_objective_picks_and_another_objective_picks_the_other():
    constrained = {"maximize": GLOBAL, "constraints": [{**OVER, "max_above_base": 0.1}]}
    rec = selection.choose(constrained, rows(0.3, 0.05), CANDS)
    assert rec["pick"]["cell"] == "a" and rec["constraints_met"]
    assert [c["feasible"] for c in rec["candidates"]] == [True, False]
    assert rec["candidates"][1]["constraints"][0]["limit"] == pytest.approx(0.15)
    assert selection.choose({"maximize": GLOBAL}, rows(0.3, 0.05), CANDS)["pick"]["cell"] == "b"
    assert selection.choose({"minimize": OVER}, rows(0.3, 0.05), CANDS)["pick"]["cell"] == "a"
    assert "subject to xstest: over_refusal_rate [refusal] <= base + 0.1" in rec["rule"]


def test_ties_follow_tie_break_then_config_order_and_infeasible_picks_least_violation():
    tied = [("a", "a-seed0", {}, rows(0.8, 0.2)), ("b", "b-seed0", {}, rows(0.8, 0.1))]
    assert selection.choose({"maximize": GLOBAL}, rows(0.3, 0.0), tied)["pick"]["cell"] == "a"
    tie_low = {"maximize": GLOBAL, "tie_break": [{**OVER, "direction": "min"}]}
    assert selection.choose(tie_low, rows(0.3, 0.0), tied)["pick"]["cell"] == "b"
    strict = {"maximize": GLOBAL, "constraints": [{**OVER, "max": 0.05}]}
    rec = selection.choose(strict, rows(0.3, 0.0), CANDS)
    assert not rec["constraints_met"] and rec["pick"]["cell"] == "a"  # 0.05 over vs 0.35 over


def test_a_metric_the_split_lacks_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"candidate a-seed0 has no value for alert: safety_score \[refusal\]"):
        selection.choose({"maximize": {"benchmark": "alert", "judge": "refusal", "metric": "safety_score"}},
                         rows(0.3, 0.0), CANDS)


def test_selection_config_problems_name_their_key():
    assert config_problems(CONFIG) == []
    bad = copy.deepcopy(CONFIG)
    bad["selection"]["splits"]["nope"] = {"n": 3}
    bad["selection"]["splits"]["alert"]["offset"] = 2  # alpaca / xstest only
    del bad["selection"]["splits"]["xstest"]
    problems = "\n".join(config_problems(bad))
    assert "config.selection.splits.nope is not a config.benchmarks name" in problems
    assert "config.selection.splits.alert.offset is an option of loader(s)" in problems
    assert ("config.selection.objective.constraints[0] reads 'xstest' on the development split, but "
            "config.selection.splits has no split of ['xstest']") in problems
    unswept = copy.deepcopy(CONFIG)
    for m in SWEPT:
        unswept["methods"][m]["learning_rate"] = unswept["methods"][m]["learning_rate"][0]
    assert any("no enabled method sweeps" in p for p in config_problems(unswept))


def test_a_development_split_repeating_an_evaluation_prompt_fails_naming_both_rows(tmp_path):
    from safealign.data.benchmark import prepare

    src = tmp_path / "x.csv"
    src.write_text("id,prompt,type,label,focus,note\n" + "".join(
        f"p{i},Prompt number {i}?,homonyms,safe,,\n" for i in range(6)))
    evaluation = tmp_path / "eval.jsonl"
    prepare({"name": "xstest", "loader": "xstest", "source": {"path": str(src)}, "n": 2}, str(evaluation))
    dev = {"name": "xstest-dev", "loader": "xstest", "source": {"path": str(src)}, "n": 2, "offset": 2}
    prepare(dev, str(tmp_path / "ok.jsonl"), [str(evaluation)])  # offset 2 after n 2: disjoint
    out = tmp_path / "dev.jsonl"
    with pytest.raises(ValueError, match=rf"benchmark 'xstest-dev' row \d \(id 'p\d'\) repeats an evaluation "
                                         rf"prompt: {re.escape(str(evaluation))} row \d"):
        prepare({**dev, "offset": 1}, str(out), [str(evaluation)])
    assert not out.exists()


def _pick_first(model, method):
    return CELLS[method][0]


def _pick_last(model, method):
    return CELLS[method][-1]


def test_the_evaluation_receives_only_picked_cells_with_every_seed():
    d = Dag(CONFIG, pick=_pick_last)
    seeds = CONFIG["seeds"]
    evaluated = {v.name for v in d.evaluated()}
    for m in SWEPT:
        assert {n for n in evaluated if n.startswith(m)} == {f"{CELLS[m][-1]}-seed{s}" for s in seeds}
    params = d.job_params()
    eval_cells = {k for k in params["generate"] if k.rsplit("/", 1)[1] in d.benchmarks}
    assert {k.split("/")[1] for k in eval_cells} == evaluated
    dev_cells = {k for k in params["generate"] if k.rsplit("/", 1)[1] in d.dev_benchmarks}
    candidates = {f"{c}-seed{selection.candidate_seed(CONFIG, m)}" for m in SWEPT for c in CELLS[m]}
    assert {k.split("/")[1] for k in dev_cells} == candidates | {grid.BASE}
    assert set(params["metrics"]) == {f"{mo}/{v}" for mo in CONFIG["models"] for v in evaluated}
    assert set(params["select"]) == {f"{mo}/{m}" for mo in CONFIG["models"] for m in SWEPT}
    # Trained: every candidate (first seed) and the pick's other seeds, each once.
    assert {k.split("/")[1] for k in params["train"]} == candidates | (evaluated - {grid.BASE})
    # The development prompts are held apart from training like the evaluation's.
    held = d.preference_inputs(SimpleNamespace())["exclude"] or d.held_apart_prompt_files()
    assert set(d.dev_prompt_files()) <= set(held)


def test_without_selection_every_cell_is_evaluated():
    config = copy.deepcopy(CONFIG)
    config["selection"] = None
    d = Dag(config)  # no pick needed
    assert [v.name for v in d.evaluated()] == [v.name for v in grid.variants(config)]
    assert not d.dev_benchmarks and "select" not in d.job_params()


def test_an_objective_edit_changes_only_the_picks_params():
    before = Dag(CONFIG, pick=_pick_first).job_params()
    config = copy.deepcopy(CONFIG)
    config["selection"]["objective"] = {"minimize": OVER}
    after = Dag(config, pick=_pick_first).job_params()
    changed = {rule for rule in before.keys() | after.keys() if before.get(rule) != after.get(rule)}
    assert changed == {"select", "report"}
    # A new pick then changes which cells are evaluated, not any candidate's training or dev cells.
    moved = Dag(config, pick=_pick_last).job_params()
    for rule in ("train", "generate"):
        kept = {k: v for k, v in before[rule].items() if k in moved[rule]}
        assert kept == {k: moved[rule][k] for k in kept}
    dev = [k for k in before["generate"] if k.rsplit("/", 1)[1] in selection.dev_benchmarks(CONFIG)]
    assert all(k in moved["generate"] for k in dev)


# ---------------------------------------------------------------- the tiny world, with Snakemake


@pytest.fixture(scope="module")
def selection_run(tmp_path_factory):
    from test_workflow import copy_project, snakemake

    work = copy_project(tmp_path_factory.mktemp("selection"))
    args = ["--configfile", "config/config.yaml", "tests/configs/selection.yaml"]
    # The dry run first (test_the_jobs_before_the_picks_are_the_dags): what Snakemake schedules
    # before any select checkpoint ran.
    dry = snakemake(work, "-n", "-p", *args)
    assert dry.returncode == 0, dry.stderr[-5000:]
    run = snakemake(work, "--cores", "2", *args)
    assert run.returncode == 0, run.stderr[-5000:]
    work.joinpath("dry_run.out").write_text(dry.stdout)
    return work


@pytest.mark.workflow
def test_the_jobs_before_the_picks_are_the_dags(selection_run):
    """Dag.job_params mirrors the rule files with selection too, as far as a dry run can see
    before the select checkpoints ran: the shared data, the candidates' trainings (first seed
    only) and their development generations, judgments and metrics, and one select per swept
    method, each with the params Dag.job_params gives it and its benchmark TSV among
    Dag.benchmark_files; no evaluation cell is scheduled yet
    (which ones exist is the picks' to say) and the report's params wait for them. The jobs
    after the picks are the run's own (test_the_run_picks_by_the_objective_and_evaluates_only_the_pick)."""
    from test_reliability import dry_run_jobs, dry_run_params

    dag = Dag(CONFIG, pick=_pick_first)
    jobs_run = dry_run_jobs((selection_run / "dry_run.out").read_text())
    # Dag.benchmark_jobs (the report's cost inputs) holds every scheduled job's benchmark TSV.
    tsvs = {job["benchmark"] for job in jobs_run if "benchmark" in job}
    assert tsvs - {"results/benchmarks_tsv/report.tsv"} <= set(dag.benchmark_files())
    scheduled = dry_run_params(jobs_run)
    # The report is listed, its params (which cells it shows) to be computed once the picks exist.
    assert {rule for rule, jobs in scheduled.items() if "<TBD>" in jobs.values()} == {"report"}
    scheduled = {rule: jobs for rule, jobs in scheduled.items() if "<TBD>" not in jobs.values()}
    expected = dag.job_params()
    for rule, jobs in scheduled.items():
        assert rule in expected, f"{rule} is scheduled but not in Dag.job_params"
        assert not jobs.keys() - expected[rule].keys(), f"{rule}: {sorted(jobs.keys() - expected[rule].keys())}"
        differ = [name for name in jobs if jobs[name] != expected[rule][name]]
        assert not differ, f"{rule}: the dry run's params differ from Dag.job_params for {differ[:3]}"
    candidates = {f"{v.model}/{v.name}" for m in CONFIG["models"] for method in SWEPT
                  for v in selection.candidates(CONFIG, m, method, dag.variants)}
    dev = {f"{m}/{grid.BASE}" for m in CONFIG["models"]} | candidates
    assert set(scheduled["train"]) == candidates
    assert set(scheduled["dev_metrics"]) == dev == set(expected["dev_metrics"])
    assert set(scheduled["select"]) == set(expected["select"]) == {f"{m}/{s}" for m in CONFIG["models"] for s in SWEPT}
    for rule in ["generate", *(f"judge_{j}" for j in CONFIG["judges"])]:
        on_dev = {name for name in expected.get(rule, {}) if name.endswith(selection.DEV_SUFFIX)}
        assert set(scheduled.get(rule, {})) == on_dev, rule
    assert "metrics" not in scheduled and "capability" not in scheduled


@pytest.mark.workflow
def test_the_run_picks_by_the_objective_and_evaluates_only_the_pick(selection_run):
    res = selection_run / "results"
    dev = {}
    for model in CONFIG["models"]:
        dev_dir = res / "selection" / model / "dev"
        base = pd.read_csv(dev_dir / "base.csv", keep_default_na=False, dtype={"group": str}).to_dict("records")
        for m in SWEPT:
            rec = json.loads((res / "selection" / model / f"{m}.json").read_text())
            cands = [(c, f"{c}-seed{rec['seed']}", cand["settings"],
                      pd.read_csv(dev_dir / f"{c}-seed{rec['seed']}.csv", keep_default_na=False,
                                  dtype={"group": str}).to_dict("records"))
                     for c, cand in zip(CELLS[m], rec["candidates"], strict=True)]
            assert rec["pick"] == selection.choose(CONFIG["selection"]["objective"], base, cands)["pick"]
            dev[(model, m)] = (rec, base, cands)
    metrics = pd.read_csv(res / "metrics.csv", keep_default_na=False)
    picked = {f"{rec['pick']['cell']}-seed{s}" for (rec, _, _) in dev.values() for s in CONFIG["seeds"]}
    assert set(metrics.variant) == picked | {grid.BASE}
    assert not {b for b in metrics.benchmark if b.endswith(selection.DEV_SUFFIX)}
    # No evaluation cell of an unpicked candidate was generated.
    for model in CONFIG["models"]:
        for variant_dir in (res / "generations" / model).iterdir():
            evaluated = {p.name.removesuffix(".jsonl") for p in variant_dir.glob("*.jsonl")} & set(CONFIG["benchmarks"])
            assert not evaluated or variant_dir.name in picked | {grid.BASE}, variant_dir
    html = (res / "report.html").read_text()
    assert "Settings chosen on the development split" in html and "(pick)" in html
    assert "Best by the declared objective" in html
    seeds = pd.read_csv(res / "seeds.csv", keep_default_na=False)
    assert set(seeds.n_seeds) == {len(CONFIG["seeds"])}


@pytest.mark.workflow
def test_an_objective_edit_reruns_the_pick_and_its_dependants_only(selection_run):
    from test_workflow import scheduled, snakemake

    res = selection_run / "results"
    model, method = next((mo, m) for mo in CONFIG["models"] for m in SWEPT)
    rec = json.loads((res / "selection" / model / f"{method}.json").read_text())
    dev_dir = res / "selection" / model / "dev"

    def read(name):
        return pd.read_csv(dev_dir / f"{name}.csv", keep_default_na=False, dtype={"group": str}).to_dict("records")

    cands = [(c["cell"], c["variant"], c["settings"], read(c["variant"])) for c in rec["candidates"]]
    # An objective that picks another cell on this run's own development metrics.
    options = [{"maximize": GLOBAL}, {"minimize": GLOBAL}, {"minimize": OVER}, {"maximize": OVER}]
    objective = next(o for o in options
                     if selection.choose(o, read("base"), cands)["pick"]["cell"] != rec["pick"]["cell"])
    over = selection_run / "objective.yaml"
    # An overlay merges into the objective: null removes the other goal and the constraints go.
    other = "minimize" if "maximize" in objective else "maximize"
    over.write_text(yaml.safe_dump({"selection": {"objective": {**objective, other: None, "constraints": [],
                                                                "tie_break": []}}}))
    args = ["--cores", "2", "--configfile", "config/config.yaml", "tests/configs/selection.yaml", str(over)]
    dry = snakemake(selection_run, "-n", *args)
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = scheduled(dry)
    # The pick first: the rest of the DAG is known once it ran (a checkpoint). No candidate reruns.
    assert jobs.get("select") == len(CONFIG["models"]) * len(SWEPT), jobs
    assert not {"train", "generate", "dev_metrics", "ref_logps", "preference_data"} & set(jobs), jobs
    run = snakemake(selection_run, *args)
    assert run.returncode == 0, run.stderr[-5000:]
    new = json.loads((res / "selection" / model / f"{method}.json").read_text())
    assert new["pick"]["cell"] != rec["pick"]["cell"]
    log = run.stdout + run.stderr
    # Trained now: only the new pick's other seeds (its first-seed candidate was trained already).
    trained = set(re.findall(r"rule train:\n(?:.*\n)*?\s+wildcards: model=\w+, variant=([\w.-]+)", log))
    assert trained == {f"{new['pick']['cell']}-seed{s}" for s in CONFIG["seeds"][1:]}, trained
    assert "rule dev_metrics:" not in log
    metrics = pd.read_csv(res / "metrics.csv", keep_default_na=False)
    assert set(metrics.variant) == {grid.BASE} | {f"{new['pick']['cell']}-seed{s}" for s in CONFIG["seeds"]}


def test_best_by_objective_picks_on_evaluation_metrics_or_says_why_not():
    from safealign.report.tuning import best_by_objective, best_by_objective_html

    df = pd.DataFrame([{"model": "m", "variant": v, "benchmark": "alert", "judge": "refusal", "metric": "safety_score",
                        "group": "", "value": x} for v, x in (("base", 0.2), ("a-seed0", 0.5), ("a-seed1", 0.7),
                                                            ("b-seed0", 0.55))])
    alert = {"benchmark": "alert", "judge": "refusal", "metric": "safety_score"}
    (rec,) = best_by_objective(df, {"maximize": alert})
    assert rec["pick"]["cell"] == "a"  # seeds averaged: 0.6 against 0.55
    html = best_by_objective_html(best_by_objective(df, {"maximize": GLOBAL}))
    assert "not computed" in html and "global_safety_score" in html
