# Generation: one job per grid cell (model, variant, benchmark), writing that benchmark's
# generations and their provenance, so an edit of one benchmark regenerates only its cells;
# transformers or vLLM backend. A trained variant whose adapter the backend cannot serve (vLLM's
# Falcon has no LoRA) is generated from its adapter merged into the base, a temp() directory
# shared by the variant's cells and deleted after the last of them
# (src/safealign/generate/serving.py). On Slurm, the profile's job groups submit a variant's
# cells together (slurm/config.yaml).


rule merge_adapter:
    input:
        model=model_input,
        adapter=f"{R}/models/{{model}}/{{variant}}/adapter",
    output:
        temp(directory(f"{R}/models/{{model}}/{{variant}}/merged")),
    log:
        f"{R}/logs/models/{{model}}/{{variant}}/merge.log",
    benchmark:
        f"{R}/benchmarks_tsv/merge/{{model}}/{{variant}}.tsv"
    conda:
        "../envs/train.yaml"
    threads: threads_of("merge")
    resources:
        **res("merge", rule="merge_adapter"),
        # Counted against the profile's `resources: merge_jobs` (merged weights are ~22 GB each).
        merge_jobs=1,
    params:
        cfg=p_merge,
    shell:
        shell_cmd(
            "generate.merge",
            "--params {params.cfg:q} --adapter {input.adapter} --out {output}",
        )


rule generate:
    input:
        prompts=f"{R}/prompts/{{benchmark}}.jsonl",
        model=model_input,
        adapter=adapter_input,
        merged=merged_input,
    output:
        generations=f"{R}/generations/{{model}}/{{variant}}/{{benchmark}}.jsonl",
        meta=f"{R}/generations/{{model}}/{{variant}}/{{benchmark}}.meta.json",
    log:
        f"{R}/logs/generations/{{model}}/{{variant}}/{{benchmark}}.log",
    benchmark:
        f"{R}/benchmarks_tsv/generate/{{model}}/{{variant}}/{{benchmark}}.tsv"
    conda:
        generation_env()
    threads: threads_of("generate")
    resources:
        **res("generate", rule="generate"),
    params:
        cfg=p_generate,
        python=generation_python,
        adapter=lambda wildcards, input: (
            f"--adapter {input.adapter}" if input.adapter else ""
        ),
        merged=lambda wildcards, input: (
            f"--merged {input.merged}" if input.merged else ""
        ),
    shell:
        shell_cmd(
            "generate",
            "--params {params.cfg:q} "
            "--prompts {input.prompts} {params.adapter} {params.merged} "
            "--out {output.generations} --meta {output.meta} --gpus {resources.gpu}",
            python="{params.python:q}",
        )
