# The one self-contained HTML report. It reads only its declared inputs: the tidy tables, the
# judgments (responses browser), the provenance files and every job's benchmark TSV and log (cost
# table; a warm job's log holds its CPU time, safealign.warm), and its page template, CSS and JS
# (src/safealign/report/templates/), so editing one reruns the report.


rule report:
    input:
        metrics=f"{R}/metrics.csv",
        comparisons=f"{R}/comparisons.csv",
        seeds=f"{R}/seeds.csv",
        disagreements=f"{R}/disagreements.jsonl",
        validations=world_validations(),
        train_logs=train_logs(),
        judgments=report_judgment_files(),
        metas=report_meta_files(),
        capability=variant_files(f"{R}/capability/{{model}}/{{variant}}.json"),
        benchmarks=benchmark_files(),
        logs=job_log_files(),
        templates=report_resources(),
    output:
        html=report(
            f"{R}/report.html",
            caption="../workflow/report/report.rst",
            category="Report",
        ),
        plots=report(
            directory(f"{R}/plots"),
            patterns=["{name}.png"],
            caption="../workflow/report/plots.rst",
            category="Plots",
            labels={"figure": "{name}"},
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
    shell:
        shell_cmd(
            "report",
            "--params {params.cfg:q} --metrics {input.metrics} "
            "--comparisons {input.comparisons} --seeds {input.seeds} "
            "--disagreements {input.disagreements} --validations {input.validations} "
            "--train-logs {input.train_logs} --judgments {input.judgments} "
            "--metas {input.metas} --capability {input.capability} "
            "--benchmarks {input.benchmarks} --logs {input.logs} --out {output.html} "
            "--plots-dir {output.plots}",
        )
