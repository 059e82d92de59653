"""Static table of the fields each TRL trainer config accepts (TRL 1.16.0, transformers 5.23.0).

Parse-time checks (:mod:`safealign.checks`) need to know whether a configured training key reaches
the chosen trainer without importing TRL (~5 s on every ``snakemake`` call), so the field names are
listed here. ``tests/test_training.py::test_static_trl_field_table_matches_installed_trl`` compares
this table with ``dataclasses.fields(...)`` of the installed classes; after a TRL or transformers
upgrade regenerate it from that test's failure message.
"""

from __future__ import annotations

# dataclasses.fields(transformers.TrainingArguments): every trainer config inherits them.
TRAINING_ARGUMENTS_FIELDS = frozenset({
    "accelerator_config", "activation_checkpointing", "activation_checkpointing_kwargs",
    "adam_beta1", "adam_beta2", "adam_epsilon", "auto_find_batch_size",
    "average_tokens_across_devices", "batch_eval_metrics", "bf16", "bf16_full_eval",
    "data_seed", "dataloader_drop_last", "dataloader_in_order",
    "dataloader_multiprocessing_context", "dataloader_num_workers",
    "dataloader_persistent_workers", "dataloader_pin_memory", "dataloader_prefetch_factor",
    "ddp_backend", "ddp_broadcast_buffers", "ddp_bucket_cap_mb", "ddp_find_unused_parameters",
    "ddp_static_graph", "ddp_timeout", "debug", "deepspeed", "disable_tqdm", "do_eval",
    "do_predict", "do_train", "enable_jit_checkpoint", "eval_accumulation_steps", "eval_delay",
    "eval_do_concat_batches", "eval_on_start", "eval_steps", "eval_strategy",
    "eval_use_gather_object", "fp16", "fp16_full_eval", "fsdp", "fsdp_config",
    "full_determinism", "gradient_accumulation_steps", "gradient_checkpointing",
    "gradient_checkpointing_kwargs", "greater_is_better", "hub_always_push", "hub_model_id",
    "hub_private_repo", "hub_revision", "hub_strategy", "hub_token", "ignore_data_skip",
    "include_for_metrics", "include_num_input_tokens_seen", "label_names",
    "label_smoothing_factor", "learning_rate", "length_column_name", "liger_kernel_config",
    "load_best_model_at_end", "local_rank", "log_level", "log_level_replica",
    "log_on_each_node", "logging_first_step", "logging_nan_inf_filter", "logging_steps",
    "logging_strategy", "lr_scheduler_kwargs", "lr_scheduler_type", "max_grad_norm",
    "max_steps", "metric_for_best_model", "neftune_noise_alpha", "num_train_epochs", "optim",
    "optim_args", "optim_target_modules", "output_dir", "parallelism_config",
    "per_device_eval_batch_size", "per_device_train_batch_size", "prediction_loss_only",
    "project", "push_to_hub", "remove_unused_columns", "report_to",
    "restore_callback_states_from_checkpoint", "resume_from_checkpoint", "run_name",
    "save_on_each_node", "save_only_model", "save_steps", "save_strategy", "save_total_limit",
    "seed", "skip_memory_metrics", "tf32", "torch_compile", "torch_compile_backend",
    "torch_compile_mode", "torch_empty_cache_steps", "trackio_bucket_id", "trackio_space_id",
    "trackio_static_space_id", "train_sampling_strategy", "use_cache", "use_cpu",
    "use_liger_kernel", "warmup_steps", "weight_decay",
})

# Per trainer name: (TRL config class name, the fields it adds to TrainingArguments).
TRAINER_FIELDS: dict[str, tuple[str, frozenset[str]]] = {
    "dpo": ("DPOConfig", frozenset({
        "activation_offloading", "beta", "dataset_num_proc", "disable_dropout", "discopop_tau",
        "f_alpha_divergence_coef", "f_divergence_type", "label_smoothing", "ld_alpha", "loss_type",
        "loss_weights", "max_length", "model_init_kwargs", "pad_to_multiple_of", "pad_token",
        "padding_free", "precompute_ref_batch_size", "precompute_ref_log_probs",
        "ref_model_mixup_alpha", "ref_model_sync_steps", "router_aux_loss_coef", "sync_ref_model",
        "truncation_mode", "trust_remote_code", "use_weighting",
    })),
    "kto": ("KTOConfig", frozenset({
        "activation_offloading", "beta", "dataset_num_proc", "desirable_weight", "disable_dropout",
        "loss_type", "max_length", "model_init_kwargs", "pad_to_multiple_of",
        "precompute_ref_batch_size", "precompute_ref_log_probs", "ref_model_mixup_alpha",
        "ref_model_sync_steps", "router_aux_loss_coef", "sync_ref_model", "trust_remote_code",
        "undesirable_weight",
    })),
    "orpo": ("ORPOConfig", frozenset({
        "beta", "dataset_num_proc", "disable_dropout", "generate_during_eval", "is_encoder_decoder",
        "max_completion_length", "max_length", "model_init_kwargs", "padding_value",
        "trust_remote_code",
    })),
    "cpo": ("CPOConfig", frozenset({
        "alpha", "beta", "cpo_alpha", "dataset_num_proc", "disable_dropout", "generate_during_eval",
        "is_encoder_decoder", "label_smoothing", "loss_type", "max_completion_length", "max_length",
        "model_init_kwargs", "simpo_gamma", "trust_remote_code",
    })),
}


def accepted_fields(trainer: str) -> frozenset[str]:
    """Every field the trainer's TRL config class accepts."""
    return TRAINING_ARGUMENTS_FIELDS | TRAINER_FIELDS[trainer][1]


def config_class_name(trainer: str) -> str:
    return TRAINER_FIELDS[trainer][0]


# transformers.trainer_utils.SchedulerType values: the names lr_scheduler_type accepts.
LR_SCHEDULER_TYPES = frozenset({
    "constant", "constant_with_warmup", "cosine", "cosine_warmup_with_min_lr", "cosine_with_min_lr",
    "cosine_with_restarts", "greedy", "inverse_sqrt", "linear", "polynomial", "reduce_lr_on_plateau",
    "warmup_stable_decay",
})

# transformers.training_args.OptimizerNames values: the names optim accepts (some need an extra
# package at run time, e.g. bitsandbytes for paged_* and *_8bit).
OPTIMIZERS = frozenset({
    "adafactor", "adagrad", "adalomo", "adamw_8bit", "adamw_anyprecision", "adamw_bnb_8bit",
    "adamw_torch", "adamw_torch_4bit", "adamw_torch_8bit", "adamw_torch_fused",
    "adamw_torch_npu_fused", "adamw_torch_xla", "ademamix", "ademamix_8bit", "apollo_adamw",
    "apollo_adamw_layerwise", "galore_adafactor", "galore_adafactor_layerwise", "galore_adamw",
    "galore_adamw_8bit", "galore_adamw_8bit_layerwise", "galore_adamw_layerwise", "grokadamw",
    "lion_32bit", "lion_8bit", "lomo", "paged_adamw_32bit", "paged_adamw_8bit",
    "paged_ademamix_32bit", "paged_ademamix_8bit", "paged_lion_32bit", "paged_lion_8bit", "rmsprop",
    "rmsprop_bnb", "rmsprop_bnb_32bit", "rmsprop_bnb_8bit", "schedule_free_adamw",
    "schedule_free_radam", "schedule_free_sgd", "sgd", "stable_adamw",
})

# Names of the Linear / Embedding modules (what LoRA can adapt) of a tiny-world LlamaForCausalLM
# (world/build.py), relative to the model, with {i} the layer index.
WORLD_LLAMA_LORA_MODULES = (
    "model.embed_tokens", "lm_head",
    *(f"model.layers.{{i}}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "o_proj")),
    *(f"model.layers.{{i}}.mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj")),
)


def world_llama_lora_modules(num_hidden_layers: int) -> list[str]:
    """Full names of the LoRA-adaptable modules of a tiny-world Llama with that many layers."""
    out = []
    for name in WORLD_LLAMA_LORA_MODULES:
        out += [name.format(i=i) for i in range(num_hidden_layers)] if "{i}" in name else [name]
    return out
