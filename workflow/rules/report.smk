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
        "python -m tala.report.audio_summary --language {wildcards.lang:q}"
        " --wavs {input.wavs:q} --spans {input.spans:q}"
        " --tsv {output.tsv:q} --html {output.table:q} --svg {output.histogram:q}"
        " > {log:q} 2>&1"


rule collect_problems:
    """Every chapter of a language that was left out or needs a look, with the file and why."""
    input:
        inspection="results/{lang}/inspection.json",
        aligned=per_text_recording("results/{lang}/aligned/{rec}.json"),
    output:
        json="results/{lang}/report/problems.json",
        tsv="results/{lang}/report/problems.tsv",
        html=report(
            "results/{lang}/report/problems.html",
            caption="../report/problems.rst",
            category="0. Problems",
            subcategory="{lang}",
            labels={"language": "{lang}", "table": "problems"},
        ),
    log:
        "logs/{lang}/collect_problems.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m tala.report.problems --language {wildcards.lang:q} --inspection {input.inspection:q}"
        " --aligned {input.aligned:q} --json {output.json:q} --tsv {output.tsv:q} --html {output.html:q}"
        " > {log:q} 2>&1"


rule summarize_alignment:
    input:
        aligned=per_text_recording("results/{lang}/aligned/{rec}.json"),
    output:
        table=report(
            "results/{lang}/report/alignment.html",
            caption="../report/alignment.rst",
            category="2. Alignment",
            subcategory="{lang}",
            labels={"language": "{lang}", "figure": "alignment"},
        ),
        tsv="results/{lang}/report/alignment.tsv",
    log:
        "logs/{lang}/summarize_alignment.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        truth=lambda wildcards: (
            f"--truth-dir {shlex.quote(truth_dir(wildcards.lang))}"
            if truth_dir(wildcards.lang)
            else ""
        ),
    shell:
        "python -m tala.report.align_report --language {wildcards.lang:q} --aligned {input.aligned:q}"
        " --tsv {output.tsv:q} --html {output.table:q} {params.truth} > {log:q} 2>&1"


rule plot_boundary_errors:
    """Only for languages with ground-truth verse times (`truth_dir`, as the demo has)."""
    input:
        aligned=per_text_recording("results/{lang}/aligned/{rec}.json"),
        truth=lambda wildcards: truth_dir(wildcards.lang) or [],
    output:
        svg=report(
            "results/{lang}/report/boundary_errors.svg",
            caption="../report/boundary_errors.rst",
            category="2. Alignment",
            subcategory="{lang}",
            labels={"language": "{lang}", "figure": "boundary errors"},
        ),
    log:
        "logs/{lang}/plot_boundary_errors.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m tala.report.align_report --language {wildcards.lang:q} --aligned {input.aligned:q}"
        " --truth-dir {input.truth:q} --svg {output.svg:q}"
        " > {log:q} 2>&1"


rule proof_verses:
    input:
        aligned=per_text_recording("results/{lang}/aligned/{rec}.json"),
    output:
        tsv=report(
            "results/{lang}/report/proofing.tsv",
            caption="../report/proofing.rst",
            category="2. Alignment",
            subcategory="{lang}",
            labels={"language": "{lang}", "figure": "proofing"},
        ),
    log:
        "logs/{lang}/proof_verses.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m tala.align.exports --proofing {output.tsv:q} {input.aligned:q} > {log:q} 2>&1"


rule listen_clips:
    input:
        splits=expand(
            "results/{{lang}}/dataset/{split}.jsonl", split=["train", "valid", "test"]
        ),
        clips=per_text_recording("results/{lang}/dataset/clips/{rec}"),
    output:
        html=report(
            "results/{lang}/report/listen.html",
            caption="../report/listen.rst",
            category="3. Dataset",
            subcategory="{lang}",
            labels={"language": "{lang}", "file": "listen to clips"},
        ),
    log:
        "logs/{lang}/listen_clips.log",
    conda:
        "../../envs/audio.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        dataset=lambda wildcards, input: Path(input.splits[0]).parent,
    shell:
        "python -m tala.report.listen --language {wildcards.lang:q} --dataset {params.dataset:q}"
        " --html {output.html:q} > {log:q} 2>&1"


add_targets(
    "audio language",
    "results/{lang}/report/recordings.html",
    "results/{lang}/report/recordings.tsv",
    "results/{lang}/report/span_durations.svg",
)
add_targets(
    "language",
    "results/{lang}/report/problems.html",
    "results/{lang}/report/problems.tsv",
    "results/{lang}/report/problems.json",
)
add_targets(
    "text language",
    "results/{lang}/report/alignment.html",
    "results/{lang}/report/alignment.tsv",
    "results/{lang}/report/proofing.tsv",
    "results/{lang}/report/listen.html",
)
add_targets("truth language", "results/{lang}/report/boundary_errors.svg")
