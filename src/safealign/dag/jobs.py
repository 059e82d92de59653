"""The grid's jobs as the rule files schedule them: the two mirrors of the rule files.

:meth:`Jobs.benchmark_jobs` lists every job's ``benchmark:`` path (the report's cost table reads
them as inputs) and :meth:`Jobs.job_params` every job's rerun-tracked params (what
tests/test_rerun_contract.py compares). Both restate which jobs the rules schedule for a config,
so both are checked against a Snakemake dry run: tests/test_reliability.py
(``test_benchmark_jobs_are_the_dags_benchmark_paths``, ``test_job_params_are_the_dry_runs_jobs``).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from .. import grid
from .paths import R


def log_of_benchmark(tsv: str) -> str:
    """The log path of the job whose ``benchmark:`` path is ``tsv`` (the rules' ``log:`` layout)."""
    rel = Path(tsv).relative_to(f"{R}/benchmarks_tsv").with_suffix("")
    head, rest = rel.parts[0], rel.parts[1:]
    if head in ("train", "merge"):  # train/<model>/<variant> -> models/<model>/<variant>/train
        return str(Path(R, "logs", "models", *rest, head)) + ".log"
    head = {"generate": "generations", "judge": "judgments"}.get(head, head)
    return str(Path(R, "logs", head, *rest)) + ".log"


class Jobs:
    """Every job of the grid, per rule: its benchmark TSV and log, and its params. Needs the
    other parts of :class:`safealign.dag.Dag`."""

    def benchmark_jobs(self) -> list[tuple[str, int]]:
        """(benchmark TSV, GPUs its job requests) for every job of the grid but the report: the
        report's cost table reads exactly these, declared as its inputs. Mirrors the rules'
        ``benchmark:`` paths and when each rule runs (tests/test_workflow.py checks them against a
        dry run's; a path here whose job is not in the DAG would add that job)."""
        B = f"{R}/benchmarks_tsv"

        def gpu(family: str, **w: str) -> int:
            return self.resource(family, "gpu", SimpleNamespace(**w), 1)

        jobs = [(f"{B}/prompts/{b}.tsv", gpu("default")) for b in self.all_benchmarks()]
        jobs.append((f"{B}/aggregate.tsv", gpu("default")))
        if self.uses_world():
            jobs.append((f"{B}/world_data.tsv", gpu("default")))
        evaluated, dev = self.evaluated(), self.dev_variants()
        trained = self._trained(evaluated, dev)
        if trained:
            jobs.append((f"{B}/preference_data.tsv", gpu("default")))
            if self.onpolicy_spec():
                m = self.onpolicy_spec()["model"]
                jobs.append((f"{B}/onpolicy_prompts.tsv", gpu("default")))
                jobs.append((f"{B}/onpolicy_generate.tsv", gpu("generate", model=m)))
        for m in sorted({v.model for v in evaluated}):
            if "world" in self.config["models"][m]:
                jobs.append((f"{B}/models/{m}/base.tsv", gpu("world_model", model=m)))
            elif "package" in self.config["models"][m]:
                jobs.append((f"{B}/models/{m}/base.tsv", gpu("package_model", model=m)))
        for j in self.judges:
            if self.judge_is_world(j):
                jobs.append((f"{B}/judges/{j}/model.tsv", gpu("world_model", judge=j)))
                jobs.append((f"{B}/judges/{j}/validation.tsv", gpu("judge", judge=j)))
        refs = {(v.model, grid.reference_key(v.settings)) for v in trained if grid.shares_reference(v.settings)}
        for m, key in sorted(refs):
            jobs.append((f"{B}/models/{m}/ref_logps_{key}.tsv", gpu("ref_logps", model=m)))
        for v in trained:
            jobs.append((f"{B}/train/{v.model}/{v.name}.tsv", gpu("train", model=v.model)))
        for v in self._unique([*evaluated, *dev]):
            if self.serving_of(SimpleNamespace(model=v.model, variant=v.name))["mode"] == "merged":
                jobs.append((f"{B}/merge/{v.model}/{v.name}.tsv", gpu("merge", model=v.model)))
        for v in dev:
            cell = f"{v.model}/{v.name}"
            for b in self.dev_benchmarks:
                jobs.append((f"{B}/generate/{cell}/{b}.tsv", gpu("generate", model=v.model)))
                for j in self.judges:
                    if b in self.benchmarks_judged_by(j):
                        jobs.append((f"{B}/judge/{cell}/{b}/{j}.tsv", gpu("judge", model=v.model, judge=j)))
            jobs.append((f"{B}/dev_metrics/{cell}.tsv", gpu("default", model=v.model)))
        for m, method in self.selections():
            jobs.append((f"{B}/select/{m}/{method}.tsv", gpu("default", model=m)))
        for v in evaluated:
            cell = f"{v.model}/{v.name}"
            for b in self.benchmarks:
                jobs.append((f"{B}/generate/{cell}/{b}.tsv", gpu("generate", model=v.model)))
            if self.has_capability():
                jobs.append((f"{B}/capability/{cell}.tsv", gpu("capability", model=v.model)))
            jobs.append((f"{B}/metrics/{cell}.tsv", gpu("default", model=v.model)))
            for j in self.judges:
                for b in grid.benchmarks_for(self.config, j):
                    jobs.append((f"{B}/judge/{cell}/{b}/{j}.tsv", gpu("judge", model=v.model, judge=j)))
        return jobs

    @staticmethod
    def _unique(variants: list[grid.Variant]) -> list[grid.Variant]:
        return list({(v.model, v.name): v for v in variants}.values())

    def _trained(self, evaluated: list[grid.Variant], dev: list[grid.Variant]) -> list[grid.Variant]:
        """The variants trained: evaluated and development candidates, each once, in grid order."""
        names = {(v.model, v.name) for v in [*evaluated, *dev] if v.method is not None}
        return [v for v in self.variants.values() if (v.model, v.name) in names]

    def benchmark_files(self) -> list[str]:
        return [path for path, _ in self.benchmark_jobs()]

    def job_log_files(self) -> list[str]:
        """Each :meth:`benchmark_files` job's log, in the same order: where a job that ran in a
        fork of the warm server (safealign.warm) logged its own CPU time and peak memory, which its
        benchmark TSV (the client process's) does not hold."""
        return [log_of_benchmark(path) for path in self.benchmark_files()]

    def rule_params(self) -> dict[str, list[str]]:
        """Every job's rerun-tracked params (the ``p_*`` above), per rule: what the rerun contract
        compares. One entry per job of the grid, in a stable order."""
        return {rule: list(jobs.values()) for rule, jobs in self.job_params().items()}

    def job_params(self) -> dict[str, dict[str, str]]:
        """Every job's rerun-tracked params, per rule and per job: the job is named by its
        wildcards (``model/variant/benchmark`` for a generation or judgment cell, ``model/variant``
        for a variant's jobs, ``""`` for a rule with one job). What the rerun contract compares
        cell by cell: a job whose params differ reruns, a job that appears is new."""
        W = SimpleNamespace
        out: dict[str, dict[str, str]] = {}
        for rule, params in self._global_params().items():
            out[rule] = dict(params)
        evaluated, dev = self.evaluated(), self.dev_variants()
        variants = [W(model=v.model, variant=v.name) for v in evaluated]
        devs = [W(model=v.model, variant=v.name) for v in dev]
        cell = "{0.model}/{0.variant}".format
        served = [W(model=v.model, variant=v.name) for v in self._unique([*evaluated, *dev])]
        out["merge_adapter"] = {cell(w): self.p_merge(w) for w in served if self.serving_of(w)["mode"] == "merged"}
        cells = [(w, b) for w in variants for b in self.benchmarks]
        cells += [(w, b) for w in devs for b in self.dev_benchmarks]
        out["generate"] = {f"{cell(w)}/{b}": self.p_generate(W(model=w.model, variant=w.variant, benchmark=b))
                           for w, b in cells}
        for j in self.judges:
            judged = self.benchmarks_judged_by(j)
            out[f"judge_{j}"] = {f"{cell(w)}/{b}": self.judge_params(j) for w, b in cells if b in judged}
        if self.has_capability():
            out["capability"] = {cell(w): self.p_capability(w) + self.p_capability_ref(w) for w in variants}
        out["metrics"] = {cell(w): self.p_metrics(w) for w in variants}
        out["dev_metrics"] = {cell(w): self.p_dev_metrics(w) for w in devs}
        out["select"] = {f"{m}/{method}": self.p_select(W(model=m, method=method)) for m, method in self.selections()}
        out["aggregate"] = {"": self.p_aggregate(W())}
        out["report"] = {"": self.p_report(W())}
        return {rule: jobs for rule, jobs in out.items() if jobs}

    def _global_params(self) -> dict[str, list[tuple[str, str]]]:
        """(job name, params) of the jobs before generation: data, models, judges, training."""
        c = self.config
        models = sorted({v.model for v in self.variants.values()})
        trained = self._trained(self.evaluated(), self.dev_variants())
        out: dict[str, list[tuple[str, str]]] = {}
        W = SimpleNamespace
        if self.uses_world():
            out["world_data"] = [("", self.p_world(W()))]
        out["world_base_model"] = [(m, self.p_world_model(W(model=m))) for m in models if "world" in c["models"][m]]
        out["package_model"] = [(m, self.p_package_model(W(model=m))) for m in models if "package" in c["models"][m]]
        world_judges = [j for j in self.judges if self.judge_is_world(j)]
        out["world_judge_model"] = [(j, self.p_world_judge(W(judge=j))) for j in world_judges]
        out["validate_judge"] = [(j, self.p_judge(W(judge=j))) for j in world_judges]
        out["benchmark_prompts"] = [(b, self.p_benchmark(W(benchmark=b))) for b in self.all_benchmarks()]
        if trained:
            out["preference_data"] = [("", self.p_preference(W()))]
            if self.onpolicy_spec():
                out["onpolicy_prompts"] = [("", self.p_onpolicy_prompts(W()))]
                out["onpolicy_generate"] = [("", self.p_onpolicy_generate(W()))]
        refs = sorted({(v.model, grid.reference_key(v.settings)) for v in trained if grid.shares_reference(v.settings)})
        out["ref_logps"] = [(f"{m}/{k}", self.p_ref_logps(W(model=m, refkey=k))) for m, k in refs]
        out["train"] = [(f"{v.model}/{v.name}", self.p_train(W(model=v.model, variant=v.name))) for v in trained]
        return out
