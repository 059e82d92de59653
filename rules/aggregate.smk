# Metrics per variant, then one tidy table for the grid.


rule metrics:
    input:
        judgments=judgment_inputs,
        capability=capability_input,
        # Their chat template hashes must equal the training's (safealign.chat.check_same_template).
        generation_meta=generation_meta_inputs,
        train_log=train_log_input,
    output:
        metrics=f"{R}/metrics/{{model}}/{{variant}}.csv",
        disagreements=f"{R}/metrics/{{model}}/{{variant}}.disagreements.jsonl",
        outcomes=f"{R}/metrics/{{model}}/{{variant}}.outcomes.csv",
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
        shell_cmd(
            "metrics",
            "--params {params.cfg:q} --judgments {input.judgments} "
            "--capability {input.capability} --out {output.metrics} "
            "--disagreements {output.disagreements} --outcomes {output.outcomes} "
            "--generation-meta {input.generation_meta} --train-log {input.train_log}",
        )


rule aggregate:
    input:
        # The evaluated variants: with config.selection, a swept method's pick (a checkpoint).
        metrics=evaluated_files(f"{R}/metrics/{{model}}/{{variant}}.csv"),
        outcomes=evaluated_files(f"{R}/metrics/{{model}}/{{variant}}.outcomes.csv"),
        disagreements=evaluated_files(
            f"{R}/metrics/{{model}}/{{variant}}.disagreements.jsonl"
        ),
    output:
        metrics=report(
            f"{R}/metrics.csv",
            caption="../workflow/report/metrics.rst",
            category="Metrics",
        ),
        disagreements=f"{R}/disagreements.jsonl",
        comparisons=report(
            f"{R}/comparisons.csv",
            caption="../workflow/report/comparisons.rst",
            category="Metrics",
        ),
        seeds=report(
            f"{R}/seeds.csv",
            caption="../workflow/report/seeds.rst",
            category="Metrics",
        ),
    log:
        f"{R}/logs/aggregate.log",
    benchmark:
        f"{R}/benchmarks_tsv/aggregate.tsv"
    conda:
        "../envs/report.yaml"
    threads: threads_of("default")
    resources:
        **res("default", rule="aggregate"),
    params:
        cfg=p_aggregate,
    shell:
        shell_cmd(
            "aggregate",
            "--params {params.cfg:q} --metrics {input.metrics} "
            "--outcomes {input.outcomes} --disagreements {input.disagreements} "
            "--out {output.metrics} --out-disagreements {output.disagreements} "
            "--out-comparisons {output.comparisons} --out-seeds {output.seeds}",
        )
