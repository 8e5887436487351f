rule read_text:
    """The official text, normalized to the transcription model's letters: it reads the model's
    vocab.json only, so it runs beside the transcription, not after it."""
    input:
        docx=official_text,
        model=asr_model_input,
    output:
        json="results/{lang}/text/{rec}.json",
    log:
        "logs/{lang}/read_text/{rec}.log",
    conda:
        "../../envs/text.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        model=lambda wildcards: asr_model(wildcards.lang),
        adapter=asr_adapter,
        models_dir=config["models_dir"],
        options=text_options,
    shell:
        "python -m tala.align.read_text {input.docx:q} {output.json:q}"
        " --model {params.model:q} --adapter {params.adapter:q} --models-dir {params.models_dir:q}"
        " --recording {wildcards.rec:q} {params.options} > {log:q} 2>&1"


rule align_transcript:
    input:
        asr="results/{lang}/asr/{rec}.json",
        emissions="results/{lang}/asr/{rec}.emissions.npy",
        wav="results/{lang}/audio/{rec}.wav",
        text="results/{lang}/text/{rec}.json",
    output:
        json="results/{lang}/aligned/{rec}.json",
    log:
        "logs/{lang}/align_transcript/{rec}.log",
    benchmark:
        "benchmarks/{lang}/align_transcript/{rec}.tsv"
    conda:
        "../../envs/align.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        options=step_options(
            "align", "method", "star_penalty", "max_chapter_cer", "refine_edges"
        ),
    shell:
        "python -m tala.align.align_transcript {input.asr:q} {input.emissions:q} {input.text:q} {output.json:q}"
        " --audio {input.wav:q} {params.options} > {log:q} 2>&1"


rule export_timing:
    """Verse timings (CSV, WebVTT, Audacity labels) of every aligned chapter of a language, one
    folder: a chapter the aligner rejected gets none (the problems table says why)."""
    input:
        aligned=per_text_recording("results/{lang}/aligned/{rec}.json"),
    output:
        timing=directory("results/{lang}/timing"),
    log:
        "logs/{lang}/export_timing.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m tala.align.exports --timing-dir {output.timing:q} {input.aligned:q} > {log:q} 2>&1"


add_targets("text recording", "results/{lang}/aligned/{rec}.json")
add_targets("text language", "results/{lang}/timing")
