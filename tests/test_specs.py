"""The stage specs (src/safealign/specs.py): one default per key, equal in the schema, the
dataclasses and config/README.md; unknown keys named. Fast: no model is loaded."""

import dataclasses
import json
import re

import pytest
import yaml

from conftest import REPO
from safealign import specs
from safealign.specs import SCHEMA_EXCEPTIONS, SCHEMA_FIELDS, STAGE_SPECS, SpecError

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
README = (REPO / "config" / "README.md").read_text()


def _resolve(node):
    while "$ref" in node:
        node = {**SCHEMA["$defs"][node["$ref"].removeprefix("#/$defs/")],
                **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def schema_node(path: str) -> dict:
    """The schema of a config key such as ``judges.<name>.batch_size``."""
    node = SCHEMA
    for key in path.split("."):
        node = _resolve(node)
        if key == "<name>":
            node = node["additionalProperties"]
            continue
        alternatives = [node, *(_resolve(a) for a in node.get("oneOf", []))]
        alternatives += [_resolve(a) for a in node.get("allOf", [])]
        found = [a["properties"][key] for a in alternatives if key in a.get("properties", {})]
        assert found, f"{path}: no key {key!r} in the schema"
        node = found[0]
    return _resolve(node)


def field_default(cls, name):
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


MAPPED = [(cls, name, path) for cls, fields in SCHEMA_FIELDS.items() for name, path in fields.items()]


@pytest.mark.parametrize("cls,name,path", MAPPED, ids=[f"{c.__name__}.{n}" for c, n, _ in MAPPED])
def test_dataclass_default_is_the_schema_default(cls, name, path):
    node = schema_node(path)
    default = field_default(cls, name)
    if (cls, name) in SCHEMA_EXCEPTIONS:
        assert "default" not in node or node["default"] is None, (path, SCHEMA_EXCEPTIONS[(cls, name)])
        return
    if "default" in node:
        assert default == node["default"], f"{cls.__name__}.{name} = {default!r}, {path} default {node['default']!r}"
        assert type(default) is type(node["default"]), (path, default, node["default"])
    else:
        # The schema has none: the key may be left out, and the field's None means "unset".
        assert default is None, f"{cls.__name__}.{name} = {default!r}, but {path} has no default"


@pytest.mark.parametrize("cls,name,path", MAPPED, ids=[f"{c.__name__}.{n}" for c, n, _ in MAPPED])
def test_config_readme_states_the_same_default(cls, name, path):
    line = re.search(rf"^\| `{re.escape(path)}` \| [^|]* \| ([^|]*) \|", README, re.M)
    assert line, f"config/README.md has no row for {path}"
    stated = line.group(1).strip()
    default = field_default(cls, name)
    if (cls, name) in SCHEMA_EXCEPTIONS or default is None and stated == "":
        return
    assert stated == json.dumps(default), f"{path}: README says {stated!r}, {cls.__name__}.{name} = {default!r}"


@pytest.mark.parametrize("cls", STAGE_SPECS, ids=lambda c: c.__name__)
def test_every_field_says_what_it_is(cls):
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"


def test_every_schema_key_of_a_stage_block_has_a_field():
    """A key added to the schema's judge / generation / capability block reaches its spec."""
    for block, cls, skip in (("judges.<name>", specs.JudgeSpec, {"applies_to", "resources", "min_validation_accuracy"}),
                             ("generation", specs.GenerationSettings, {"vllm_python", "lora_serving", "qlora_base"}),
                             ("capability", specs.CapabilitySpec, {"source"}),
                             ("preference_data.on_policy.harmful", specs.HarmfulPromptsSpec, set()),
                             ("preference_data.on_policy.benign", specs.BenignPromptsSpec, set())):
        keys = set(schema_node(block)["properties"]) - skip
        assert keys <= {f.name for f in dataclasses.fields(cls)}, (block, keys)


JUDGE = {"name": "lg", "type": "llama_guard", "model": {"path": "m"}}


def test_unknown_key_is_named_with_the_stage():
    with pytest.raises(SpecError, match=r"judge params: unknown key\(s\) \['batch_sise'\]"):
        specs.JudgeSpec.from_params({**JUDGE, "batch_sise": 8})
    with pytest.raises(SpecError, match=r"generation params: unknown key\(s\) \['temprature'\]"):
        specs.GenerationSettings.from_params({"temprature": 0.7})
    with pytest.raises(SpecError, match=r"judge params: missing key\(s\) \['name'\]"):
        specs.JudgeSpec.from_params({"type": "refusal"})


def test_keys_that_are_not_experiment_settings_are_not_params():
    # The rules keep them out of params (safealign.dag.NOT_EXPERIMENT_SETTINGS); a stage that got
    # one would have been handed a key that reruns it for nothing.
    for cls, params in ((specs.JudgeSpec, {**JUDGE, "offline": True}),
                        (specs.JudgeSpec, {**JUDGE, "min_validation_accuracy": 0.9}),
                        (specs.GenerationSettings, {"vllm_python": None}),
                        (specs.ReportSpec, {"headline": [], "methods": {}})):
        with pytest.raises(SpecError, match="unknown key"):
            cls.from_params(params)


def test_post_init_checks_values():
    with pytest.raises(SpecError, match="judge params.type must be one of"):
        specs.JudgeSpec.from_params({**JUDGE, "type": "guard"})
    with pytest.raises(SpecError, match="generation params.batch_size must be an integer >= 1, got 0"):
        specs.GenerationSettings.from_params({"batch_size": 0})
    with pytest.raises(SpecError, match="model must be a model reference"):
        specs.JudgeSpec.from_params({"name": "t", "type": "toxicity"})


def test_nested_specs():
    gen = specs.GenerateSpec.from_params({"model": {"path": "m"}, "serving": {"mode": "base"},
                                          "benchmarks": [{"name": "b", "generation": {"batch_size": 4}}]})
    assert gen.benchmarks[0].generation.batch_size == 4 and gen.benchmarks[0].user_template == "{prompt}"
    with pytest.raises(SpecError, match=r"generation params: unknown key\(s\) \['bs'\]"):
        specs.GenerateSpec.from_params({"model": {}, "benchmarks": [{"name": "b", "generation": {"bs": 4}}]})
    op = specs.OnPolicyPromptsSpec.from_params({"harmful": {"source": {"path": "a"}, "n_per_category": 2},
                                                "benign": {"source": {"path": "b"}}})
    assert (op.harmful.n_per_category, op.benign.n, op.benign.seed) == (2, None, 0)


def test_llama_guard_defaults_are_the_spec_defaults():
    from safealign.judge import llama_guard

    assert llama_guard.DEFAULT_MAX_NEW_TOKENS == specs.JudgeSpec.max_new_tokens == 64
    assert llama_guard.DEFAULT_TOP_LOGPROBS == specs.JudgeSpec.top_logprobs == 20
