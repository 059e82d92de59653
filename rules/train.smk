# Preference training: shared reference log-probs once per (model, data, reference key = dtype,
# 4-bit, bf16 autocast, max_length), then one job per variant (method cell x seed). A training job
# checkpoints into results/models/<m>/<variant>/checkpoints/ (not an output, so Snakemake keeps it
# when the job fails) and a rerun resumes from there; `run` is a function of `output`, so changing
# the checkpoint interval never reruns training.


rule ref_logps:
    input:
        pairs=f"{R}/data/preference.jsonl",
        model=model_input,
    output:
        f"{R}/models/{{model}}/ref_logps/{{refkey}}.jsonl",
    log:
        f"{R}/logs/models/{{model}}/ref_logps_{{refkey}}.log",
    benchmark:
        f"{R}/benchmarks_tsv/models/{{model}}/ref_logps_{{refkey}}.tsv"
    conda:
        "../envs/train.yaml"
    threads: threads_of("ref_logps")
    resources:
        **res("ref_logps", rule="ref_logps"),
    params:
        cfg=p_ref_logps,
    shell:
        shell_cmd(
            "train.run ref-logps",
            "--params {params.cfg:q} --pairs {input.pairs} --out {output}",
        )


rule train:
    input:
        pairs=f"{R}/data/preference.jsonl",
        model=model_input,
        ref_logps=ref_logps_input,
    output:
        adapter=directory(f"{R}/models/{{model}}/{{variant}}/adapter"),
        log=report(
            f"{R}/models/{{model}}/{{variant}}/train.json",
            caption="../workflow/report/train.rst",
            category="Training",
            labels={"model": "{model}", "variant": "{variant}"},
        ),
    log:
        f"{R}/logs/models/{{model}}/{{variant}}/train.log",
    benchmark:
        f"{R}/benchmarks_tsv/train/{{model}}/{{variant}}.tsv"
    conda:
        "../envs/train.yaml"
    threads: threads_of("train")
    resources:
        **res("train", rule="train"),
    params:
        cfg=p_train,
        ref=lambda wildcards, input: (
            f"--ref-logps {input.ref_logps}" if input.ref_logps else ""
        ),
        run=p_train_run,
    shell:
        shell_cmd(
            "train.run train",
            "--params {params.cfg:q} --pairs {input.pairs} {params.ref} "
            "--out {output.adapter} --log {output.log} {params.run} "
            "--gpus {resources.gpu}",
        )
