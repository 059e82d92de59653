"""Where a `snakemake -n` spends its wall time: snakemake's own import, the Snakefile parse (the
workflow's config checks included), the DAG build, and the rest (the dry run's job listing).

Runs Snakemake's command line in this process with wall-clock timers around those phases::

    python bench/plan_profile.py [--no-gc] -- -n --configfile config/paper.yaml ...

and prints one JSON line: wall seconds {"import_s", "parse_s", "dag_s", "rest_s", "total_s"}, the
same phases in CPU seconds of this process ({"import_cpu_s", ...}: less sensitive to other load on a
shared machine), "jobs" (planned) and "max_rss_mb".
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time


def main(argv: list[str]) -> int:
    if "--" in argv:
        i = argv.index("--")
        own, sm_args = argv[:i], argv[i + 1 :]
    else:
        own, sm_args = [], argv
    if "--no-gc" in own:
        gc.disable()
    t0, c0 = time.perf_counter(), time.process_time()
    import snakemake.cli
    import snakemake.workflow as wf

    t_import, c_import = time.perf_counter() - t0, time.process_time() - c0
    phases = {"parse_s": 0.0, "dag_s": 0.0, "parse_cpu_s": 0.0, "dag_cpu_s": 0.0}
    depth = {"include": 0}
    orig_include, orig_build = wf.Workflow.include, wf.Workflow._build_dag

    def include(self, *args, **kwargs):
        depth["include"] += 1
        t, c = time.perf_counter(), time.process_time()
        try:
            return orig_include(self, *args, **kwargs)
        finally:
            depth["include"] -= 1
            if depth["include"] == 0:
                phases["parse_s"] += time.perf_counter() - t
                phases["parse_cpu_s"] += time.process_time() - c

    def build(self, *args, **kwargs):
        t, c = time.perf_counter(), time.process_time()
        try:
            return orig_build(self, *args, **kwargs)
        finally:
            phases["dag_s"] += time.perf_counter() - t
            phases["dag_cpu_s"] += time.process_time() - c
            phases["jobs"] = sum(1 for _ in self.dag.needrun_jobs()) if getattr(self, "dag", None) else None

    wf.Workflow.include, wf.Workflow._build_dag = include, build
    code = 0
    try:
        snakemake.cli.main(sm_args)
    except SystemExit as exc:
        code = exc.code or 0
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"import_s": round(t_import, 3), "parse_s": round(phases["parse_s"], 3),
           "dag_s": round(phases["dag_s"], 3),
           "rest_s": round(total - t_import - phases["parse_s"] - phases["dag_s"], 3),
           "total_s": round(total, 3),
           "import_cpu_s": round(c_import, 3), "parse_cpu_s": round(phases["parse_cpu_s"], 3),
           "dag_cpu_s": round(phases["dag_cpu_s"], 3),
           "rest_cpu_s": round(cpu - c_import - phases["parse_cpu_s"] - phases["dag_cpu_s"], 3),
           "total_cpu_s": round(cpu, 3), "jobs": phases.get("jobs"),
           "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "exit": code}
    print(json.dumps(out), file=sys.__stdout__, flush=True)
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
