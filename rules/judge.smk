# Judging, separate from generation: one job per (variant, benchmark, judge).


rule judge:
    input:
        generations=f"{R}/generations/{{model}}/{{variant}}/{{benchmark}}.jsonl",
        judge_model=lambda wildcards: judge_input(wildcards.judge),
    output:
        judgments=f"{R}/judgments/{{model}}/{{variant}}/{{benchmark}}/{{judge}}.jsonl",
        meta=f"{R}/judgments/{{model}}/{{variant}}/{{benchmark}}/{{judge}}.meta.json",
    params:
        cfg=p_judge,
    log:
        f"{R}/logs/judgments/{{model}}/{{variant}}/{{benchmark}}/{{judge}}.log",
    benchmark:
        f"{R}/benchmarks_tsv/judge/{{model}}/{{variant}}/{{benchmark}}/{{judge}}.tsv"
    threads: threads_of("judge")
    resources:
        **res("judge"),
    conda:
        "../envs/judge.yaml"
    shell:
        PY + ".judge run --params {params.cfg:q} --generations {input.generations} "
        "--out {output.judgments} --meta {output.meta} > {log} 2>&1"
