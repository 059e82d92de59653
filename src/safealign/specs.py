"""One typed spec per stage: the params a rule passes (``--params``, canonical JSON) as a dataclass.

Each stage reads its params with ``<Spec>.from_params(params)``: every field has its default stated
once, here, and a ``help`` (``dataclasses.field(metadata={"help": ...})``, as TRL's configs do);
``__post_init__`` checks values; a key the spec does not know is an error naming the key and the
stage. Where a field is a config key, its default EQUALS the schema's
(``workflow/schemas/config.schema.yaml``, which config/README.md is generated from), and
:data:`SCHEMA_FIELDS` says which config key each such field is: tests/test_specs.py checks the three
agree. The workflow always passes the schema's value (configload fills the schema's defaults into
the config before params are built), so a dataclass default is only what a direct caller (a test, a
library call) gets when it leaves a key out.

The world's own spec is :class:`safealign.world.data.WorldParams`. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .judge import registry as judge_registry


def opt(default: Any, help: str) -> Any:  # noqa: A002 - TRL's name
    """A field with a default and its help text (a mutable default is copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def req(help: str) -> Any:  # noqa: A002
    """A required field (no default) with its help text."""
    return field(metadata={"help": help})


class SpecError(ValueError):
    """Params a stage cannot read; the message names the stage and the key."""


@dataclass(frozen=True)
class Spec:
    """Base of the stage specs: :meth:`from_params` and the checks helpers."""

    STAGE: ClassVar[str] = "stage"
    @classmethod
    def from_params(cls, params: dict[str, Any] | Spec) -> Any:
        """The spec of ``params``; unknown keys are an error naming them and the stage."""
        if isinstance(params, cls):
            return params
        if not isinstance(params, dict):
            raise SpecError(f"{cls.STAGE} params must be a JSON object, got {type(params).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise SpecError(f"{cls.STAGE} params: unknown key(s) {unknown} (known: {sorted(names)})")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in params
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise SpecError(f"{cls.STAGE} params: missing key(s) {missing}")
        return cls(**cls._convert({k: v for k, v in params.items() if k in names}))

    @classmethod
    def _convert(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Nested specs from their dicts (overridden where a spec has any)."""
        return values

    def _check(self, ok: bool, key: str, what: str) -> None:
        if not ok:
            raise SpecError(f"{self.STAGE} params.{key} must be {what}, got {getattr(self, key)!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _positive_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 1


def _optional_positive_int(x: Any) -> bool:
    return x is None or _positive_int(x)


DTYPES = ("float32", "bfloat16", "float16")


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class BenchmarkSpec(Spec):
    """``python -m safealign.data.benchmark``: one benchmark's prompts (config.benchmarks.<name>)."""

    STAGE: ClassVar[str] = "benchmark_prompts"

    name: str = req("The benchmark's config name (written into every prompt row as `benchmark`).")
    loader: str = req("Loader of src/safealign/data/loaders.py.")
    source: dict[str, Any] = req("Resolved source: `path:` (a world file's path) or `hub:` + `revision:`.")
    n_per_category: int | None = opt(None, "ALERT: seeded subsample per category (None = all).")
    n: int | None = opt(None, "RTP / alpaca: sample size; xstest: prompts per label (None = all).")
    seed: int = opt(0, "Seed of the subsample.")
    offset_per_category: int | None = opt(None, "ALERT: skip this many lowest-ranked prompts per category.")
    offset: int | None = opt(None, "alpaca: skip this many lowest-ranked prompts.")
    attack_types: list[str] | None = opt(None, "alert_constructed: attack types (None = all four).")
    attacks_per_prompt: int | None = opt(None, "alert_constructed: attacks per prompt (None = 1).")
    challenging_only: bool = opt(True, "RTP: keep only the challenging subset.")

    def __post_init__(self) -> None:
        self._check(isinstance(self.name, str) and bool(self.name), "name", "a benchmark name")
        self._check(isinstance(self.source, dict) and bool(self.source), "source", "a source object")
        for key in ("n_per_category", "n", "attacks_per_prompt"):
            self._check(_optional_positive_int(getattr(self, key)), key, "an integer >= 1 or null")


@dataclass(frozen=True)
class PreferenceSpec(Spec):
    """``python -m safealign.data.preference``: the safety pairs (config.preference_data)."""

    STAGE: ClassVar[str] = "preference_data"

    source: dict[str, Any] | None = opt(None, "Resolved source of the pairs; None when every pair is on-policy.")
    schema: str = opt("pku_saferlhf", "Row schema of the source: pku_saferlhf or hh_rlhf.")
    single_turn_only: bool = opt(True, "hh_rlhf: keep single-turn dialogues only.")
    on_policy: dict[str, Any] | None = opt(
        None, "`{model}` when on-policy pairs are made (their generations are inputs).")
    max_pairs: int | None = opt(None, "Seeded subsample of pairs (None = all).")
    seed: int = opt(0, "Seed of the subsample.")

    def __post_init__(self) -> None:
        self._check(_optional_positive_int(self.max_pairs), "max_pairs", "an integer >= 1 or null")


@dataclass(frozen=True)
class HarmfulPromptsSpec(Spec):
    """Held-apart harmful prompts (config.preference_data.on_policy.harmful)."""

    STAGE: ClassVar[str] = "onpolicy_prompts (harmful)"

    source: dict[str, Any] = req("Resolved ALERT-schema source.")
    n_per_category: int | None = opt(None, "Prompts per ALERT category (None = all held-apart prompts).")
    max_prompt_chars: int | None = opt(None, "Leave out longer prompts before sampling (None = no limit).")
    seed: int = opt(0, "Seed of the sample.")


@dataclass(frozen=True)
class BenignPromptsSpec(Spec):
    """Held-apart benign prompts (config.preference_data.on_policy.benign)."""

    STAGE: ClassVar[str] = "onpolicy_prompts (benign)"

    source: dict[str, Any] = req("Resolved source: Alpaca seed-task schema (contrast: XSTest schema).")
    n: int | None = opt(None, "Prompts (None = all held-apart prompts).")
    max_prompt_chars: int | None = opt(None, "Leave out longer prompts before sampling (None = no limit).")
    seed: int = opt(0, "Seed of the sample.")


@dataclass(frozen=True)
class ContrastPromptsSpec(BenignPromptsSpec):
    """Held-apart benign prompts that sound harmful (config.preference_data.on_policy.contrast): the
    benign block's keys; the source is in XSTest's schema and only its rows labelled safe are used."""

    STAGE: ClassVar[str] = "onpolicy_prompts (contrast)"


@dataclass(frozen=True)
class OnPolicyPromptsSpec(Spec):
    """``python -m safealign.data.onpolicy``: the held-apart prompts of the on-policy pairs."""

    STAGE: ClassVar[str] = "onpolicy_prompts"

    harmful: HarmfulPromptsSpec = req("Held-apart harmful prompts.")
    benign: BenignPromptsSpec = req("Held-apart benign prompts.")
    contrast: ContrastPromptsSpec | None = opt(None, "Held-apart benign prompts that sound harmful (None = none).")

    @classmethod
    def _convert(cls, values: dict[str, Any]) -> dict[str, Any]:
        contrast = values.get("contrast")
        return {"harmful": HarmfulPromptsSpec.from_params(values["harmful"]),
                "benign": BenignPromptsSpec.from_params(values["benign"]),
                "contrast": None if contrast is None else ContrastPromptsSpec.from_params(contrast)}


# ---------------------------------------------------------------- training


@dataclass(frozen=True)
class RefLogpsSpec(Spec):
    """``python -m safealign.train.run ref-logps``: how the base model is loaded to compute the
    shared reference log-probs (safealign.grid.reference_settings of the reference key), so that
    they equal what TRL computes inside each training run that reads them."""

    STAGE: ClassVar[str] = "ref_logps"

    max_length: int = req("Token limit of a pair (training.max_length of the variants sharing it).")
    model: dict[str, Any] | None = opt(None, "Model reference (None where a library call passes it apart).")
    dtype: str = opt("float32", "Weights dtype of the base model.")
    quantization: str | None = opt(None, "'4bit' for a QLoRA reference (NF4 base, adapter disabled), else None.")
    bf16: bool = opt(False, "bf16 autocast (on a GPU only).")
    batch_size: int = opt(16, "Pairs per reference forward pass (TRL's precompute_ref_batch_size).")

    def __post_init__(self) -> None:
        self._check(_positive_int(self.max_length), "max_length", "an integer >= 1")
        self._check(self.quantization in (None, "4bit"), "quantization", "'4bit' or null")
        self._check(_positive_int(self.batch_size), "batch_size", "an integer >= 1")


@dataclass(frozen=True)
class TrainSpec(Spec):
    """``python -m safealign.train.run train``: one variant. ``settings`` are the method's computed
    settings (:func:`safealign.grid.computed_settings`): TRL config fields and the workflow's own
    keys, checked at parse time against the pinned TRL (src/safealign/train/trl_fields.py) and read
    by src/safealign/train/methods.py, whose defaults (BETA_DEFAULTS, WORKFLOW_DEFAULTS) are
    TRL's or stated there once."""

    STAGE: ClassVar[str] = "train"

    model: dict[str, Any] = req("Model reference of the base (safealign.models).")
    settings: dict[str, Any] = req("The method's computed settings (TRL fields + workflow keys).")


# ---------------------------------------------------------------- generation


@dataclass(frozen=True)
class GenerationSettings(Spec):
    """Settings of one ``generate_texts`` call (config.generation, merged with a benchmark's
    ``generation`` override; the Llama Guard judge passes its own). Both backends read these."""

    STAGE: ClassVar[str] = "generation"

    backend: str = opt("transformers", "transformers generate or vllm.")
    max_new_tokens: int = opt(70, "New tokens per response.")
    do_sample: bool = opt(True, "Sample, or greedy decoding.")
    temperature: float = opt(1.0, "Sampling temperature (do_sample only).")
    top_p: float = opt(1.0, "Nucleus sampling (do_sample only).")
    num_samples: int = opt(1, "Samples per prompt.")
    batch_size: int = opt(32, "Prompts per batch (transformers backend).")
    seed: int = opt(0, "Sampling seed (vLLM: per prompt, seed + prompt index).")
    dtype: str = opt("float32", "Weights dtype.")
    max_model_len: int | None = opt(None, "vLLM max_model_len (None = the model's).")
    kv_cache_gib: int | None = opt(None, "vLLM on CPU: KV-cache GiB (None = vllm_backend.DEFAULT_KV_CACHE_GIB).")
    enforce_eager: bool | None = opt(None, "vLLM: eager mode (no graph compilation); None: eager on CPU, CUDA "
                                           "graphs on a GPU (generate.vllm_backend.eager).")
    first_token_logprobs: int = opt(0, "Top-k log-probs to return for the first generated token (0 = none).")
    logprobs: int = opt(0, "Top-k log-probs to return at every generated position (0 = none).")
    quantization: str | None = opt(None, "'4bit': the NF4 base (serving plan qlora_base nf4); None: unquantized.")

    def __post_init__(self) -> None:
        self._check(self.backend in ("transformers", "vllm"), "backend", "'transformers' or 'vllm'")
        for key in ("max_new_tokens", "num_samples", "batch_size"):
            self._check(_positive_int(getattr(self, key)), key, "an integer >= 1")
        self._check(self.dtype in DTYPES or self.dtype in ("fp32", "bf16", "fp16"), "dtype", f"one of {DTYPES}")
        self._check(self.quantization in (None, "4bit"), "quantization", "'4bit' or unset")
        for key in ("first_token_logprobs", "logprobs"):
            self._check(isinstance(getattr(self, key), int) and getattr(self, key) >= 0, key, "an integer >= 0")


@dataclass(frozen=True)
class BenchmarkGeneration(Spec):
    """One benchmark (or on-policy arm) of a generation job."""

    STAGE: ClassVar[str] = "generate (benchmark)"

    name: str = req("Benchmark (or on-policy arm) name.")
    generation: GenerationSettings = req("Its generation settings.")
    system_prompt: str | None = opt(None, "System prompt (None = none).")
    user_template: str = opt("{prompt}", "The user turn; `{prompt}` stands for the benchmark prompt.")
    response_prefix: str | None = opt(None, "Words written into the assistant turn, which the model continues.")

    @classmethod
    def _convert(cls, values: dict[str, Any]) -> dict[str, Any]:
        return {**values, "generation": GenerationSettings.from_params(values["generation"])}


@dataclass(frozen=True)
class GenerateSpec(Spec):
    """``python -m safealign.generate``: one variant's responses to every benchmark."""

    STAGE: ClassVar[str] = "generate"

    model: dict[str, Any] = req("Model reference of the base (safealign.models).")
    benchmarks: list[BenchmarkGeneration] = req("The benchmarks, in the order of --prompts / --out.")
    serving: dict[str, Any] | None = opt(None, "The variant's serving plan (safealign.generate.serving).")

    @classmethod
    def _convert(cls, values: dict[str, Any]) -> dict[str, Any]:
        return {**values, "benchmarks": [BenchmarkGeneration.from_params(b) for b in values["benchmarks"]]}


@dataclass(frozen=True)
class MergeSpec(Spec):
    """``python -m safealign.generate.merge``: a LoRA adapter merged into its base."""

    STAGE: ClassVar[str] = "merge_adapter"

    model: dict[str, Any] = req("Model reference of the base.")
    dtype: str = opt("float32", "Weights dtype of the merge (config.generation.dtype).")


# ---------------------------------------------------------------- judging


JUDGE_TYPES = tuple(judge_registry.JUDGE_TYPES)


@dataclass(frozen=True)
class JudgeSpec(Spec):
    """``python -m safealign.judge``: one judge (config.judges.<name>). Every judge carries every
    key (the schema fills them in); each type reads its own."""

    STAGE: ClassVar[str] = "judge"

    name: str = req("The judge's config name (written into every judgment row as `judge`).")
    type: str = req("Judge family, a key of safealign.judge.registry.JUDGE_TYPES (rows: `judge_type`).")
    model: dict[str, Any] | None = opt(None, "Model reference of the judge (None for a type without one).")
    backend: str = opt("transformers", "Llama Guard: the generation backend (config.generation.backend).")
    max_new_tokens: int = opt(64, "Llama Guard: greedy new tokens (safealign.judge.llama_guard).")
    top_logprobs: int = opt(20, "Llama Guard: top-k per generated position, for P(unsafe).")
    batch_size: int = opt(16, "Conversations (Llama Guard) or texts (toxicity) per batch.")
    toxic_label: str = opt("toxic", "Toxicity: the classifier's label name for toxic.")
    threshold: float = opt(0.5, "Toxicity: P(toxic) threshold of `toxic` (and `safe`).")
    max_length: int = opt(64, "Toxicity: max tokens scored.")
    max_model_len: int | None = opt(8192, "Llama Guard with vLLM: context length (prompt + verdict), capped at the "
                                          "model's own; None: the model's.")

    def __post_init__(self) -> None:
        types = judge_registry.JUDGE_TYPES
        self._check(self.type in types, "type", f"one of {list(types)}")
        self._check(not (self.type in types and types[self.type].needs_model)
                    or isinstance(self.model, dict), "model", f"a model reference (judge type {self.type!r})")
        for key in ("max_new_tokens", "batch_size", "max_length"):
            self._check(_positive_int(getattr(self, key)), key, "an integer >= 1")
        self._check(self.max_model_len is None or _positive_int(self.max_model_len), "max_model_len",
                    "an integer >= 1 or null")
        self._check(_positive_int(self.top_logprobs) and self.top_logprobs >= 2, "top_logprobs", "an integer >= 2")
        self._check(0 <= self.threshold <= 1, "threshold", "in [0, 1]")

    @classmethod
    def of(cls, settings: dict[str, Any] | JudgeSpec, type_: str, model: dict[str, Any] | None) -> JudgeSpec:
        """A judge module's settings: a spec, or (a library call) a dict of some keys, the rest
        defaults."""
        if isinstance(settings, cls):
            return settings
        return cls.from_params({"name": type_, "type": type_, "model": model, **settings})


# ---------------------------------------------------------------- capability


@dataclass(frozen=True)
class CapabilitySpec(Spec):
    """``python -m safealign.capability.harness``: lm-eval on one variant (config.capability)."""

    STAGE: ClassVar[str] = "capability"

    model: dict[str, Any] | None = opt(None, "Model reference (also given as --model-ref).")
    tasks: list[str] = opt([], "lm-eval task names ([] with --items: every world task).")
    num_fewshot: int | None = opt(None, "Few-shot count (None = the task's default).")
    limit: int | None = opt(None, "Items per task (None = all).")
    batch_size: int = opt(8, "lm-eval batch size.")
    apply_chat_template: bool = opt(True, "Render prompts with the model's chat template.")
    max_gen_toks: int | None = opt(None, "Generation length override.")
    device: str = opt("cpu", "lm-eval device (cpu, cuda).")
    dtype: str | None = opt(None, "Weights dtype (None: float32 on CPU, bfloat16 on GPU).")

    def __post_init__(self) -> None:
        self._check(_positive_int(self.batch_size), "batch_size", "an integer >= 1")
        self._check(_optional_positive_int(self.limit), "limit", "an integer >= 1 or null")


# ---------------------------------------------------------------- metrics, aggregate, report


@dataclass(frozen=True)
class MetricsSpec(Spec):
    """``python -m safealign.metrics``: one variant's metric rows. Benchmark, judge and judge type
    come from the judgment rows themselves."""

    STAGE: ClassVar[str] = "metrics"
    # No longer read: each judgment row carries judge_type and its toxicity verdict `toxic`.

    model: str = req("Model name.")
    variant: str = req("Variant name.")
    benchmark_kinds: dict[str, str] = req("Benchmark name -> kind (safety, overrefusal, toxicity).")
    method: str | None = opt(None, "Method name (None: the base model, written as `base`).")
    seed: int | None = opt(None, "Training seed (None for the base model).")
    global_parts: list[str] = opt([], "Benchmarks whose safety_score the global score averages.")


@dataclass(frozen=True)
class AggregateSpec(Spec):
    """``python -m safealign.aggregate``: the grid's tables."""

    STAGE: ClassVar[str] = "aggregate"

    references: dict[str, Any] = req("Variant -> the variant it is compared with (safealign.aggregate.references).")


@dataclass(frozen=True)
class SelectSpec(Spec):
    """``python -m safealign.selection``: one (model, method)'s pick on the development split."""

    STAGE: ClassVar[str] = "selection"

    model: str = req("Model name.")
    method: str = req("Method name (a method that sweeps).")
    seed: int = req("The seed every candidate trained with (the method's first).")
    objective: dict[str, Any] = req("config.selection.objective.")
    candidates: list[dict[str, Any]] = req("Each candidate's {cell, variant, settings (its swept keys)}, "
                                           "in the sweep's config order.")

    def __post_init__(self) -> None:
        self._check(len(self.candidates) >= 2, "candidates", "at least two (a sweep)")


@dataclass(frozen=True)
class ReportSpec(Spec):
    """``python -m safealign.report``: the HTML report (config.report and what the rule computes)."""

    STAGE: ClassVar[str] = "report"

    headline: list[dict[str, Any]] = req("The resolved headline columns (safealign.headline.resolve_headline).")
    title: str = opt("safealign report", "Report title.")
    paper_reference: list[dict[str, Any]] = opt([], "The paper's own figures, shown beside this run's.")
    config_sha256: str = opt("–", "SHA-256 of the merged, validated config's canonical JSON.")
    sources: list[dict[str, Any]] = opt([], "Every model, judge and dataset the config names.")
    global_parts: list[str] = opt([], "Benchmarks whose safety_score the global score averages.")
    gpus: dict[str, int] = opt({}, "Benchmark TSV -> GPUs its job requested (for GPU-seconds).")
    objective: dict[str, Any] | None = opt(None, "config.selection.objective (the headline's best by it), or None.")


@dataclass(frozen=True)
class PackageModelSpec(Spec):
    """``python -m safealign.package_model``: a GGUF model shipped in a Python package."""

    STAGE: ClassVar[str] = "package_model"

    package: dict[str, Any] = req("{name, version, file} of config.models.<name>.package.")
    record_sha256: str | None = opt(None, "The wheel's RECORD hash of the file (checked when given).")


# (spec, field) -> the config key (schema path) whose default it must equal. `<name>` stands for
# any key of a name-keyed block. tests/test_specs.py checks defaults against the schema and
# config/README.md.
SCHEMA_FIELDS: dict[type[Spec], dict[str, str]] = {
    BenchmarkSpec: {k: f"benchmarks.<name>.{k}" for k in (
        "loader", "n_per_category", "n", "seed", "offset_per_category", "offset", "attack_types",
        "attacks_per_prompt", "challenging_only")},
    PreferenceSpec: {k: f"preference_data.{k}" for k in (
        "schema", "single_turn_only", "on_policy", "max_pairs", "seed")},
    HarmfulPromptsSpec: {k: f"preference_data.on_policy.harmful.{k}" for k in (
        "n_per_category", "max_prompt_chars", "seed")},
    BenignPromptsSpec: {k: f"preference_data.on_policy.benign.{k}" for k in ("n", "max_prompt_chars", "seed")},
    GenerationSettings: {k: f"generation.{k}" for k in (
        "backend", "max_new_tokens", "do_sample", "temperature", "top_p", "num_samples", "batch_size",
        "seed", "dtype", "max_model_len", "kv_cache_gib", "enforce_eager")},
    BenchmarkGeneration: {k: f"benchmarks.<name>.{k}" for k in ("system_prompt", "user_template")},
    MergeSpec: {"dtype": "generation.dtype"},
    JudgeSpec: {"type": "judges.<name>.type", "backend": "generation.backend",
                **{k: f"judges.<name>.{k}" for k in (
                    "max_new_tokens", "top_logprobs", "batch_size", "toxic_label", "threshold", "max_length",
                    "max_model_len")}},
    CapabilitySpec: {k: f"capability.{k}" for k in (
        "tasks", "num_fewshot", "limit", "batch_size", "apply_chat_template", "max_gen_toks", "device", "dtype")},
    ReportSpec: {k: f"report.{k}" for k in ("title", "headline", "paper_reference")},
}

# Fields whose default deliberately differs from the schema's (or the schema has none), and why.
SCHEMA_EXCEPTIONS: dict[tuple[type[Spec], str], str] = {
    (CapabilitySpec, "tasks"): "required in the config; [] here means every world task (with --items)",
    (BenchmarkSpec, "loader"): "required in the config and here",
    (JudgeSpec, "type"): "required in the config and here",
    (ReportSpec, "headline"): "the rule passes the resolved headline (null in the config = the default)",
}

STAGE_SPECS: tuple[type[Spec], ...] = (
    SelectSpec,
    BenchmarkSpec, PreferenceSpec, OnPolicyPromptsSpec, TrainSpec, GenerateSpec, GenerationSettings,
    MergeSpec, JudgeSpec, CapabilitySpec, MetricsSpec, AggregateSpec, ReportSpec, PackageModelSpec,
)
