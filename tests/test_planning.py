"""Planning speed helpers (src/safealign/planning.py): recorded signatures change no value."""

import inspect

from snakemake.common import get_function_params
from snakemake.resources import Resource

from safealign import planning


def test_recorded_signature_is_what_snakemake_would_inspect():
    def params_fn(wildcards, output):
        return output

    before = dict(inspect.signature(params_fn).parameters)
    assert planning.record_signature(params_fn)
    assert dict(get_function_params(params_fn)) == before
    assert params_fn("w", "o") == "o"  # the function itself is untouched
    assert not planning.record_signature(len)  # a builtin is left to Snakemake


class _Rule:
    """The parts of a Snakemake rule that record_signatures reads."""

    def __init__(self, input, params, resources):
        self.input, self.params, self.log, self.resources = input, params, [], resources


def test_record_signatures_covers_inputs_params_and_resources():
    def inp(wildcards):
        return []

    def par(wildcards):
        return "{}"

    def mem(wildcards, attempt):
        return 1000 * attempt

    rules = [_Rule([inp, "results/x.txt"], [par, "constant"], {"mem_mb": Resource("mem_mb", mem),
                                                            "gpu": Resource("gpu", 0)})]
    assert planning.record_signatures(rules) == 3
    for func in (inp, par, mem):
        assert hasattr(func, "_overwrite_params")
    # Resource.evaluate, a bound method per resource, answers its own signature: (*args, **kwargs)
    bound = Resource("runtime", 30).evaluate
    assert [p.kind for p in get_function_params(bound).values()] == [
        inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD]
    assert Resource("mem_mb", mem).evaluate("w", attempt=2).value == 2000


def test_record_signatures_covers_bound_methods():
    """rules/common.smk names safealign.dag.Dag's bound methods: their signature (self left out)
    is recorded on the function, where the bound method's attribute lookup finds it."""

    class Builder:
        def p(self, wildcards, output):
            return output

    bound = Builder().p
    rules = [_Rule([], [bound], {})]
    assert planning.record_signatures(rules) == 1
    assert list(get_function_params(bound)) == ["wildcards", "output"]
    assert list(get_function_params(Builder().p)) == ["wildcards", "output"]  # every instance
    assert bound("w", "o") == "o"
