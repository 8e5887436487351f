rule convert_audio:
    input:
        audio=raw_audio,
    output:
        wav="results/{lang}/audio/{rec}.wav",
    log:
        "logs/{lang}/convert_audio/{rec}.log",
    benchmark:
        "benchmarks/{lang}/convert_audio/{rec}.tsv"
    conda:
        "../../envs/audio.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    shell:
        "python -m tala.audio.convert {input.audio:q} {output.wav:q} > {log:q} 2>&1"


rule segment_audio:
    input:
        wav="results/{lang}/audio/{rec}.wav",
    output:
        tsv="results/{lang}/segments/{rec}.tsv",
    log:
        "logs/{lang}/segment_audio/{rec}.log",
    benchmark:
        "benchmarks/{lang}/segment_audio/{rec}.tsv"
    conda:
        "../../envs/audio.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=15,
    params:
        options=step_options(
            "segment", "threshold_db", "min_silence_s", "min_span_s", "max_span_s"
        ),
    shell:
        "python -m tala.audio.segment {input.wav:q} {output.tsv:q} {params.options} > {log:q} 2>&1"


add_targets(
    "recording", "results/{lang}/audio/{rec}.wav", "results/{lang}/segments/{rec}.tsv"
)
