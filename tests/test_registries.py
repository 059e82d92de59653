"""One registry per extension point (judge types, loaders, trainers): the schema's enums, the
specs, the parse-time checks and the dispatch agree with it, so a missing piece fails here, at
parse time, not in a job."""

from __future__ import annotations

import dataclasses
import inspect
import types

import pytest

from safealign import specs
from safealign.data import loaders
from safealign.judge import registry
from safealign.judge.agreement import JUDGE_QUESTION
from safealign.train import methods, trl_fields
from safealign.world import files as world_files
from test_specs import schema_node


def test_schema_judge_type_enum_is_the_registry():
    assert schema_node("judges.<name>.type")["enum"] == list(registry.JUDGE_TYPES)
    assert specs.JUDGE_TYPES == tuple(registry.JUDGE_TYPES)


def test_schema_loader_enum_is_the_registry():
    assert schema_node("benchmarks.<name>.loader")["enum"] == list(loaders.BENCHMARKS)


def test_schema_trainer_enum_is_the_registry():
    assert schema_node("methods.<name>.trainer")["enum"] == list(methods.TRAINERS)
    assert list(methods.LOSS_TYPES) == list(methods.TRAINERS)
    assert list(trl_fields.TRAINER_FIELDS) == list(methods.TRAINERS)
    for trainer, (_, config_cls, _) in methods.TRAINER_CLASSES.items():
        assert trl_fields.config_class_name(trainer) == config_cls


@pytest.mark.parametrize("trainer", methods.TRAINERS)
def test_every_trainer_resolves_to_its_trl_classes(trainer):
    config_cls, trainer_cls = methods.classes(trainer)
    assert (config_cls.__name__, trainer_cls.__name__) == methods.TRAINER_CLASSES[trainer][1:]
    assert dataclasses.is_dataclass(config_cls)


@pytest.mark.parametrize("name", list(registry.JUDGE_TYPES))
def test_every_judge_type_module_defines_its_functions(name):
    """The dispatch's every branch exists: run and safe (validate where the world trains one)."""
    entry = registry.JUDGE_TYPES[name]
    mod = registry.module(name)
    assert list(inspect.signature(mod.run).parameters) == ["spec", "rows"]
    assert list(inspect.signature(mod.safe).parameters) == ["row", "judged"]
    if entry.world_data:
        assert list(inspect.signature(mod.validate).parameters) == ["spec", "examples"]
        assert entry.world_data in world_files.FILES


def test_a_judge_module_missing_a_function_fails_naming_it(monkeypatch):
    fake = types.ModuleType("safealign.judge.half_done")
    fake.run = lambda spec, rows: ([], {})
    monkeypatch.setitem(__import__("sys").modules, "safealign.judge.half_done", fake)
    monkeypatch.setitem(registry.JUDGE_TYPES, "half_done", registry.JudgeType("half_done", needs_model=False))
    with pytest.raises(TypeError, match=r"'half_done'.*does not define \['safe'\]"):
        registry.module("half_done")
    with pytest.raises(ValueError, match="judge type must be one of"):
        registry.module("no_such_type")


def test_derived_tables_follow_the_registry():
    assert JUDGE_QUESTION == {n: t.question for n, t in registry.JUDGE_TYPES.items() if t.question}
    assert world_files.JUDGE_DATA == {n: t.world_data for n, t in registry.JUDGE_TYPES.items() if t.world_data}


@pytest.mark.parametrize("name", list(registry.JUDGE_TYPES))
def test_judge_spec_needs_a_model_as_the_registry_says(name):
    base = {"name": "j", "type": name}
    if registry.JUDGE_TYPES[name].needs_model:
        with pytest.raises(specs.SpecError, match="model"):
            specs.JudgeSpec.from_params(base)
    else:
        assert specs.JudgeSpec.from_params(base).model is None


def test_parse_time_check_needs_a_model_as_the_registry_says(default_config):
    import copy

    from safealign.checks import ConfigError, check_config

    for name, entry in registry.JUDGE_TYPES.items():
        if not entry.needs_model:
            continue
        config = copy.deepcopy(default_config)
        judge = next(iter(config["judges"]))
        config["judges"][judge] = {"type": name, "applies_to": config["judges"][judge]["applies_to"]}
        with pytest.raises(ConfigError, match=rf"config\.judges\.{judge}\.model is required"):
            check_config(config, warn=False)


@pytest.mark.parametrize("loader", list(loaders.BENCHMARKS))
def test_every_loader_option_is_a_benchmark_config_key(loader):
    """A loader's keyword arguments are config keys (schema, BenchmarkSpec) that reach it."""
    fields = {f.name for f in dataclasses.fields(specs.BenchmarkSpec)}
    params = inspect.signature(loaders.BENCHMARKS[loader]).parameters
    assert next(iter(params)) == "source"
    for option in loaders.loader_options(loader):
        assert option in loaders.LOADER_OPTIONS, f"loader {loader!r}: option {option!r} is no config key"
        assert option in fields
        schema_node(f"benchmarks.<name>.{option}")


def test_optional_loader_options_default_to_null_and_are_checked_per_loader(default_config):
    import copy

    from safealign.checks import ConfigError, check_config

    name = next(iter(default_config["benchmarks"]))
    loader = default_config["benchmarks"][name]["loader"]
    for option in loaders.OPTIONAL_OPTIONS:
        assert schema_node(f"benchmarks.<name>.{option}")["default"] is None
        if option in loaders.loader_options(loader):
            continue
        config = copy.deepcopy(default_config)
        config["benchmarks"][name][option] = 1
        with pytest.raises(ConfigError, match=rf"config\.benchmarks\.{name}\.{option} is an option of loader"):
            check_config(config, warn=False)


def test_validate_dispatches_to_the_type_module(monkeypatch):
    """``python -m safealign.judge validate``: each world-trained type's module supplies truth and
    predictions (here with its model call replaced by fixed outputs)."""
    from safealign.judge import __main__ as judge_main
    from safealign.judge import llama_guard, toxicity

    monkeypatch.setattr(toxicity, "score", lambda model, texts, spec: [0.9, 0.1, 0.8])
    examples = [{"text": "a", "label": 1}, {"text": "b", "label": 0}, {"text": "c", "label": 0}]
    result = judge_main.validate({"name": "t", "type": "toxicity", "model": {"path": "m"}}, examples, 0.5)
    assert (result["accuracy"], result["n"], result["min_accuracy"]) == (2 / 3, 3, 0.5)

    outputs = [{"verdict": "unsafe", "categories": ["S1"], "parse_ok": True},
               {"verdict": None, "categories": [], "parse_ok": False}]
    monkeypatch.setattr(llama_guard, "judge", lambda model, rows, spec: (outputs, {}))
    monkeypatch.setattr(llama_guard, "describe", lambda model: "m")
    examples = [{"verdict": "unsafe\nS1"}, {"verdict": "safe"}]
    result = judge_main.validate({"name": "g", "type": "llama_guard", "model": {"path": "m"}}, examples)
    assert result["accuracy"] == 0.5 and result["parse_failures"] == 1 and result["category_accuracy"] == 1.0
    with pytest.raises(ValueError, match="'refusal' has no labelled examples"):
        judge_main.validate({"name": "r", "type": "refusal"}, examples)
