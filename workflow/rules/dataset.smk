rule cut_clips:
    input:
        json="results/{lang}/aligned/{rec}.json",
        wav="results/{lang}/audio/{rec}.wav",
    output:
        segments="results/{lang}/dataset/segments/{rec}.jsonl",
        clips=directory("results/{lang}/dataset/clips/{rec}"),
    log:
        "logs/{lang}/cut_clips/{rec}.log",
    benchmark:
        "benchmarks/{lang}/cut_clips/{rec}.tsv"
    conda:
        "../../envs/audio.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=15,
    params:
        options=step_options(
            "dataset", "min_s", "max_s", "pad_s", "min_pause_s", "max_cer", "text"
        ),
    shell:
        "python -m tala.dataset.clips {input.json:q} {output.segments:q} {output.clips:q}"
        " --audio {input.wav:q} {params.options} > {log:q} 2>&1"


rule build_dataset:
    input:
        segments=per_text_recording("results/{lang}/dataset/segments/{rec}.jsonl"),
        clips=per_text_recording("results/{lang}/dataset/clips/{rec}"),
        problems="results/{lang}/report/problems.json",
    output:
        train="results/{lang}/dataset/train.jsonl",
        valid="results/{lang}/dataset/valid.jsonl",
        test="results/{lang}/dataset/test.jsonl",
        card=report(
            "results/{lang}/dataset/README.md",
            caption="../report/dataset.rst",
            category="3. Dataset",
            subcategory="{lang}",
            labels={"language": "{lang}", "file": "dataset card"},
        ),
        summary="results/{lang}/dataset/summary.json",
        nemo=directory("results/{lang}/dataset/nemo"),
        lhotse=directory("results/{lang}/dataset/lhotse"),
    log:
        "logs/{lang}/build_dataset.log",
    conda:
        "../../envs/audio.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        out_dir=lambda wildcards, output: Path(output.train).parent,
        ratios=setting("dataset", "ratios"),
        seed=setting("dataset", "seed"),
    shell:
        "python -m tala.dataset.build --language {wildcards.lang:q} --segments {input.segments:q}"
        " --out-dir {params.out_dir:q} --ratios {params.ratios} --seed {params.seed}"
        " --problems {input.problems:q} > {log:q} 2>&1"


add_targets(
    "text language",
    *expand(
        "results/{{lang}}/dataset/{name}",
        name=["train.jsonl", "valid.jsonl", "test.jsonl", "README.md", "summary.json"],
    ),
)
