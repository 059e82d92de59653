"""src/safealign/retry.py: a retried job grows what its earlier Slurm attempts ran out of."""

import os
from collections import Counter

import pytest

from safealign import retry

# Lines slurmstepd writes into a job's log when Slurm ends it: the time-out is copied from a job of
# the test cluster (.ci/slurm-up) killed at its 1-minute limit, the out-of-memory kill from Slurm 23.
TIMED_OUT = ("slurmstepd-vm: error: *** STEP 135.0 ON vm CANCELLED AT 2026-11-30T09:48:02 DUE TO TIME LIMIT ***\n"
             "slurmstepd-vm: error: *** JOB 135 ON vm CANCELLED AT 2026-11-30T09:48:02 DUE TO TIME LIMIT ***\n")
OOM = ("slurmstepd: error: Detected 1 oom_kill event in StepId=4712.batch. "
       "Some of the step tasks have been OOM Killed.\n")
PYTHON_ERROR = "Traceback (most recent call last):\nValueError: bad row\n"


@pytest.mark.parametrize("text, reason", [(TIMED_OUT, retry.TIMEOUT), (OOM, retry.OUT_OF_MEMORY),
                                          (PYTHON_ERROR, None), ("", None)])
def test_classify_reads_slurms_own_messages(text, reason):
    assert retry.classify("rule train\n" + text) == reason


def write_log(logdir, rule, wildcards, jobid, text, mtime=None):
    folder = retry.job_log_dir(logdir, rule, wildcards)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{jobid}.log"
    log.write_text(text)
    if mtime is not None:
        os.utime(log, (mtime, mtime))
    return log


def test_failures_count_this_jobs_logs_written_since_the_run_started(tmp_path):
    wc = ["tiny", "safe_dpo-seed0"]
    write_log(tmp_path, "train", wc, 1, OOM, mtime=1000.0)  # an earlier Snakemake run: not counted
    write_log(tmp_path, "train", wc, 2, OOM, mtime=3000.0)
    write_log(tmp_path, "train", wc, 3, TIMED_OUT, mtime=3100.0)
    write_log(tmp_path, "train", ["tiny", "safe_nca-seed0"], 4, OOM, mtime=3000.0)  # another job
    write_log(tmp_path, "generate", wc, 5, TIMED_OUT, mtime=3000.0)  # another rule
    assert retry.job_log_dir(tmp_path, "train", wc) == tmp_path / "rule_train" / "tiny_safe_dpo-seed0"
    assert retry.failures(tmp_path, "train", wc, since=2000.0) == Counter({retry.OUT_OF_MEMORY: 1, retry.TIMEOUT: 1})
    assert retry.failures(None, "train", wc, since=0.0) == Counter()
    assert retry.failures(tmp_path, "capability", wc, since=0.0) == Counter()


@pytest.mark.parametrize("attempt, counts, mem, runtime", [
    (1, {}, 4000, 60),                                  # first attempt: as configured
    (2, {retry.OUT_OF_MEMORY: 1}, 8000, 60),            # ran out of memory: memory only
    (2, {retry.TIMEOUT: 1}, 4000, 120),                 # ran out of time: time only
    (3, {retry.OUT_OF_MEMORY: 1, retry.TIMEOUT: 1}, 8000, 120),
    (3, {retry.OUT_OF_MEMORY: 2}, 12000, 60),
    (2, {}, 8000, 120),                                 # reason unknown (no Slurm log): both, as before
    (3, {retry.TIMEOUT: 1}, 8000, 180),                 # one time-out and one unknown failure
])
def test_scaled_grows_only_what_ran_out(attempt, counts, mem, runtime):
    assert retry.scaled("mem_mb", 4000, attempt, Counter(counts)) == mem
    assert retry.scaled("runtime", 60, attempt, Counter(counts)) == runtime


def test_retry_growth_stops_at_the_configured_maxima(default_config):
    """resources.<family>.max_mem_mb / max_runtime cap what a retry grows to (never below the
    configured value), and are no Snakemake resources themselves."""
    import copy

    from safealign.dag import Dag

    class Wildcards(list):  # Snakemake's wildcards: a list with named attributes
        model = next(iter(default_config["models"]))

    cfg = copy.deepcopy(default_config)
    base = cfg["resources"]["train"]
    cfg["resources"]["default"].update(max_mem_mb=base["mem_mb"] * 3 // 2, max_runtime=base["runtime"] * 2)
    unknown = Dag(cfg, failures=lambda rule, w: Counter())  # no Slurm log: both grow
    w = Wildcards([Wildcards.model])
    assert unknown.resource("train", "mem_mb", w, 1, rule="train") == base["mem_mb"]
    assert unknown.resource("train", "mem_mb", w, 3, rule="train") == base["mem_mb"] * 3 // 2
    assert unknown.resource("train", "runtime", w, 2, rule="train") == base["runtime"] * 2
    assert unknown.resource("train", "runtime", w, 3, rule="train") == base["runtime"] * 2
    assert not {"max_mem_mb", "max_runtime"} & set(unknown.resource_keys("train"))
    cfg["resources"]["default"]["max_runtime"] = 1  # below the configured value: that value stays
    capped = Dag(cfg, failures=lambda rule, w: Counter())
    assert capped.resource("train", "runtime", w, 3, rule="train") == base["runtime"]


def test_a_cells_runtime_scales_by_its_benchmarks_resource_share(default_config):
    """config.benchmarks.<b>.resource_share scales the runtime its generation and judgment cells
    book (rounded up, before a retry grows it); other benchmarks' cells, jobs of no benchmark,
    memory and GPUs keep the family's."""
    import copy
    import math

    from safealign.dag import Dag

    class Wildcards(list):  # Snakemake's wildcards: a list with named attributes
        def __init__(self, **named):
            super().__init__(named.values())
            self.__dict__.update(named)

    model, judge = next(iter(default_config["models"])), next(iter(default_config["judges"]))
    shared, other = list(default_config["benchmarks"])[:2]
    share = 0.3
    cfg = copy.deepcopy(default_config)
    cfg["benchmarks"][shared]["resource_share"] = share
    whole, scaled = Dag(default_config), Dag(cfg, failures=lambda rule, w: Counter())
    for family in ("generate", "judge"):
        cell = Wildcards(model=model, variant="base", benchmark=shared)
        runtime = whole.resource(family, "runtime", cell, 1, judge)
        assert runtime > 1
        assert scaled.resource(family, "runtime", cell, 1, judge) == max(1, math.ceil(runtime * share))
        assert scaled.resource(family, "runtime", cell, 2, judge, rule=family) == 2 * math.ceil(runtime * share)
        for key in ("mem_mb", "gpu"):
            assert scaled.resource(family, key, cell, 1, judge) == whole.resource(family, key, cell, 1, judge)
        elsewhere = Wildcards(model=model, variant="base", benchmark=other)
        assert scaled.resource(family, "runtime", elsewhere, 1, judge) == runtime
        no_cell = Wildcards(model=model, judge=judge)  # onpolicy_generate, validate_judge
        assert scaled.resource(family, "runtime", no_cell, 1, judge) == whole.resource(family, "runtime", no_cell)
    prompts = Wildcards(benchmark=shared)  # benchmark_prompts: a job of the benchmark, no cell
    assert scaled.resource("default", "runtime", prompts) == whole.resource("default", "runtime", prompts)
