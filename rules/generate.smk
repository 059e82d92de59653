# Generation: every variant (base included) on every benchmark, one job per variant (the model
# is loaded once), one file per benchmark; transformers or vLLM backend.


rule generate:
    input:
        prompts=expand(f"{R}/prompts/{{benchmark}}.jsonl", benchmark=BENCHMARKS),
        model=lambda wildcards: model_input(wildcards.model),
        adapter=adapter_input,
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
        "../envs/vllm.yaml"
    threads: threads_of("generate")
    resources:
        **res("generate"),
    params:
        cfg=p_generate,
        python=generation_python,
        adapter=lambda wildcards, input: (
            f"--adapter {input.adapter}" if input.adapter else ""
        ),
    shell:
        "OMP_NUM_THREADS={threads} {params.python:q} -m safealign.generate --params {params.cfg:q} "
        "--prompts {input.prompts} {params.adapter} --out {output.generations} "
        "--meta {output.meta} > {log} 2>&1"
