checkpoint inspect_inputs:
    """Probes every raw recording and DOCX of a language before any job uses them: the chapters
    whose audio cannot be read are left out of the DAG, those without a usable text are only
    transcribed (tala.inspect.inputs). Local: the DAG waits on it, and it only reads headers.
    """
    input:
        audio=lambda wildcards: [
            str(r.audio) for r in RECORDINGS[wildcards.lang].values()
        ],
        texts=existing_texts,
    output:
        json="results/{lang}/inspection.json",
    log:
        "logs/{lang}/inspect_inputs.log",
    localrule: True
    conda:
        "../../envs/inspect.yaml"
    threads: config["job_threads"]
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        options=inspection_options,
    shell:
        "python -m tala.inspect.inputs --language {wildcards.lang:q} --out {output.json:q}"
        " --jobs {threads} {params.options} > {log:q} 2>&1"
