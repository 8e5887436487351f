# The unit vocoder (tala.vocoder): F0 on the units' frame grid, GeneratorV2 trained from the units
# and pitch of the language's speech segments to their audio (the dataset's validation recordings
# for the best checkpoint, its test recordings held out), and the seed's vocoder test: the held-out
# segments resynthesized and judged by MCD, F0, and whether the workflow's recognizer still
# understands them, beside the untrained generator and two Griffin-Lim references.


rule extract_pitch:
    input:
        wav="results/{lang}/audio/{rec}.wav",
        units="results/{lang}/units/{rec}.json",
    output:
        npy="results/{lang}/pitch/{rec}.npy",
    log:
        "logs/{lang}/extract_pitch/{rec}.log",
    conda:
        "../../envs/vocoder.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        options=step_options("vocoder", "f0_min", "f0_max"),
    shell:
        "python -m tala.vocoder.pitch {input.wav:q} {input.units:q} {output.npy:q}"
        " {params.options} > {log:q} 2>&1"


rule train_vocoder:
    """Checkpoints in results/{lang}/vocoder.checkpoints/ (outside the outputs): a rerun after a
    kill continues from the newest one."""
    input:
        units=per_recording("results/{lang}/units/{rec}.json"),
        pitch=per_recording("results/{lang}/pitch/{rec}.npy"),
        wavs=per_recording("results/{lang}/audio/{rec}.wav"),
        kmeans="results/{lang}/units/kmeans.json",
        valid="results/{lang}/dataset/valid.jsonl",
        test="results/{lang}/dataset/test.jsonl",
        init=vocoder_init_input,
    output:
        generator="results/{lang}/vocoder/generator.safetensors",
        config="results/{lang}/vocoder/config.json",
        log_json="results/{lang}/vocoder/training_log.json",
        samples=directory("results/{lang}/vocoder/samples"),
    log:
        "logs/{lang}/train_vocoder.log",
    benchmark:
        "benchmarks/{lang}/train_vocoder.tsv"
    priority: PRIORITY_VOCODER
    conda:
        "../../envs/vocoder.yaml"
    threads: lambda wildcards: settings(config, wildcards.lang, "vocoder")["threads"]
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=1440,
    params:
        out_dir=subpath(output.config, parent=True),
        init=lambda wildcards, input: (
            shlex.join(["--init-from", str(Path(input.init[0]).parent)])
            if input.init
            else ""
        ),
        options=step_options(
            "vocoder",
            "epochs",
            "batch_size",
            "lr",
            "samples_per_epoch",
            "patience",
            "min_delta",
            "save_every",
            "mel_only_epochs",
            "segment_s",
            "channels",
            "embed_dim",
            "resblock_kernels",
            "harmonic_head",
            "pitch_shift",
            "pitch_bins",
            "f0_min",
            "f0_max",
            "seed",
            "device",
        ),
    shell:
        "OMP_NUM_THREADS={threads} python -m tala.vocoder.train {params.out_dir:q}"
        " --units {input.units:q} --pitch {input.pitch:q} --wavs {input.wavs:q}"
        " --kmeans {input.kmeans:q} --valid {input.valid:q} --test {input.test:q}"
        " {params.init} {params.options} > {log:q} 2>&1"


rule test_vocoder:
    input:
        generator="results/{lang}/vocoder/generator.safetensors",
        config="results/{lang}/vocoder/config.json",
        log_json="results/{lang}/vocoder/training_log.json",
        units=per_recording("results/{lang}/units/{rec}.json"),
        pitch=per_recording("results/{lang}/pitch/{rec}.npy"),
        wavs=per_recording("results/{lang}/audio/{rec}.wav"),
        test="results/{lang}/dataset/test.jsonl",
        model=asr_model_input,
    output:
        metrics="results/{lang}/vocoder/test/metrics.json",
        pairs=directory("results/{lang}/vocoder/test/pairs"),
        html=report(
            "results/{lang}/report/vocoder.html",
            caption="../report/vocoder.rst",
            category="6. Vocoder",
            subcategory="{lang}",
            labels={"language": "{lang}", "page": "resynthesis test"},
        ),
    log:
        "logs/{lang}/test_vocoder.log",
    conda:
        "../../envs/vocoder.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        vocoder=subpath(input.config, parent=True),
        out_dir=subpath(output.metrics, parent=True),
        model=lambda wildcards: asr_model(wildcards.lang),
        adapter=asr_adapter,
        models_dir=config["models_dir"],
        clips=setting("vocoder", "test_clips"),
        device=setting("vocoder", "device"),
    shell:
        "OMP_NUM_THREADS={threads} python -m tala.vocoder.evaluate {params.vocoder:q} {params.out_dir:q}"
        " --units {input.units:q} --pitch {input.pitch:q} --wavs {input.wavs:q} --test {input.test:q}"
        " --model {params.model:q} --lang {params.adapter:q} --models-dir {params.models_dir:q}"
        " --max-clips {params.clips} --device {params.device} --report {output.html:q} > {log:q} 2>&1"


add_targets(
    "text language",
    "results/{lang}/vocoder/generator.safetensors",
    "results/{lang}/vocoder/test/metrics.json",
    "results/{lang}/report/vocoder.html",
)
