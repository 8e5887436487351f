rule download_models:
    """Run on a machine with internet (a cluster's login node) before the compute jobs:
    `snakemake --cores 1 download_models`."""
    input:
        lambda wildcards: [
            f"{config['models_dir']}/{name}/.complete" for name in hub_models()
        ],
    localrule: True


rule download_model:
    output:
        marker=f"{config['models_dir']}/{{model_dir}}/.complete",
    log:
        "logs/download_model/{model_dir}.log",
    localrule: True
    conda:
        "../../envs/asr.yaml"
    params:
        model=lambda wildcards: hub_models()[wildcards.model_dir][0],
        adapters=lambda wildcards: sorted(hub_models()[wildcards.model_dir][1]),
        models_dir=lambda wildcards, output: Path(output.marker).parent.parent,
    shell:
        "python -m tala.asr.download_models --model {params.model:q} --adapters {params.adapters:q}"
        " --models-dir {params.models_dir:q} > {log:q} 2>&1"


rule transcribe_audio:
    input:
        wav="results/{lang}/audio/{rec}.wav",
        model=asr_model_input,
    output:
        json="results/{lang}/asr/{rec}.json",
        emissions="results/{lang}/asr/{rec}.emissions.npy",
    log:
        "logs/{lang}/transcribe_audio/{rec}.log",
    benchmark:
        "benchmarks/{lang}/transcribe_audio/{rec}.tsv"
    conda:
        "../../envs/asr.yaml"
    threads: config["job_threads"]
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        model=lambda wildcards: asr_model(wildcards.lang),
        adapter=asr_adapter,
        models_dir=config["models_dir"],
        options=step_options(
            "transcribe", "device", "dtype", "chunk_s", "context_s", "batch_size"
        ),
    shell:
        "OMP_NUM_THREADS={threads} python -m tala.asr.transcribe {input.wav:q}"
        " {output.json:q} {output.emissions:q}"
        " --model {params.model:q} --adapter {params.adapter:q} --models-dir {params.models_dir:q}"
        " {params.options} > {log:q} 2>&1"


add_targets(
    "recording",
    "results/{lang}/asr/{rec}.json",
    "results/{lang}/asr/{rec}.emissions.npy",
)
