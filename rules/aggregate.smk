# Metrics per variant, then one tidy table for the grid.


rule metrics:
    input:
        judgments=judgment_inputs,
        capability=f"{R}/capability/{{model}}/{{variant}}.json",
    output:
        metrics=f"{R}/metrics/{{model}}/{{variant}}.csv",
        disagreements=f"{R}/metrics/{{model}}/{{variant}}.disagreements.jsonl",
    log:
        f"{R}/logs/metrics/{{model}}/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks_tsv/metrics/{{model}}/{{variant}}.tsv"
    conda:
        "../envs/report.yaml"
    threads: threads_of("default")
    resources:
        **res("default", rule="metrics"),
    params:
        cfg=p_metrics,
    shell:
        "OMP_NUM_THREADS={threads} python -m safealign.metrics --params {params.cfg:q} --judgments {input.judgments} "
        "--capability {input.capability} --out {output.metrics} "
        "--disagreements {output.disagreements} > {log} 2>&1"


rule aggregate:
    input:
        metrics=variant_metric_files(),
        disagreements=variant_disagreement_files(),
    output:
        metrics=report(
            f"{R}/metrics.csv",
            caption="../workflow/report/metrics.rst",
            category="Metrics",
        ),
        disagreements=f"{R}/disagreements.jsonl",
    log:
        f"{R}/logs/aggregate.log",
    benchmark:
        f"{R}/benchmarks_tsv/aggregate.tsv"
    conda:
        "../envs/report.yaml"
    threads: threads_of("default")
    resources:
        **res("default", rule="aggregate"),
    shell:
        "OMP_NUM_THREADS={threads} python -m safealign.aggregate --metrics {input.metrics} --disagreements {input.disagreements} "
        "--out {output.metrics} --out-disagreements {output.disagreements} > {log} 2>&1"
