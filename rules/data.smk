# Data: the tiny world's files, preference pairs, benchmark prompts, capability task files.


rule world_data:
    output:
        world_files(),
    log:
        f"{R}/logs/world_data.log",
    benchmark:
        f"{R}/benchmarks_tsv/world_data.tsv"
    conda:
        "../envs/data.yaml"
    threads: threads_of("default")
    resources:
        **res("default", rule="world_data"),
    params:
        cfg=p_world,
        outdir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        shell_cmd(
            "world data",
            "--params {params.cfg:q} --outdir {params.outdir}",
        )


rule preference_data:
    input:
        unpack(preference_inputs),
    output:
        f"{R}/data/preference.jsonl",
    log:
        f"{R}/logs/preference_data.log",
    benchmark:
        f"{R}/benchmarks_tsv/preference_data.tsv"
    conda:
        "../envs/data.yaml"
    threads: threads_of("default")
    resources:
        **res("default", rule="preference_data"),
    params:
        cfg=p_preference,
    shell:
        shell_cmd(
            "data.preference",
            "--params {params.cfg:q} --out {output} --onpolicy {input.onpolicy} "
            "--exclude {input.exclude}",
        )


# On-policy pairs (config preference_data.on_policy): held-apart prompts, then the base model's
# own responses with and without the refusal system prompt; preference_data pairs them.
rule onpolicy_prompts:
    input:
        sources=onpolicy_source_files,
        # Evaluation and development prompts are held apart from training.
        exclude=held_apart_prompt_files(),
    output:
        harmful=f"{R}/data/onpolicy/prompts/harmful.jsonl",
        benign=f"{R}/data/onpolicy/prompts/benign.jsonl",
    log:
        f"{R}/logs/onpolicy_prompts.log",
    benchmark:
        f"{R}/benchmarks_tsv/onpolicy_prompts.tsv"
    conda:
        "../envs/data.yaml"
    threads: threads_of("default")
    resources:
        **res("default", rule="onpolicy_prompts"),
    params:
        cfg=p_onpolicy_prompts,
    shell:
        shell_cmd(
            "data.onpolicy",
            "--params {params.cfg:q} --exclude {input.exclude} "
            "--out {output.harmful} {output.benign}",
        )


rule onpolicy_generate:
    input:
        prompts=onpolicy_prompt_files(),
        model=onpolicy_model_input,
    output:
        generations=onpolicy_generation_files(),
        meta=f"{R}/data/onpolicy/generations/meta.json",
    log:
        f"{R}/logs/onpolicy_generate.log",
    benchmark:
        f"{R}/benchmarks_tsv/onpolicy_generate.tsv"
    conda:
        generation_env()
    threads: threads_of("generate")
    resources:
        **res("generate", rule="onpolicy_generate"),
    params:
        cfg=p_onpolicy_generate,
        python=generation_python,
    shell:
        shell_cmd(
            "generate",
            "--params {params.cfg:q} "
            "--prompts {input.prompts} "
            "--out {output.generations} --meta {output.meta} --gpus {resources.gpu}",
            python="{params.python:q}",
        )


rule benchmark_prompts:
    input:
        source=benchmark_source_input,
        # A development split (<benchmark>-dev) is checked against every evaluation prompt.
        exclude=prompt_exclude,
    output:
        f"{R}/prompts/{{benchmark}}.jsonl",
    log:
        f"{R}/logs/prompts/{{benchmark}}.log",
    benchmark:
        f"{R}/benchmarks_tsv/prompts/{{benchmark}}.tsv"
    conda:
        "../envs/data.yaml"
    threads: threads_of("default")
    resources:
        **res("default", rule="benchmark_prompts"),
    params:
        cfg=p_benchmark,
    shell:
        shell_cmd(
            "data.benchmark",
            "--params {params.cfg:q} --exclude {input.exclude} --out {output}",
        )
