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
        source_input(config["preference_data"]["source"]),
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
        "OMP_NUM_THREADS={threads} python -m safealign.data.preference --params {params.cfg:q} --out {output} > {log} 2>&1"


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
