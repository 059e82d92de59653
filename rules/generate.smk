# Generation: every variant (base included) on every benchmark, transformers or vLLM backend.


rule generate:
    input:
        prompts=f"{R}/prompts/{{benchmark}}.jsonl",
        model=lambda wildcards: model_input(wildcards.model),
        adapter=adapter_input,
    output:
        generations=f"{R}/generations/{{model}}/{{variant}}/{{benchmark}}.jsonl",
        meta=f"{R}/generations/{{model}}/{{variant}}/{{benchmark}}.meta.json",
    params:
        cfg=p_generate,
        python=generation_python,
        adapter=lambda wildcards, input: f"--adapter {input.adapter}" if input.adapter else "",
    log:
        f"{R}/logs/generations/{{model}}/{{variant}}/{{benchmark}}.log",
    benchmark:
        f"{R}/benchmarks_tsv/generate/{{model}}/{{variant}}/{{benchmark}}.tsv"
    threads: threads_of("generate")
    resources:
        **res("generate"),
    conda:
        "../envs/vllm.yaml"
    shell:
        PYPATH + " {params.python} -m safealign.generate --params {params.cfg:q} "
        "--prompts {input.prompts} {params.adapter} --out {output.generations} "
        "--meta {output.meta} > {log} 2>&1"
