"""Where and how a job runs: its shell command, interpreter and conda env, and its resources,
threads and retries. None of it is an experiment setting: it stays out of the rerun-tracked params
(:data:`safealign.dag.params.NOT_EXPERIMENT_SETTINGS`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .. import retry
from ..judge.registry import JUDGE_TYPES

# The families of the per-cell jobs (one per benchmark): their runtime scales by the benchmark's
# config.benchmarks.<b>.resource_share.
CELL_FAMILIES = ("generate", "judge")


class Resources:
    """Shell command, interpreter, env, resources and threads of every rule. ``failures`` (a
    function of (rule, wildcards list), set by :class:`safealign.dag.Dag`) tells a retry why its
    earlier attempts failed."""

    config: dict[str, Any]
    failures: Callable[[str, list[str]], dict[str, int]] | None

    @staticmethod
    def shell(module: str, args: str, python: str = "python") -> str:
        """Every rule's shell command: ``OMP_NUM_THREADS={threads} <python> -m safealign.job <module>
        <args> > {log} 2>&1`` (``python``: a Snakemake placeholder such as ``{params.python:q}``);
        if the job fails, ``safealign.cli failed`` prints its reason from the log to the job's
        stderr (the console) and the command keeps the job's exit status.

        :mod:`safealign.job` runs ``python -m safealign.<module> <args>`` in a fork of the local warm
        server where one accepts this interpreter and environment, else in the job's own process (on
        Slurm, in the vLLM venv, with ``SAFEALIGN_WARM=0``); its log says which.

        A function of its arguments only, never of the config: Snakemake reruns a job whose rule's
        shell command text changed (rerun trigger ``code``). So config.offline is not in it but in
        the environment the jobs inherit (:func:`safealign.cli.export_offline`)."""
        return (f"OMP_NUM_THREADS={{threads}} {python} -m safealign.job {module} {args} > {{log}} 2>&1"
                f" || (s=$?; {python} -m safealign.cli failed {{log}} $s)")

    def resource(self, family: str, key: str, wildcards: Any, attempt: int = 1, judge: str | None = None,
                 rule: str | None = None) -> Any:
        """Resource ``key`` of a job of rule ``rule`` (in resource ``family``): config.resources
        default <- family <- the model's <- the judge's; a retry grows what ran out
        (:mod:`safealign.retry`). A generation or judgment cell's runtime is the family's times its
        benchmark's ``resource_share`` (:meth:`cell_share`), rounded up, before a retry grows it."""
        c = self.config
        base = dict(c["resources"].get("default", {}))
        base.update(c["resources"].get(family, {}))
        model = getattr(wildcards, "model", None)
        judge = judge or getattr(wildcards, "judge", None)
        if model in c["models"]:
            base.update(c["models"][model].get("resources", {}).get(family, {}))
        if judge in c["judges"]:
            base.update(c["judges"][judge].get("resources", {}).get(family, {}))
        # A key only some models/judges set: numbers default to 0, gpu_model to "" (any GPU).
        value = base.get(key, "" if key == "gpu_model" else 0)
        if key == "runtime" and family in CELL_FAMILIES and isinstance(value, int):
            value = max(1, math.ceil(value * self.cell_share(wildcards)))
        if key in retry.GROWS and isinstance(value, int):
            failed = self.failures(rule, list(wildcards)) if attempt > 1 and rule and self.failures else {}
            grown = retry.scaled(key, value, attempt, failed)
            cap = base.get(f"max_{key}")  # the partition's limit: a retry grows up to it, never past
            return min(grown, max(int(cap), value)) if cap else grown
        if key == "gpu_jobs":
            return 1 if base.get("gpu", 0) else 0
        return value

    def cell_share(self, wildcards: Any) -> float:
        """The share of a variant's prompts that the job's benchmark holds
        (config.benchmarks.<b>.resource_share); 1 for a job of no benchmark or where it is unset."""
        spec = self.config["benchmarks"].get(getattr(wildcards, "benchmark", None)) or {}
        share = spec.get("resource_share")
        return 1.0 if share is None else float(share)

    def resource_keys(self, family: str) -> list[str]:
        c = self.config
        keys = set(c["resources"].get("default", {})) | set(c["resources"].get(family, {}))
        for spec in list(c["models"].values()) + list(c["judges"].values()):
            keys |= set(spec.get("resources", {}).get(family, {}))
        keys.discard("threads")
        keys -= {f"max_{k}" for k in retry.GROWS}  # caps on a retry's growth, not resources
        keys.add("gpu_jobs")
        keys.add("gpu")  # always there: the GPU rules pass it to their scripts as --gpus
        return sorted(keys)

    def resources(self, family: str, judge: str | None = None, rule: str | None = None) -> dict[str, Callable]:
        """Resources of rule ``rule`` (of a family), each a function of (wildcards, attempt)."""
        return {key: (lambda wildcards, attempt, key=key: self.resource(family, key, wildcards, attempt, judge, rule))
                for key in self.resource_keys(family)}

    def threads(self, family: str, judge: str | None = None) -> Callable[[Any], int]:
        return lambda wildcards: int(self.resource(family, "threads", wildcards, 1, judge) or 1)

    def uses_vllm(self) -> bool:
        return self.config["generation"]["backend"] == "vllm"

    def generation_python(self, wildcards: Any, output: Any) -> str:
        """The interpreter of a generating job: the vLLM venv's (generation.vllm_python) with the
        vLLM backend, else the conda env's ``python``. A function of ``output``, so Snakemake does
        not rerun a job when the interpreter path changes (the path is no experiment setting)."""
        path = self.config["generation"].get("vllm_python")
        return path if self.uses_vllm() and path else "python"

    def generation_env(self) -> str:
        """vLLM's env with the vLLM backend; else the judge env, which pins the transformers (and
        torch, peft) that training uses."""
        return "../envs/vllm.yaml" if self.uses_vllm() else "../envs/judge.yaml"

    def judge_uses_vllm(self, judge: str) -> bool:
        """A judge type that generates (Llama Guard) does so through the configured backend (vLLM or transformers)."""
        return JUDGE_TYPES[self.config["judges"][judge]["type"]].generates and self.uses_vllm()

    def judge_env(self, judge: str) -> str:
        return "../envs/vllm.yaml" if self.judge_uses_vllm(judge) else "../envs/judge.yaml"

    def judge_python(self, judge: str) -> Callable[[Any, Any], str]:
        """The judge's interpreter as a function of (wildcards, output): no rerun trigger."""
        if self.judge_uses_vllm(judge):
            return self.generation_python
        return self._plain_python

    @staticmethod
    def _plain_python(wildcards: Any, output: Any) -> str:
        return "python"

    def min_validation_accuracy(self, wildcards: Any, output: Any) -> list[str]:
        """validate_judge's threshold as arguments, a function of ``output``: a gate on the judge,
        not a setting of it, so changing it reruns nothing (a failed validation has no output and
        reruns anyway)."""
        value = self.config["judges"][wildcards.judge].get("min_validation_accuracy")
        return [] if value is None else ["--min-validation-accuracy", str(value)]
