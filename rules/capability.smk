# General capability through lm-evaluation-harness (custom offline tasks in the tiny world).


rule capability:
    input:
        cap_items=capability_items,
        model=model_input,
        adapter=adapter_input,
    output:
        result=f"{R}/capability/{{model}}/{{variant}}.json",
        tasks=directory(f"{R}/capability/{{model}}/{{variant}}.tasks"),
    log:
        f"{R}/logs/capability/{{model}}/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks_tsv/capability/{{model}}/{{variant}}.tsv"
    conda:
        "../envs/eval.yaml"
    threads: threads_of("capability")
    resources:
        **res("capability", rule="capability"),
    params:
        cfg=p_capability,
        ref=p_capability_ref,
        # Argument lists, so that `:q` quotes each path (capability.source.path is a config string).
        adapter=lambda wildcards, input: (
            ["--adapter", input.adapter] if input.adapter else []
        ),
        items_arg=lambda wildcards, input: (
            ["--items", input.cap_items] if input.cap_items else []
        ),
    shell:
        shell_cmd(
            "capability.harness",
            "--model-ref {params.ref:q} --params {params.cfg:q} "
            "{params.items_arg:q} {params.adapter:q} "
            "--tasks-dir {output.tasks} --out {output.result}",
        )
