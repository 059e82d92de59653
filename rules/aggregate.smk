# Metrics per variant, then one tidy table for the grid.


rule metrics:
    input:
        judgments=judgment_inputs,
        capability=f"{R}/capability/{{model}}/{{variant}}.json",
    output:
        metrics=f"{R}/metrics/{{model}}/{{variant}}.csv",
        disagreements=f"{R}/metrics/{{model}}/{{variant}}.disagreements.jsonl",
    params:
        cfg=p_metrics,
    log:
        f"{R}/logs/metrics/{{model}}/{{variant}}.log",
    threads: threads_of("default")
    resources:
        **res("default"),
    conda:
        "../envs/report.yaml"
    shell:
        PY + ".metrics --params {params.cfg:q} --judgments {input.judgments} "
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
    threads: threads_of("default")
    resources:
        **res("default"),
    conda:
        "../envs/report.yaml"
    shell:
        PY + ".aggregate --metrics {input.metrics} --disagreements {input.disagreements} "
        "--out {output.metrics} --out-disagreements {output.disagreements} > {log} 2>&1"
