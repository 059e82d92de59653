# Selection on the development split (config.selection; src/safealign/selection.py): each
# candidate of a swept method (its cells, at the method's first seed) is generated and judged on the
# development benchmarks (`<benchmark>-dev`, through the generate and judge rules), scored here,
# and the `select` checkpoint of (model, method) picks one cell by config.selection.objective.
# Only the pick is trained with every seed and evaluated (rules/aggregate.smk reads the picks).


rule dev_metrics:
    input:
        judgments=dev_judgment_inputs,
        generation_meta=dev_generation_meta_inputs,
        train_log=train_log_input,
    output:
        metrics=f"{R}/selection/{{model}}/dev/{{variant}}.csv",
        disagreements=f"{R}/selection/{{model}}/dev/{{variant}}.disagreements.jsonl",
        outcomes=f"{R}/selection/{{model}}/dev/{{variant}}.outcomes.csv",
    log:
        f"{R}/logs/dev_metrics/{{model}}/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks_tsv/dev_metrics/{{model}}/{{variant}}.tsv"
    conda:
        "../envs/report.yaml"
    threads: threads_of("default")
    resources:
        **res("default", rule="dev_metrics"),
    params:
        cfg=p_dev_metrics,
    shell:
        shell_cmd(
            "metrics",
            "--params {params.cfg:q} --judgments {input.judgments} "
            "--out {output.metrics} --disagreements {output.disagreements} "
            "--outcomes {output.outcomes} --generation-meta {input.generation_meta} "
            "--train-log {input.train_log}",
        )


checkpoint select:
    input:
        unpack(select_inputs),
    output:
        f"{R}/selection/{{model}}/{{method}}.json",
    log:
        f"{R}/logs/select/{{model}}/{{method}}.log",
    benchmark:
        f"{R}/benchmarks_tsv/select/{{model}}/{{method}}.tsv"
    conda:
        "../envs/report.yaml"
    threads: threads_of("default")
    resources:
        **res("default", rule="select"),
    params:
        cfg=p_select,
    shell:
        shell_cmd(
            "selection",
            "--params {params.cfg:q} --base {input.base} "
            "--candidates {input.candidates} --out {output}",
        )
