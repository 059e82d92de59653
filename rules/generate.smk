# Generation: every variant (base included) on every benchmark, one job per variant (the model
# is loaded once), one file per benchmark; transformers or vLLM backend. A trained variant whose
# adapter the backend cannot serve (vLLM's Falcon has no LoRA) is generated from its adapter
# merged into the base, a temp() directory deleted once generation is done
# (src/safealign/generate/serving.py).


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
        prompts=expand(f"{R}/prompts/{{benchmark}}.jsonl", benchmark=BENCHMARKS),
        model=model_input,
        adapter=adapter_input,
        merged=merged_input,
    output:
        generations=expand(
            f"{R}/generations/{{{{model}}}}/{{{{variant}}}}/{{benchmark}}.jsonl",
            benchmark=BENCHMARKS,
        ),
        meta=f"{R}/generations/{{model}}/{{variant}}/meta.json",
    log:
        f"{R}/logs/generations/{{model}}/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks_tsv/generate/{{model}}/{{variant}}.tsv"
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
