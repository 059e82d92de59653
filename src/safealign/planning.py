"""Planning speed: what the workflow does so that Snakemake plans a large grid in linear time.

Snakemake asks ``inspect.signature`` of every input, params, resources and threads function of a
rule for every job it plans (``snakemake.common.get_function_params``, twice per call), which was
about a third of planning a 10,000-job grid (bench/, item 3). Snakemake's own helpers
(``snakemake.ioutils``) record a function's parameters once with
``snakemake.common.overwrite_function_params``; :func:`record_signatures` does the same for every
function of every rule, after the rules are defined (workflow/Snakefile). It changes no value a
function returns, so no params, input or resource changes.

:func:`tune_gc` makes Python's cyclic garbage collector run less often while Snakemake builds
the DAG (hundreds of thousands of small objects, none of them garbage): 15 % of planning's CPU time
on a 10,000-job grid. Memory is still freed by reference counting as before.
"""

from __future__ import annotations

import gc
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any

try:  # Snakemake >= 8 (pinned 9.27.1); without it, Snakemake inspects as before.
    from snakemake.common import overwrite_function_params
except ImportError:  # pragma: no cover
    overwrite_function_params = None


def _functions(value: Any) -> Iterator[Callable[..., Any]]:
    """The Python functions in a rule's input/params/resources item (a function, a path built
    from one, or a list of them)."""
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _functions(item)
        return
    inner = getattr(value, "_file", value)  # an input/output _IOFile wraps its pattern
    func = getattr(inner, "callable", None)  # a pattern given as a function
    evaluator = getattr(value, "_evaluator", None)  # a resources.Resource given as a function
    if callable(func):
        yield func
    elif callable(evaluator):
        yield evaluator
    elif inspect.isfunction(value) or inspect.ismethod(value):
        yield value


def record_signature(func: Callable[..., Any]) -> bool:
    """Record ``func``'s parameters where Snakemake reads them instead of inspecting it again.
    Returns False where that is not possible (no such Snakemake helper, or a builtin).

    A bound method (rules/common.smk binds :class:`safealign.dag.Dag`'s) cannot take attributes;
    its parameters (``self`` left out) are recorded on its function, where the bound method's
    attribute lookup finds them, and which every instance shares with the same parameters."""
    if overwrite_function_params is None:
        return False
    if inspect.ismethod(func) and inspect.isfunction(func.__func__):
        overwrite_function_params(func.__func__, inspect.signature(func).parameters)
        return True
    if not inspect.isfunction(func):
        return False
    overwrite_function_params(func, inspect.signature(func).parameters)
    return True


# gen0 collections every 50,000 allocations instead of 700; older generations as in CPython.
GC_THRESHOLD = (50_000, 10, 10)


def tune_gc() -> None:
    """Move the objects that exist now (modules, config, rules) out of the collector's view and
    raise the young-generation threshold (:data:`GC_THRESHOLD`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def _record_resource_evaluate() -> bool:
    """Snakemake evaluates every resource of every job through the bound method
    ``Resource.evaluate`` (constants too), whose signature is ``(*args, **kwargs)`` for every
    instance; record it once on the function, where a bound method's attribute lookup finds it."""
    try:
        from snakemake.resources import Resource
    except ImportError:  # pragma: no cover
        return False
    func = Resource.evaluate
    if overwrite_function_params is None or not inspect.isfunction(func):
        return False
    bound = inspect.signature(func.__get__(object())).parameters  # self bound: (*args, **kwargs)
    overwrite_function_params(func, bound)
    return True


def record_signatures(rules: Iterable[Any]) -> int:
    """:func:`record_signature` for every function of every rule's input, params, resources
    (threads included) and log, and for Snakemake's ``Resource.evaluate``. Returns how many of the
    rules' functions were recorded."""
    _record_resource_evaluate()
    seen: set[int] = set()
    for rule in rules:
        items: list[Any] = [*rule.input, *rule.params, *rule.log]
        items += list(getattr(rule, "resources", {}).values())
        for func in _functions(items):
            if id(func) not in seen and record_signature(func):
                seen.add(id(func))
    return len(seen)
