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
        # Functions: with config.selection they depend on the picks (a checkpoint).
        train_logs=lambda w: train_logs(),
        judgments=lambda w: report_judgment_files(),
        metas=lambda w: report_meta_files(),
        capability=lambda w: capability_files(),
        benchmarks=lambda w: benchmark_files(),
        logs=lambda w: job_log_files(),
        selections=selection_files(),
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
            "--benchmarks {input.benchmarks} --logs {input.logs} "
            "--selections {input.selections} --out {output.html} "
            "--plots-dir {output.plots}",
        )
