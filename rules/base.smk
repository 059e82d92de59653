# The tiny world's models, built from scratch: base policy, safety judge, toxicity classifier.


rule world_base_model:
    input:
        world_path("corpus"),
    output:
        model=directory(f"{R}/models/{{model}}/base"),
        stats=f"{R}/models/{{model}}/base.json",
    params:
        cfg=p_world_model,
    log:
        f"{R}/logs/models/{{model}}/base.log",
    benchmark:
        f"{R}/benchmarks_tsv/models/{{model}}/base.tsv"
    threads: threads_of("world_model")
    resources:
        **res("world_model"),
    conda:
        "../envs/train.yaml"
    shell:
        PY + ".world base --params {params.cfg:q} --corpus {input} --out {output.model} "
        "--stats {output.stats} > {log} 2>&1"


rule world_judge_model:
    input:
        lambda wildcards: world_path(WORLD_JUDGE_DATA[config["judges"][wildcards.judge]["type"]]),
    output:
        model=directory(f"{R}/judges/{{judge}}/model"),
        heldout=f"{R}/judges/{{judge}}/heldout.jsonl",
    params:
        cfg=p_world_judge,
        kind=lambda wildcards: "judge"
        if config["judges"][wildcards.judge]["type"] == "llama_guard"
        else "toxicity",
    log:
        f"{R}/logs/judges/{{judge}}/model.log",
    benchmark:
        f"{R}/benchmarks_tsv/judges/{{judge}}/model.tsv"
    threads: threads_of("world_model")
    resources:
        **res("world_model"),
    conda:
        "../envs/train.yaml"
    shell:
        PY + ".world {params.kind} --params {params.cfg:q} --examples {input} "
        "--out {output.model} --validation {output.heldout} > {log} 2>&1"


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
    params:
        cfg=p_judge,
    log:
        f"{R}/logs/judges/{{judge}}/validation.log",
    benchmark:
        f"{R}/benchmarks_tsv/judges/{{judge}}/validation.tsv"
    threads: threads_of("judge")
    resources:
        **res("judge"),
    conda:
        "../envs/judge.yaml"
    shell:
        PY + ".judge validate --params {params.cfg:q} --examples {input.heldout} "
        "--out {output} > {log} 2>&1"
