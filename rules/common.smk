# Adapters from the rules to the package: every input, params and resource function is a method of
# safealign.dag.Dag (pure functions of the config, unit-tested without Snakemake in
# tests/test_rerun_contract.py); this file binds one to the config and names its methods.
import json
import os
import time

from safealign import dag, retry
from safealign.cli import export_offline, export_source_path
from safealign.headline import report_resources

# SRC (the package's directory, set in workflow/Snakefile) reaches every job through PYTHONPATH
# (local, or re-parsed on a Slurm node), whatever conda env the job uses.
export_source_path(SRC)
# config.offline: the hub clients' offline switches, in the environment every job inherits.
export_offline(config["offline"])

R = dag.R
# When this run started: a retry reads why its earlier attempts (since then) failed.
RUN_STARTED = time.time()


def slurm_logdir():
    """Where the Slurm executor plugin keeps failed jobs' logs (its slurm-logdir); None on other
    executors. Set once the executor starts, so read when a resource is asked for, not at parse.
    """
    return getattr(getattr(workflow, "executor_settings", None), "logdir", None)


def read_pick(model, method):
    """The cell the select checkpoint picked for (model, method) (config.selection): known once
    the checkpoint ran, so Snakemake re-evaluates the input functions that ask."""
    path = checkpoints.select.get(model=model, method=method).output[0]
    with open(path) as f:
        return json.load(f)["pick"]["cell"]


D = dag.Dag(
    config,
    failures=lambda rule, w: retry.failures(slurm_logdir(), rule, w, RUN_STARTED),
    pick=read_pick,
)
BENCHMARKS = D.benchmarks
JUDGES = D.judges


wildcard_constraints:
    **D.wildcard_constraints(),


shell_cmd = D.shell
res = D.resources
threads_of = D.threads
# targets and report inputs
final_targets = D.final_targets
variant_files = D.variant_files
evaluated_files = D.evaluated_files
train_log_input = D.train_log_input
world_validations = D.world_validations
train_logs = D.train_logs
benchmark_files = D.benchmark_files
job_log_files = D.job_log_files
report_judgment_files = D.report_judgment_files
report_meta_files = D.report_meta_files
# sources, models, judges
world_files = D.world_files
world_path = D.world_path
source_input = D.source_input
benchmark_source_input = D.benchmark_source_input
model_input = D.model_input
models_with = D.models_with
package_gguf = D.package_gguf
world_judge_data = D.world_judge_data
world_judge_kind = D.world_judge_kind
judge_input = D.judge_input
judge_validation_input = D.judge_validation_input
# data
preference_inputs = D.preference_inputs
onpolicy_source_files = D.onpolicy_source_files
onpolicy_generation_files = D.onpolicy_generation_files
onpolicy_prompt_files = D.onpolicy_prompt_files
onpolicy_model_input = D.onpolicy_model_input
# training, generation, judging, capability, metrics
ref_logps_input = D.ref_logps_input
adapter_input = D.adapter_input
merged_input = D.merged_input
generation_env = D.generation_env
generation_python = D.generation_python
generation_meta_inputs = D.generation_meta_inputs
judged_benchmarks = D.judged_benchmarks
judgment_inputs = D.judgment_inputs
judge_env = D.judge_env
judge_python = D.judge_python
capability_items = D.capability_items
capability_input = D.capability_input
capability_files = D.capability_files
nltk_data_input = D.nltk_data_input
nltk_packages = D.nltk_packages
min_validation_accuracy = D.min_validation_accuracy
# selection on the development split (rules/selection.smk)
prompt_exclude = D.prompt_exclude
held_apart_prompt_files = D.held_apart_prompt_files
dev_judgment_inputs = D.dev_judgment_inputs
dev_generation_meta_inputs = D.dev_generation_meta_inputs
select_inputs = D.select_inputs
selection_files = D.selection_files
p_dev_metrics = D.p_dev_metrics
p_select = D.p_select
# params (rerun-tracked: functions of wildcards only; p_train_run takes output, so it is not)
p_world = D.p_world
p_world_model = D.p_world_model
p_package_model = D.p_package_model
p_world_judge = D.p_world_judge
p_judge = D.p_judge
p_judge_of = D.p_judge_of
p_preference = D.p_preference
p_onpolicy_prompts = D.p_onpolicy_prompts
p_onpolicy_generate = D.p_onpolicy_generate
p_benchmark = D.p_benchmark
p_ref_logps = D.p_ref_logps
p_train = D.p_train
p_train_run = D.p_train_run
p_merge = D.p_merge
p_generate = D.p_generate
p_capability = D.p_capability
p_capability_ref = D.p_capability_ref
p_metrics = D.p_metrics
p_aggregate = D.p_aggregate
p_report = D.p_report
