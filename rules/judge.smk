# Judging, separate from generation: one rule per configured judge, one job per grid cell
# (model, variant, benchmark) of the benchmarks the judge applies to (its `applies_to`): a judge
# never reads a benchmark it does not judge. Adding or swapping a judge never regenerates.

for _judge in JUDGES:

    rule:
        name:
            f"judge_{_judge}"
        input:
            generations=f"{R}/generations/{{model}}/{{variant}}/{{benchmark}}.jsonl",
            judge_model=judge_input(_judge),
            # A tiny-world judge judges once it passed its validation.
            validation=judge_validation_input(_judge),
        output:
            judgments=f"{R}/judgments/{{model}}/{{variant}}/{{benchmark}}/{_judge}.jsonl",
            meta=f"{R}/judgments/{{model}}/{{variant}}/{{benchmark}}/{_judge}.meta.json",
        log:
            f"{R}/logs/judgments/{{model}}/{{variant}}/{{benchmark}}/{_judge}.log",
        benchmark:
            f"{R}/benchmarks_tsv/judge/{{model}}/{{variant}}/{{benchmark}}/{_judge}.tsv"
        wildcard_constraints:
            benchmark=judged_benchmarks(_judge),
        conda:
            judge_env(_judge)
        threads: threads_of("judge", _judge)
        resources:
            **res("judge", _judge, rule=f"judge_{_judge}"),
        params:
            cfg=p_judge_of(_judge),
            python=judge_python(_judge),
        shell:
            shell_cmd(
                "judge run",
                "--params {params.cfg:q} --generations {input.generations} "
                "--out {output.judgments} --meta {output.meta} --gpus {resources.gpu}",
                python="{params.python:q}",
            )
