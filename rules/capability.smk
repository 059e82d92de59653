# General capability through lm-evaluation-harness (custom offline tasks in the tiny world).


rule capability:
    input:
        cap_items=capability_items,
        model=model_input,
        adapter=adapter_input,
        nltk_data=nltk_data_input,
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
        nltk_arg=lambda wildcards, input: (
            ["--nltk-data", input.nltk_data] if input.nltk_data else []
        ),
    shell:
        shell_cmd(
            "capability.harness",
            "--model-ref {params.ref:q} --params {params.cfg:q} "
            "{params.items_arg:q} {params.adapter:q} {params.nltk_arg:q} "
            "--tasks-dir {output.tasks} --out {output.result}",
        )


# NLTK data that lm-eval's task code reads (IFEval: punkt_tab), downloaded where Snakemake runs
# (the login node; GPU nodes need no internet for it) into the results, for capability jobs.
rule nltk_data:
    output:
        directory(f"{R}/nltk_data"),
    log:
        f"{R}/logs/nltk_data.log",
    localrule: True
    conda:
        "../envs/eval.yaml"
    threads: threads_of("default")
    resources:
        **res("default", rule="nltk_data"),
    params:
        packages=nltk_packages(),
    shell:
        "python -m safealign.capability.taskcode --out {output:q} {params.packages} > {log} 2>&1"
