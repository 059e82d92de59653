# Data: the tiny world's files, preference pairs, benchmark prompts, capability task files.


rule world_data:
    output:
        expand("{R}/world/data/{f}", R=R, f=WORLD_FILES.values()),
    log:
        f"{R}/logs/world_data.log",
    benchmark:
        f"{R}/benchmarks_tsv/world_data.tsv"
    conda:
        "../envs/data.yaml"
    threads: threads_of("default")
    resources:
        **res("default", rule="world_data"),
    params:
        cfg=p_world,
        outdir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "OMP_NUM_THREADS={threads} python -m safealign.world data --params {params.cfg:q} --outdir {params.outdir} > {log} 2>&1"


rule preference_data:
    input:
        unpack(preference_inputs),
    output:
        f"{R}/data/preference.jsonl",
    log:
        f"{R}/logs/preference_data.log",
    benchmark:
        f"{R}/benchmarks_tsv/preference_data.tsv"
    conda:
        "../envs/data.yaml"
    threads: threads_of("default")
    resources:
        **res("default", rule="preference_data"),
    params:
        cfg=p_preference,
    shell:
        "OMP_NUM_THREADS={threads} python -m safealign.data.preference --params {params.cfg:q} --out {output} "
        "--onpolicy {input.onpolicy} --exclude {input.exclude} > {log} 2>&1"


# On-policy pairs (config preference_data.on_policy): held-apart prompts, then the base model's
# own responses with and without the refusal system prompt; preference_data pairs them.
rule onpolicy_prompts:
    input:
        sources=onpolicy_source_files,
        exclude=expand(f"{R}/prompts/{{benchmark}}.jsonl", benchmark=BENCHMARKS),
    output:
        harmful=f"{R}/data/onpolicy/prompts/harmful.jsonl",
        benign=f"{R}/data/onpolicy/prompts/benign.jsonl",
    log:
        f"{R}/logs/onpolicy_prompts.log",
    benchmark:
        f"{R}/benchmarks_tsv/onpolicy_prompts.tsv"
    conda:
        "../envs/data.yaml"
    threads: threads_of("default")
    resources:
        **res("default", rule="onpolicy_prompts"),
    params:
        cfg=p_onpolicy_prompts,
    shell:
        "OMP_NUM_THREADS={threads} python -m safealign.data.onpolicy --params {params.cfg:q} "
        "--exclude {input.exclude} --out {output.harmful} {output.benign} > {log} 2>&1"


rule onpolicy_generate:
    input:
        harmful=f"{R}/data/onpolicy/prompts/harmful.jsonl",
        benign=f"{R}/data/onpolicy/prompts/benign.jsonl",
        model=onpolicy_model_input,
    output:
        generations=onpolicy_generation_files(),
        meta=f"{R}/data/onpolicy/generations/meta.json",
    log:
        f"{R}/logs/onpolicy_generate.log",
    benchmark:
        f"{R}/benchmarks_tsv/onpolicy_generate.tsv"
    conda:
        "../envs/vllm.yaml"
    threads: threads_of("generate")
    resources:
        **res("generate", rule="onpolicy_generate"),
    params:
        cfg=p_onpolicy_generate,
        python=generation_python,
    shell:
        "OMP_NUM_THREADS={threads} {params.python:q} -m safealign.generate --params {params.cfg:q} "
        "--prompts {input.harmful} {input.harmful} {input.benign} {input.benign} "
        "--out {output.generations} --meta {output.meta} --gpus {resources.gpu} > {log} 2>&1"


rule benchmark_prompts:
    input:
        lambda wildcards: source_input(
            config["benchmarks"][wildcards.benchmark]["source"]
        ),
    output:
        f"{R}/prompts/{{benchmark}}.jsonl",
    log:
        f"{R}/logs/prompts/{{benchmark}}.log",
    benchmark:
        f"{R}/benchmarks_tsv/prompts/{{benchmark}}.tsv"
    conda:
        "../envs/data.yaml"
    threads: threads_of("default")
    resources:
        **res("default", rule="benchmark_prompts"),
    params:
        cfg=p_benchmark,
    shell:
        "OMP_NUM_THREADS={threads} python -m safealign.data.benchmark --params {params.cfg:q} --out {output} > {log} 2>&1"
