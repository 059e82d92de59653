# Data: the tiny world's files, preference pairs, benchmark prompts, capability task files.


rule world_data:
    output:
        expand("{R}/world/data/{f}", R=R, f=WORLD_FILES.values()),
    params:
        cfg=p_world,
        outdir=f"{R}/world/data",
    log:
        f"{R}/logs/world_data.log",
    benchmark:
        f"{R}/benchmarks_tsv/world_data.tsv"
    threads: threads_of("default")
    resources:
        **res("default"),
    conda:
        "../envs/data.yaml"
    shell:
        PY + ".world data --params {params.cfg:q} --outdir {params.outdir} > {log} 2>&1"


rule preference_data:
    input:
        source_input(config["preference_data"]["source"]),
    output:
        f"{R}/data/preference.jsonl",
    params:
        cfg=p_preference,
    log:
        f"{R}/logs/preference_data.log",
    benchmark:
        f"{R}/benchmarks_tsv/preference_data.tsv"
    threads: threads_of("default")
    resources:
        **res("default"),
    conda:
        "../envs/data.yaml"
    shell:
        PY + ".data.preference --params {params.cfg:q} --out {output} > {log} 2>&1"


rule benchmark_prompts:
    input:
        lambda wildcards: source_input(config["benchmarks"][wildcards.benchmark]["source"]),
    output:
        f"{R}/prompts/{{benchmark}}.jsonl",
    params:
        cfg=p_benchmark,
    log:
        f"{R}/logs/prompts/{{benchmark}}.log",
    benchmark:
        f"{R}/benchmarks_tsv/prompts/{{benchmark}}.tsv"
    threads: threads_of("default")
    resources:
        **res("default"),
    conda:
        "../envs/data.yaml"
    shell:
        PY + ".data.benchmark --params {params.cfg:q} --out {output} > {log} 2>&1"
