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
    log:
        f"{R}/logs/report.log",
    benchmark:
        f"{R}/benchmarks_tsv/report.tsv"
    conda:
        "../envs/report.yaml"
    threads: threads_of("default")
    resources:
        **res("default", rule="report"),
    params:
        cfg=p_report,
        benchmarks_dir=f"{R}/benchmarks_tsv",
    shell:
        "OMP_NUM_THREADS={threads} python -m safealign.report --params {params.cfg:q} --metrics {input.metrics} "
        "--disagreements {input.disagreements} --validations {input.validations} "
        "--train-logs {input.train_logs} --benchmarks-dir {params.benchmarks_dir} "
        "--out {output} > {log} 2>&1"
