# Fine-tuned recognizers (tala.finetune): an MMS language adapter trained on the language's own
# dataset (lm_head, then adapters + lm_head), and every fine-tuned model judged before -> after on
# the held-out clips and chapters.


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
    conda:
        "../../envs/finetune.yaml"
    threads: 2
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
            "seed",
            "device",
        ),
    shell:
        "OMP_NUM_THREADS={threads} python -m tala.finetune.mms_adapter --language {wildcards.lang:q}"
        " --lang {params.lang:q} --start-adapter {params.start_adapter:q} --model {params.model:q}"
        " --models-dir {params.models_dir:q} --train {input.train:q} --valid {input.valid:q}"
        " --out {output.model:q} --threads {threads} --no-progress {params.options} > {log:q} 2>&1"


rule evaluate_asr:
    """Greedy transcripts of the held-out clips and chapters by the starting model ("before") and
    the fine-tuned one ("after"): WER and CER with jiwer, the worst clips, a report table.
    """
    input:
        test="results/{lang}/dataset/test.jsonl",
        valid="results/{lang}/dataset/valid.jsonl",
        summary="results/{lang}/dataset/summary.json",
        wavs=per_text_recording("results/{lang}/audio/{rec}.wav"),
        texts=per_text_recording("results/{lang}/text/{rec}.json"),
        aligned=per_text_recording("results/{lang}/aligned/{rec}.json"),
        before=finetune_model_input,
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
        model="mms_adapter",
    conda:
        "../../envs/finetune.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=120,
    params:
        kind=lambda wildcards: MODEL_KINDS[wildcards.model],
        before=lambda wildcards: shlex.join(
            [
                "--system",
                "before",
                finetune_model(wildcards.lang),
                finetune_start_adapter(wildcards.lang),
            ]
        ),
        after_adapter=lambda wildcards: finetune_lang(wildcards.lang),
        models_dir=config["models_dir"],
        options=step_options("transcribe", "device", "dtype"),
    shell:
        "OMP_NUM_THREADS={threads} python -m tala.finetune.evaluate_asr {output.json:q} {output.tsv:q}"
        " --html {output.html:q} --language {wildcards.lang:q} --kind {params.kind}"
        " --split test {input.test:q} --split valid {input.valid:q}"
        " --chapters test {input.summary:q} --wavs {input.wavs:q} --texts {input.texts:q}"
        " --aligned {input.aligned:q} {params.before}"
        " --system after {input.after:q} {params.after_adapter:q}"
        " --models-dir {params.models_dir:q} {params.options} > {log:q} 2>&1"


add_targets(
    "text language",
    "results/{lang}/models/mms_adapter",
    "results/{lang}/eval/mms_adapter.json",
    "results/{lang}/eval/mms_adapter.tsv",
    "results/{lang}/eval/mms_adapter.html",
)
