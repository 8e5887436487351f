rule summarize_audio:
    input:
        wavs=per_recording("results/{lang}/audio/{rec}.wav"),
        spans=per_recording("results/{lang}/segments/{rec}.tsv"),
    output:
        table=report(
            "results/{lang}/report/recordings.html",
            caption="../report/recordings.rst",
            category="1. Audio",
            subcategory="{lang}",
            labels={"language": "{lang}", "figure": "recordings"},
        ),
        tsv="results/{lang}/report/recordings.tsv",
        histogram=report(
            "results/{lang}/report/span_durations.svg",
            caption="../report/span_durations.rst",
            category="1. Audio",
            subcategory="{lang}",
            labels={"language": "{lang}", "figure": "span durations"},
        ),
    log:
        "logs/{lang}/summarize_audio.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m tala.audio_summary --language {wildcards.lang:q}"
        " --wavs {input.wavs:q} --spans {input.spans:q}"
        " --tsv {output.tsv:q} --html {output.table:q} --svg {output.histogram:q}"
        " > {log:q} 2>&1"
