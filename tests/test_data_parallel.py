"""Several GPUs per training job: methods.distribute_batch keeps a method's global batch."""

import pytest

from safealign.train.methods import distribute_batch

DPO = {"trainer": "dpo", "per_device_train_batch_size": 16, "gradient_accumulation_steps": 4}


@pytest.mark.parametrize("settings, processes, per_device, accumulation, global_batch", [
    (DPO, 1, 16, 4, 64),                                     # one GPU: as configured
    (DPO, 2, 16, 2, 64),                                     # accumulation divides first
    (DPO, 4, 16, 1, 64),
    (DPO, 8, 2, 4, 64),                                      # else the per-device batch
    ({**DPO, "keep_global_batch": False}, 4, 16, 4, 256),    # opted out: the global batch grows
    ({"trainer": "kto"}, 2, 4, 1, 8),                        # unset: the TRL config class's defaults
])
def test_global_batch_is_kept_across_gpu_counts(settings, processes, per_device, accumulation, global_batch):
    new, record = distribute_batch(settings, processes)
    assert record == {"processes": processes, "per_device_train_batch_size": per_device,
                      "gradient_accumulation_steps": accumulation, "global_batch_size": global_batch}
    if processes > 1:
        assert (new["per_device_train_batch_size"], new["gradient_accumulation_steps"]) == (per_device, accumulation)
    else:
        assert new is settings  # one process: the settings the TRL config gets are untouched


def test_a_batch_that_cannot_be_split_names_both_keys_and_the_way_out():
    with pytest.raises(ValueError, match=r"per_device_train_batch_size 16 x gradient_accumulation_steps 4 cannot "
                                         r"be split over 3 processes .*keep_global_batch: false"):
        distribute_batch(DPO, 3)


def test_a_job_with_several_gpus_spreads_its_model_but_a_training_rank_does_not(monkeypatch):
    from safealign import models
    from safealign.cli import JOB_GPUS_ENV, add_gpus_argument, parser, setup
    from safealign.generate.vllm_backend import _llm_kwargs

    hub = {"hub": "org/model", "revision": "a" * 40}
    # setenv then delenv: monkeypatch records the variables as they were, and restores them (absent
    # here) after the test, also over setup() below, which writes os.environ itself.
    for name in (JOB_GPUS_ENV, "WORLD_SIZE"):
        monkeypatch.setenv(name, "1")
        monkeypatch.delenv(name)
    assert models.job_gpus() == 1 and "tensor_parallel_size" not in _llm_kwargs(hub, None, {})
    p = parser("x")
    add_gpus_argument(p)
    setup(p.parse_args(["--params", "{}", "--gpus", "2"]))  # what the generate / judge rules pass
    assert models.job_gpus() == 2
    assert _llm_kwargs(hub, None, {})["tensor_parallel_size"] == 2  # vLLM shards the model
    monkeypatch.setenv("WORLD_SIZE", "2")  # a data-parallel training rank owns one GPU
    assert models.job_gpus() == 1


def test_no_job_gpus_leak_out_of_the_test_above():
    from safealign.cli import JOB_GPUS_ENV

    assert JOB_GPUS_ENV not in __import__("os").environ
