"""The rerun contract in milliseconds: which rules' params change after one config edit.

Snakemake reruns a job whose params changed (and, through their inputs, everything after it), so
the params that safealign.dag builds decide what one config edit reruns. Each case below edits
one key of the default config (with the schema's defaults filled in, as the workflow sees it) and
states exactly which rules' params change; tests/test_workflow.py checks the same on the whole
grid with Snakemake. No Snakemake import, no subprocess.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, validators

from safealign import dag, grid
from safealign.dag import Dag

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def _set_defaults(validator, properties, instance, schema):
    # What Snakemake's validate(set_default=True) does: fill each missing property's default.
    if isinstance(instance, dict):
        for prop, sub in properties.items():
            if "default" in sub:
                instance.setdefault(prop, copy.deepcopy(sub["default"]))
    yield from Draft202012Validator.VALIDATORS["properties"](validator, properties, instance, schema)


_Filler = validators.extend(Draft202012Validator, {"properties": _set_defaults})


def load(name: str = "config.yaml") -> dict[str, Any]:
    config = yaml.safe_load((REPO / "config" / name).read_text())
    _Filler(SCHEMA).validate(config)
    return config


BASE = load()
BASE_PARAMS = Dag(BASE).rule_params()


def changed(edit: Callable[[dict], Any], base: dict | None = None) -> set[str]:
    """The rules with at least one job whose params differ after ``edit``."""
    base = BASE if base is None else base
    before = BASE_PARAMS if base is BASE else Dag(base).rule_params()
    config = copy.deepcopy(base)
    edit(config)
    after = Dag(config).rule_params()
    return {rule for rule in before.keys() | after.keys() if before.get(rule) != after.get(rule)}


def setitem(path: str, value: Any) -> Callable[[dict], None]:
    """An edit setting the dotted config key ``path`` (created where missing) to ``value``."""
    def edit(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    edit.__name__ = f"{path}={value!r}"
    return edit


JUDGES = {"judge_llama_guard", "judge_refusal", "judge_toxicity"}
# The report records the whole config's hash (its provenance), so it is in every set: it alone
# reruns for an edit that is no experiment setting, and it is cheap.
CASES = [
    # experiment settings: exactly the rules that compute from them
    (setitem("methods.safe_ipo.beta", 0.2), {"train", "report"}),
    (setitem("training.learning_rate", 5e-4), {"train", "report"}),
    (setitem("training.max_length", 96), {"ref_logps", "train", "report"}),
    (setitem("benchmarks.toxicity_benign.generation.temperature", 0.7), {"generate", "report"}),
    (setitem("benchmarks.alert.n_per_category", 4), {"benchmark_prompts", "report"}),
    (setitem("benchmarks.alert.system_prompt", "Be safe."), {"generate", "report"}),
    (setitem("generation.max_new_tokens", 48), {"generate", "report"}),
    (setitem("generation.dtype", "bfloat16"), {"generate", "report"}),
    (setitem("judges.llama_guard.batch_size", 32), {"judge_llama_guard", "validate_judge", "report"}),
    # The judge writes `toxic` (score >= its threshold) into each row; metrics read it from there.
    (setitem("judges.toxicity.threshold", 0.6), {"judge_toxicity", "validate_judge", "report"}),
    (setitem("world.seed", 1), {"world_data", "report"}),
    (setitem("models.tiny.world.seed", 1), {"world_base_model", "report"}),
    (setitem("judges.toxicity.model.world.seed", 1), {"world_judge_model", "report"}),
    (setitem("preference_data.max_pairs", 100), {"preference_data", "report"}),
    (setitem("capability.limit", 10), {"capability", "report"}),
    (setitem("report.title", "another title"), {"report"}),
    # not experiment settings: nothing but the report
    (setitem("resources.train.mem_mb", 8000), {"report"}),
    (setitem("resources.generate.gpu", 1), {"report"}),
    (setitem("resources.default.threads", 2), {"report"}),
    (setitem("models.tiny.resources", {"train": {"runtime": 90}}), {"report"}),
    (setitem("generation.vllm_python", "/opt/vllm/bin/python"), {"report"}),
    (setitem("judges.llama_guard.min_validation_accuracy", 0.5), {"report"}),
    (setitem("offline", False), {"report"}),
    (setitem("training.checkpoint_steps", 7), {"report"}),
    (setitem("benchmarks.alert.resource_share", 0.5), {"report"}),
]


@pytest.mark.parametrize(("edit", "expected"), CASES, ids=[e.__name__ for e, _ in CASES])
def test_one_edit_changes_exactly_these_rules_params(edit, expected):
    assert changed(edit) == expected


def test_one_methods_beta_changes_only_its_own_training_job():
    config = copy.deepcopy(BASE)
    config["methods"]["safe_ipo"]["beta"] = 0.2
    after = Dag(config).rule_params()["train"]
    assert sum(a != b for a, b in zip(BASE_PARAMS["train"], after, strict=True)) == 1


# ---------------------------------------------------------------- the unit of rerun is the grid cell

BASE_JOBS = Dag(BASE).job_params()


def changed_jobs(edit: Callable[[dict], Any]) -> dict[str, set[str]]:
    """Per rule, the jobs (named by their wildcards, Dag.job_params) whose params differ after
    ``edit``, or that appear or disappear with it: exactly the jobs Snakemake reruns for their
    own params (their dependants rerun through their inputs)."""
    config = copy.deepcopy(BASE)
    edit(config)
    after = Dag(config).job_params()
    out = {}
    for rule in BASE_JOBS.keys() | after.keys():
        before_jobs, after_jobs = BASE_JOBS.get(rule, {}), after.get(rule, {})
        jobs = {j for j in before_jobs.keys() | after_jobs.keys() if before_jobs.get(j) != after_jobs.get(j)}
        if jobs:
            out[rule] = jobs
    return out


def cells(benchmarks: list[str], config: dict = BASE) -> set[str]:
    """The grid cells model/variant/benchmark of ``benchmarks``, for every variant of ``config``."""
    return {f"{v.model}/{v.name}/{b}" for v in Dag(config).variants.values() for b in benchmarks}


def judge_cells(config: dict, benchmarks: list[str]) -> dict[str, set[str]]:
    """judge_<j> -> the cells of ``benchmarks`` that judge j applies to (its applies_to)."""
    from safealign import grid

    out = {f"judge_{j}": cells([b for b in grid.benchmarks_for(config, j) if b in benchmarks], config)
           for j in config["judges"]}
    return {rule: c for rule, c in out.items() if c}


def test_one_benchmarks_generation_setting_reruns_only_its_generation_cells():
    bench = next(iter(BASE["benchmarks"]))
    changed = changed_jobs(setitem(f"benchmarks.{bench}.generation.max_new_tokens", 16))
    # Its judges, metrics and aggregate rerun through their inputs, not their params.
    assert changed == {"generate": cells([bench]), "report": {""}}


def test_a_new_benchmark_adds_only_its_own_cells():
    name, spec = next(iter(BASE["benchmarks"].items()))
    config = copy.deepcopy(BASE)
    config["benchmarks"][f"{name}_copy"] = copy.deepcopy(spec)

    def edit(c: dict) -> None:
        c["benchmarks"][f"{name}_copy"] = copy.deepcopy(spec)

    changed = changed_jobs(edit)
    new = f"{name}_copy"
    # metrics read every benchmark's kind (a new column of the variant's table): one per variant.
    expected = {"benchmark_prompts": {new}, "generate": cells([new]), **judge_cells(config, [new]),
                "metrics": {f"{v.model}/{v.name}" for v in Dag(BASE).variants.values()}, "report": {""}}
    assert changed == expected
    assert all(job.endswith(f"/{new}") for rule in changed if rule.startswith(("generate", "judge_"))
               for job in changed[rule])


def test_one_judges_setting_reruns_only_that_judges_cells():
    from safealign import grid

    judge = next(j for j in BASE["judges"] if grid.benchmarks_for(BASE, j))
    changed = changed_jobs(setitem(f"judges.{judge}.batch_size", 3))
    expected = {f"judge_{judge}": cells(grid.benchmarks_for(BASE, judge)), "report": {""}}
    if any(j == judge for j in BASE["judges"] if Dag(BASE).judge_is_world(j)):
        expected["validate_judge"] = {judge}
    assert changed == expected


@pytest.mark.parametrize("direction", ["gain", "lose"])
def test_an_applies_to_change_reruns_only_the_cells_gained_or_lost(direction):
    from safealign import grid

    kinds = {s["kind"] for s in BASE["benchmarks"].values()}
    judge = next(j for j, s in BASE["judges"].items() if 0 < len(s["applies_to"]) and set(s["applies_to"]) < kinds)
    applies = list(BASE["judges"][judge]["applies_to"])
    if direction == "gain":
        kind = sorted(kinds - set(applies))[0]
        new = applies + [kind]
    else:
        kind = applies[0]
        new = applies[1:]
    moved = [b for b, s in BASE["benchmarks"].items() if s["kind"] == kind]
    changed = changed_jobs(setitem(f"judges.{judge}.applies_to", new))
    assert changed == {f"judge_{judge}": cells(moved), "report": {""}}
    after = copy.deepcopy(BASE)
    after["judges"][judge]["applies_to"] = new
    assert set(grid.benchmarks_for(after, judge)) ^ set(grid.benchmarks_for(BASE, judge)) == set(moved)


def test_vllm_backend_reruns_generation_and_the_llama_guard_judge_only():
    edit = setitem("generation", {**BASE["generation"], "backend": "vllm", "vllm_python": "/opt/v/python"})
    assert changed(edit) == {"generate", "judge_llama_guard", "validate_judge", "report"}


# ---------------------------------------------------------------- no allow-list holds a non-setting


def _paths(config: dict, pattern: str) -> list[str]:
    """The dotted paths of ``config`` that ``pattern`` (``*`` for any one key) names."""
    out = [""]
    for part in pattern.split("."):
        nxt = []
        for prefix in out:
            node = config
            for key in filter(None, prefix.split(".")):
                node = node[key]
            keys = list(node) if part == "*" else [part]
            nxt += [f"{prefix}.{k}".lstrip(".") for k in keys if isinstance(node, dict)]
        out = nxt
    return out


def _perturb(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "-edited"
    if isinstance(value, dict):
        return {k: _perturb(v) for k, v in value.items()} or {"edited": 1}
    return "edited"


@pytest.mark.parametrize("pattern", dag.NOT_EXPERIMENT_SETTINGS)
def test_no_allow_list_copies_a_key_that_is_no_experiment_setting(pattern):
    """Editing a declared non-setting (dag.NOT_EXPERIMENT_SETTINGS) changes no rule's params but
    the report's (its config hash; and report.title, its own): an allow-list that gained one fails."""
    config = copy.deepcopy(BASE)
    config.setdefault("report", {}).setdefault("title", "safealign report")
    for name in ("tiny",):
        config["models"][name].setdefault("resources", {"train": {"mem_mb": 1000}})
    for spec in config["judges"].values():
        spec.setdefault("resources", {"judge": {"mem_mb": 1000}})
        spec.setdefault("min_validation_accuracy", 0.9)
    config["generation"]["vllm_python"] = "/opt/v/python"
    config["training"]["checkpoint_steps"] = 10
    paths = _paths(config, pattern)
    assert paths, f"{pattern} names no key of the default config"

    def edit(c: dict) -> None:
        for path in paths:
            *parents, last = path.split(".")
            node = c
            for key in parents:
                node = node[key]
            node[last] = _perturb(node[last])

    assert changed(edit, config) == {"report"}


def _schema_keys(node: dict) -> set[str]:
    node = _resolve(node)
    keys = set(node.get("properties", {}))
    for branch in node.get("oneOf", []) + node.get("anyOf", []):
        keys |= _schema_keys(branch)
    return keys


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _section(*path: str) -> dict:
    node = SCHEMA
    for key in path:
        node = _resolve(node)
        node = node["additionalProperties"] if key == "*" else node["properties"][key]
        if key != "*" and "oneOf" in node:
            node = next(b for b in node["oneOf"] if b.get("type") == "object")
    return node


# Keys that rules read other than through the section's allow-list (who reads them).
READ_ELSEWHERE = {
    ("benchmarks", "*"): {"kind": "judges_for, metrics", "global_safety": "metrics, report",
                          "generation": "generate", "system_prompt": "generate", "user_template": "generate"},
    ("models", "*"): {"world": "world_base_model", "package": "package_model", "training": "train",
                      "architecture": "serving plan (generate)"},
    ("preference_data",): {},
    ("generation",): {"lora_serving": "serving plan (generate)", "qlora_base": "serving plan (generate)"},
    ("judges", "*"): {"applies_to": "which benchmarks a judge judges: its rule's inputs and outputs"},
    ("capability",): {"source": "capability's input file"},
    ("world",): {},
    ("report",): {},
    ("selection",): {"splits": "benchmark_prompts of each <benchmark>-dev (its spec, BENCHMARK_KEYS)"},
}
ALLOW_LISTS = {
    ("benchmarks", "*"): dag.BENCHMARK_KEYS, ("models", "*"): dag.MODEL_REF_KEYS,
    ("preference_data",): dag.PREFERENCE_KEYS, ("generation",): dag.GENERATION_KEYS,
    ("judges", "*"): dag.JUDGE_KEYS, ("capability",): dag.CAPABILITY_KEYS, ("world",): dag.WORLD_KEYS,
    ("report",): dag.REPORT_KEYS, ("selection",): dag.SELECTION_KEYS,
}


def _declared(path: tuple[str, ...]) -> set[str]:
    prefix = ".".join(path)
    out = set()
    for pattern in dag.NOT_EXPERIMENT_SETTINGS:
        head, _, key = pattern.rpartition(".")
        if head == prefix:
            out.add(key)
    return out


@pytest.mark.parametrize("path", list(ALLOW_LISTS), ids=".".join)
def test_every_schema_key_is_a_setting_or_declared_otherwise(path):
    """A key added to the schema must be put in an allow-list, in NOT_EXPERIMENT_SETTINGS, or in
    READ_ELSEWHERE here: it cannot silently rerun, or silently fail to rerun, anything."""
    keys = _schema_keys(_section(*path))
    allowed = set(ALLOW_LISTS[path])
    assert allowed <= keys, f"{'.'.join(path)}: allow-list names keys the schema does not have"
    undecided = keys - allowed - _declared(path) - set(READ_ELSEWHERE[path])
    assert not undecided, f"{'.'.join(path)}: no decision for {sorted(undecided)} (safealign.dag)"
    # report.title is declared a non-setting for every rule but the report (whose allow-list has it).
    assert not allowed & _declared(path) - set(dag.REPORT_KEYS)


def test_world_model_and_onpolicy_allow_lists_match_the_schema():
    assert set(dag.WORLD_MODEL_KEYS) == _schema_keys(SCHEMA["$defs"]["worldmodel"])
    on_policy = _section("preference_data", "on_policy")
    kinds = set().union(*(_schema_keys(on_policy["properties"][k]) for k in ("harmful", "benign")))
    assert set(dag.ONPOLICY_KIND_KEYS) == kinds


def test_every_rule_with_params_is_in_the_contract():
    """Every rule whose params: hold a p_* builder has its jobs in Dag.rule_params (default or
    smol config), so the cases above cover every rule."""
    rules = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule |checkpoint |    rule:)", smk.read_text())[1:]:
            named = re.match(r"(?:rule|checkpoint) (\w+):", block)
            name = named.group(1) if named else "judge_<judge>"  # the judge rules: one per judge
            builders = re.findall(r"\b\w+=(p_\w+)", block)
            if builders:
                rules[name] = builders
    smol = load("smol.yaml")
    smol["models"]["smol"].pop("package")  # no installed wheel needed: a local model stands in
    smol["models"]["smol"]["path"] = "/nonexistent/smol"
    # smol.yaml selects on a development split: its evaluation follows the picks (any cell here).
    def first_cell(model, method):
        return grid.method_cells(method, smol["methods"][method])[0][0]

    covered = set(BASE_PARAMS) | set(Dag(smol, pick=first_cell).rule_params())
    expected = {r if r != "judge_<judge>" else j for r in rules for j in ([r] if r != "judge_<judge>" else JUDGES)}
    assert expected - {"package_model"} <= covered
    assert "judge_<judge>" in rules and rules["capability"] == ["p_capability", "p_capability_ref"]


def test_shell_commands_and_offline_do_not_depend_on_the_config(monkeypatch):
    """Snakemake also reruns a job whose rule's shell command text changed (rerun trigger `code`),
    so Dag.shell reads no config; config.offline reaches the jobs through the environment."""
    from safealign import cli

    assert Dag.shell("judge run", "--params {params.cfg:q}", python="{params.python:q}") == (
        "OMP_NUM_THREADS={threads} {params.python:q} -m safealign.job judge run --params {params.cfg:q} > {log} 2>&1"
        " || (s=$?; {params.python:q} -m safealign.cli failed {log} $s)")
    for offline, flag in ((True, "1"), (False, "0")):
        for key in cli.OFFLINE_ENV:
            monkeypatch.delenv(key, raising=False)
        cli.export_offline(offline)
        assert [cli.os.environ[k] for k in cli.OFFLINE_ENV] == [flag, flag]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cli.export_offline(False)  # the environment, where set, wins (as cli.setup's default does)
    assert cli.os.environ["HF_HUB_OFFLINE"] == "1"


def test_min_validation_accuracy_reaches_the_validate_step_and_gates_it(tmp_path, monkeypatch):
    """Out of params, the threshold still reaches validate_judge (its untracked argument) and
    fails a judge below it, recorded beside the accuracy."""
    import json
    import sys
    from types import SimpleNamespace

    from safealign.judge import __main__ as judge_main

    config = copy.deepcopy(BASE)
    config["judges"]["llama_guard"]["min_validation_accuracy"] = 0.9
    args = Dag(config).min_validation_accuracy(SimpleNamespace(judge="llama_guard"), output=None)
    assert args == ["--min-validation-accuracy", "0.9"]
    monkeypatch.setattr(judge_main, "validate",
                        lambda params, examples, minimum: {"accuracy": 0.5, "n": 2, "min_accuracy": minimum})
    examples, out = tmp_path / "heldout.jsonl", tmp_path / "validation.json"
    examples.write_text("{}\n")
    monkeypatch.setattr(sys, "argv", ["judge", "validate", "--params", json.dumps({"name": "j", "type": "refusal"}),
                                      "--examples", str(examples), "--out", str(out), *args])
    with pytest.raises(SystemExit, match=r"0\.500 .* below judges.<name>.min_validation_accuracy = 0\.9"):
        judge_main.main()
    assert json.loads(out.read_text())["min_accuracy"] == 0.9


def test_onpolicy_files_are_named_by_their_arm_not_by_position():
    """onpolicy_generate answers each arm's prompt set into a file named by the arm, and
    preference_data reads them by name: no order to keep in step by hand."""
    from safealign.data import onpolicy

    d = Dag(load("smol.yaml"))
    gens, prompts = d.onpolicy_generation_files(), d.onpolicy_prompt_files()
    for arm, gen, prompt in zip(onpolicy.ARMS, gens, prompts, strict=True):
        assert Path(gen).name == f"{arm}.jsonl" and Path(prompt).name == f"{onpolicy.kind(arm)}.jsonl"
    assert onpolicy.arm_files(list(reversed(gens))) == {onpolicy.ARMS[i]: g for i, g in enumerate(gens)}
    with pytest.raises(ValueError, match=r"not an arm: benign_other\) \(missing: benign_refuse\)"):
        onpolicy.arm_files([*gens[:3], "x/benign_other.jsonl"])
