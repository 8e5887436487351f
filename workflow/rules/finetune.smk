# Fine-tuned recognizers (tala.finetune), those of finetune.models per language: an MMS language
# adapter trained on the language's own dataset (lm_head, then adapters + lm_head), the speech-LLM
# (Whisper encoder, projector, LoRA on a causal LM), Moonshine with LoRA, and every fine-tuned model
# judged before -> after on the held-out clips (and chapters, for the CTC model).


rule finetune_mms_adapter:
    input:
        train="results/{lang}/dataset/train.jsonl",
        valid="results/{lang}/dataset/valid.jsonl",
        model=finetune_model_input,
    output:
        model=directory("results/{lang}/models/mms_adapter"),
    log:
        "logs/{lang}/finetune_mms_adapter.log",
    benchmark:
        "benchmarks/{lang}/finetune_mms_adapter.tsv"
    priority: PRIORITY_FINETUNE
    conda:
        "../../envs/finetune.yaml"
    threads: config["job_threads"]
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=720,
    params:
        model=lambda wildcards: finetune_model(wildcards.lang),
        models_dir=config["models_dir"],
        lang=lambda wildcards: finetune_lang(wildcards.lang),
        start_adapter=lambda wildcards: finetune_start_adapter(wildcards.lang),
        options=step_options(
            "finetune",
            "lm_head_epochs",
            "epochs",
            "lm_head_lr",
            "lr",
            "warmup_epochs",
            "weight_decay",
            "batch_seconds",
            "max_batch_size",
            "max_duration",
            "eval_every",
            "patience",
            "min_delta",
            "checkpoint_every",
            "gradient_checkpointing",
            "seed",
            "device",
        ),
    shell:
        "OMP_NUM_THREADS={threads} python -m tala.finetune.mms_adapter --language {wildcards.lang:q}"
        " --lang {params.lang:q} --start-adapter {params.start_adapter:q} --model {params.model:q}"
        " --models-dir {params.models_dir:q} --train {input.train:q} --valid {input.valid:q}"
        " --out {output.model:q} --threads {threads} --no-progress {params.options} > {log:q} 2>&1"


rule finetune_speechllm:
    """Checkpoints in results/{lang}/models/speechllm.checkpoints/ (outside the output): a rerun
    after a kill continues from the newest one."""
    input:
        train="results/{lang}/dataset/train.jsonl",
        valid="results/{lang}/dataset/valid.jsonl",
        start=speechllm_start_input,
    output:
        model=directory("results/{lang}/models/speechllm"),
    log:
        "logs/{lang}/finetune_speechllm.log",
    benchmark:
        "benchmarks/{lang}/finetune_speechllm.tsv"
    priority: PRIORITY_FINETUNE
    conda:
        "../../envs/finetune.yaml"
    threads: config["job_threads"]
    resources:
        gpu=1,
        mem_mb=24000,
        runtime=720,
    params:
        start=speechllm_start_options,
        models_dir=config["models_dir"],
        options=step_options(
            "speechllm",
            "instruction",
            "mode",
            "max_steps",
            "lr",
            "warmup_steps",
            "batch_seconds",
            "max_batch_size",
            "lora_r",
            "lora_alpha",
            "lora_dropout",
            "lora_targets",
            "stack",
            "eval_every",
            "patience",
            "best_metric",
            "evaluate_start",
            "reread",
            "num_beams",
            "part_seconds",
            "max_new_tokens",
            "checkpoint_every",
            "guided_attention",
            "cache_frames",
            "gradient_checkpointing",
            "seed",
            "device",
        ),
    shell:
        "OMP_NUM_THREADS={threads} python -m tala.finetune.speechllm {params.start}"
        " --models-dir {params.models_dir:q} --train {input.train:q} --valid {input.valid:q}"
        " --out {output.model:q} --threads {threads} --no-progress {params.options} > {log:q} 2>&1"


rule finetune_moonshine_lora:
    """Seed 004's run: LoRA on Moonshine, real_metrics.json and the artifact test (the saved
    folder loaded back and run on the test clips: artifact_test.json) in the output. Checkpoints
    in results/{lang}/models/moonshine.checkpoints/: a rerun after a kill resumes there.
    """
    input:
        train="results/{lang}/dataset/train.jsonl",
        valid="results/{lang}/dataset/valid.jsonl",
        test="results/{lang}/dataset/test.jsonl",
        start=moonshine_start_input,
    output:
        model=directory("results/{lang}/models/moonshine"),
    log:
        "logs/{lang}/finetune_moonshine_lora.log",
    benchmark:
        "benchmarks/{lang}/finetune_moonshine_lora.tsv"
    priority: PRIORITY_FINETUNE
    conda:
        "../../envs/finetune.yaml"
    threads: config["job_threads"]
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    params:
        start=lambda wildcards: settings(config, wildcards.lang, "moonshine")["start"],
        models_dir=config["models_dir"],
        options=step_options(
            "moonshine",
            "mode",
            "max_steps",
            "lr",
            "warmup_steps",
            "batch_seconds",
            "max_batch_size",
            "accumulate",
            "lora_r",
            "lora_alpha",
            "lora_dropout",
            "lora_targets",
            "lora_parts",
            "max_clip_s",
            "label_smoothing",
            "start_kl",
            "guided_attention",
            "eval_every",
            "patience",
            "best_metric",
            "evaluate_start",
            "reread",
            "num_beams",
            "part_seconds",
            "checkpoint_every",
            "gradient_checkpointing",
            "seed",
            "device",
        ),
    shell:
        "OMP_NUM_THREADS={threads} python -m tala.finetune.moonshine --start {params.start:q}"
        " --models-dir {params.models_dir:q} --train {input.train:q} --valid {input.valid:q}"
        " --test {input.test:q} --out {output.model:q} --threads {threads} --no-progress"
        " {params.options} > {log:q} 2>&1"


rule evaluate_asr:
    """Transcripts of the held-out clips and chapters by the starting model ("before") and
    the fine-tuned one ("after"): WER and CER with jiwer, the worst clips, a report table. The
    speech-LLM and Moonshine read a part again in halves when they end it too early for the
    language's pace (the train split's letters a second) or loop.
    """
    input:
        test="results/{lang}/dataset/test.jsonl",
        valid="results/{lang}/dataset/valid.jsonl",
        train="results/{lang}/dataset/train.jsonl",
        summary="results/{lang}/dataset/summary.json",
        wavs=chapter_files("results/{lang}/audio/{rec}.wav"),
        texts=chapter_files("results/{lang}/text/{rec}.json"),
        aligned=chapter_files("results/{lang}/aligned/{rec}.json"),
        before=evaluation_before_input,
        after="results/{lang}/models/{model}",
    output:
        json="results/{lang}/eval/{model}.json",
        tsv="results/{lang}/eval/{model}.tsv",
        html=report(
            "results/{lang}/eval/{model}.html",
            caption="../report/evaluate_asr.rst",
            category="5. Fine-tuned models",
            subcategory="{lang}",
            labels={"language": "{lang}", "model": "{model}"},
        ),
    log:
        "logs/{lang}/evaluate_asr/{model}.log",
    wildcard_constraints:
        model="mms_adapter|speechllm|moonshine",
    conda:
        "../../envs/finetune.yaml"
    threads: config["job_threads"]
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=120,
    params:
        kind=lambda wildcards: MODEL_KINDS[wildcards.model],
        before=evaluation_before,
        after_adapter=evaluation_after_adapter,
        chapters=evaluation_chapters,
        pace=evaluation_pace,
        models_dir=config["models_dir"],
        options=step_options("transcribe", "device", "dtype"),
        decoding=evaluation_decoding,
    shell:
        "OMP_NUM_THREADS={threads} python -m tala.finetune.evaluate_asr {output.json:q} {output.tsv:q}"
        " --html {output.html:q} --language {wildcards.lang:q} --kind {params.kind}"
        " --split test {input.test:q} --split valid {input.valid:q} {params.chapters} {params.pace} {params.before}"
        " --system after {input.after:q} {params.after_adapter:q}"
        " --models-dir {params.models_dir:q} {params.options} {params.decoding} --no-progress > {log:q} 2>&1"


for _model in MODEL_KINDS:
    add_targets(
        "text language",
        *expand("results/{{lang}}/models/{model}", model=_model),
        *expand(
            "results/{{lang}}/eval/{model}.{ext}",
            model=_model,
            ext=["json", "tsv", "html"],
        ),
        when=lambda lang, model=_model: model in trained_models(lang),
    )
