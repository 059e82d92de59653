# The one self-contained HTML report.


rule report:
    input:
        metrics=f"{R}/metrics.csv",
        disagreements=f"{R}/disagreements.jsonl",
        validations=world_validations(),
        train_logs=train_logs(),
    output:
        report(
            f"{R}/report.html",
            caption="../workflow/report/report.rst",
            category="Report",
        ),
    params:
        cfg=p_report,
        benchmarks_dir=f"{R}/benchmarks_tsv",
    log:
        f"{R}/logs/report.log",
    threads: threads_of("default")
    resources:
        **res("default"),
    conda:
        "../envs/report.yaml"
    shell:
        PY + ".report --params {params.cfg:q} --metrics {input.metrics} "
        "--disagreements {input.disagreements} --validations {input.validations} "
        "--train-logs {input.train_logs} --benchmarks-dir {params.benchmarks_dir} "
        "--out {output} > {log} 2>&1"
