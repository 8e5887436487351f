# Acoustic units and BPE motifs (tala.units): the features of one layer of units.model over each
# speech segment, a streaming k-means over a sample of them, every recording quantized to 50 units
# per second, the language's unit corpus, SentencePiece motifs, and the units scored against the
# letters of the forced alignment (with an MFCC k-means of the same k as the baseline).


# results/{lang}/units/kmeans.json is the k-means, not the units of a recording named "kmeans".
ruleorder: fit_kmeans > quantize_units


rule fit_kmeans:
    input:
        wavs=per_recording("results/{lang}/audio/{rec}.wav"),
        segments=per_recording("results/{lang}/segments/{rec}.tsv"),
        model=units_model_input,
        centroids=shared_centroids,
    output:
        npy="results/{lang}/units/kmeans.npy",
        json="results/{lang}/units/kmeans.json",
    log:
        "logs/{lang}/fit_kmeans.log",
    benchmark:
        "benchmarks/{lang}/fit_kmeans.tsv"
    conda:
        "../../envs/units.yaml"
    threads: config["job_threads"]
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    params:
        model=lambda wildcards: units_model(wildcards.lang),
        models_dir=config["models_dir"],
        centroids=lambda wildcards, input: (
            shlex.join(["--centroids", *input.centroids]) if input.centroids else ""
        ),
        options=step_options(
            "units",
            "layer",
            "k",
            "fit_hours",
            "passes",
            "seed",
            "batch_frames",
            "checkpoint_s",
            "device",
            "dtype",
        ),
    shell:
        "OMP_NUM_THREADS={threads} python -m tala.units.fit_kmeans {output.npy:q} {output.json:q}"
        " --language {wildcards.lang:q} --wavs {input.wavs:q} --segments {input.segments:q}"
        " --model {params.model:q} --models-dir {params.models_dir:q} {params.centroids}"
        " {params.options} > {log:q} 2>&1"


rule quantize_units:
    input:
        wav="results/{lang}/audio/{rec}.wav",
        segments="results/{lang}/segments/{rec}.tsv",
        kmeans="results/{lang}/units/kmeans.npy",
        model=units_model_input,
    output:
        json="results/{lang}/units/{rec}.json",
    log:
        "logs/{lang}/quantize_units/{rec}.log",
    benchmark:
        "benchmarks/{lang}/quantize_units/{rec}.tsv"
    conda:
        "../../envs/units.yaml"
    threads: config["job_threads"]
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        model=lambda wildcards: units_model(wildcards.lang),
        models_dir=config["models_dir"],
        options=step_options("units", "layer", "device", "dtype"),
    shell:
        "OMP_NUM_THREADS={threads} python -m tala.units.quantize {input.wav:q} {input.segments:q}"
        " {input.kmeans:q} {output.json:q} --model {params.model:q}"
        " --models-dir {params.models_dir:q} {params.options} > {log:q} 2>&1"


rule collect_units:
    input:
        units=per_recording("results/{lang}/units/{rec}.json"),
    output:
        timestamped="results/{lang}/units/corpus_timestamped.jsonl",
        bpe_text="results/{lang}/units/all_units_for_bpe.txt",
    log:
        "logs/{lang}/collect_units.log",
    conda:
        "../../envs/units.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        options=step_options("units", "dedup"),
    shell:
        "python -m tala.units.collect {output.timestamped:q} {output.bpe_text:q}"
        " --units {input.units:q} {params.options} > {log:q} 2>&1"


rule train_bpe:
    input:
        corpus="results/{lang}/units/corpus_timestamped.jsonl",
        kmeans="results/{lang}/units/kmeans.json",
        aligned=per_text_recording("results/{lang}/aligned/{rec}.json"),
    output:
        model="results/{lang}/bpe/bpe.model",
        vocab="results/{lang}/bpe/bpe.vocab",
        motifs="results/{lang}/bpe/motif_analysis.json",
    log:
        "logs/{lang}/train_bpe.log",
    conda:
        "../../envs/units.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        out_dir=lambda wildcards, output: Path(output.model).parent,
        options=step_options("bpe", "vocab_size", "dedup", "top", "seed"),
    shell:
        "python -m tala.units.train_bpe {input.corpus:q} {params.out_dir:q} --aligned {input.aligned:q}"
        " --kmeans {input.kmeans:q} {params.options} > {log:q} 2>&1"


add_targets(
    "audio language",
    "results/{lang}/units/kmeans.npy",
    "results/{lang}/units/kmeans.json",
    "results/{lang}/units/corpus_timestamped.jsonl",
    "results/{lang}/units/all_units_for_bpe.txt",
    "results/{lang}/bpe/bpe.model",
    "results/{lang}/bpe/bpe.vocab",
    "results/{lang}/bpe/motif_analysis.json",
)
add_targets("recording", "results/{lang}/units/{rec}.json")


rule score_units:
    """The units against the letters of the forced alignment, beside an MFCC k-means of the same k."""
    input:
        units=per_recording("results/{lang}/units/{rec}.json"),
        aligned=per_text_recording("results/{lang}/aligned/{rec}.json"),
        wavs=per_recording("results/{lang}/audio/{rec}.wav"),
        segments=per_recording("results/{lang}/segments/{rec}.tsv"),
        kmeans="results/{lang}/units/kmeans.json",
        motifs="results/{lang}/bpe/motif_analysis.json",
    output:
        json="results/{lang}/report/units.json",
        html=report(
            "results/{lang}/report/units.html",
            caption="../report/units.rst",
            category="4. Units",
            subcategory="{lang}",
            labels={"language": "{lang}", "table": "unit quality"},
        ),
    log:
        "logs/{lang}/score_units.log",
    conda:
        "../../envs/units.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        options=step_options("units", "fit_hours", "passes", "batch_frames", "seed"),
    shell:
        "python -m tala.units.score {output.json:q} {output.html:q} --language {wildcards.lang:q}"
        " --units {input.units:q} --aligned {input.aligned:q} --wavs {input.wavs:q}"
        " --segments {input.segments:q} --kmeans {input.kmeans:q} --motifs {input.motifs:q}"
        " {params.options} > {log:q} 2>&1"


add_targets(
    "text language",
    "results/{lang}/report/units.json",
    "results/{lang}/report/units.html",
)
