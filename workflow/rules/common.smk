import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# Jobs run `python -m tala.<step>`: the package is put on PYTHONPATH for every job (local, Slurm,
# --sdm conda) so that nobody has to install it. Which `python` runs is the job environment's:
# the activated venv, or the rule's conda env under --sdm conda.
SCRIPTS_DIR = str(Path(workflow.basedir).parent / "scripts")
sys.path.insert(0, SCRIPTS_DIR)


# The prefix is formatted like a shell command: literal braces are doubled.
shell.prefix(
    "export PYTHONPATH="
    + shlex.quote(SCRIPTS_DIR).replace("{", "{{").replace("}", "}}")
    + "${{PYTHONPATH:+:$PYTHONPATH}}; "
)

from tala.config import ConfigError, hub_folder_name, load_workflow_config, settings

try:
    _validated, RECORDINGS = load_workflow_config(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None
config.update(_validated)
LANGUAGES = list(RECORDINGS)


wildcard_constraints:
    lang=r"[A-Za-z][A-Za-z0-9_-]*",
    rec=r"[^/]+",


def raw_audio(wildcards):
    """The raw recording behind results/{lang}/audio/{rec}.wav."""
    try:
        return str(RECORDINGS[wildcards.lang][wildcards.rec].audio)
    except KeyError:
        raise WorkflowError(
            f"no recording '{wildcards.rec}' for language '{wildcards.lang}' in the config"
        ) from None


def setting(stage, key):
    """A params function: the stage setting for the job's language (language overrides first)."""
    return lambda wildcards: settings(config, wildcards.lang, stage)[key]


def per_recording(pattern):
    """An input function expanding ``pattern`` over the recordings of the job's language."""
    return lambda wildcards: expand(
        pattern, lang=wildcards.lang, rec=list(RECORDINGS[wildcards.lang])
    )


def asr_model(lang):
    return settings(config, lang, "transcribe")["model"]


def asr_adapter(wildcards):
    return (
        settings(config, wildcards.lang, "transcribe")["adapter"]
        or config["languages"][wildcards.lang]["mms_lang"]
    )


def asr_model_input(wildcards):
    """A local model folder is an input as it is; a hub id first goes through download_models,
    so that compute nodes without internet find it in models_dir."""
    model = asr_model(wildcards.lang)
    if Path(model).is_dir():
        return str(Path(model) / "config.json")
    return f"{config['models_dir']}/{hub_folder_name(model)}/.complete"


def hub_models():
    """{folder name: (hub id, adapters)} for every hub model the selected languages use."""
    models = {}
    for lang in LANGUAGES:
        model = asr_model(lang)
        if not Path(model).is_dir():
            adapter = (
                settings(config, lang, "transcribe")["adapter"]
                or config["languages"][lang]["mms_lang"]
            )
            models.setdefault(hub_folder_name(model), (model, set()))[1].add(adapter)
    return models


def all_targets():
    targets = []
    for lang, recordings in RECORDINGS.items():
        targets += expand(
            "results/{lang}/audio/{rec}.wav", lang=lang, rec=list(recordings)
        )
        targets += expand(
            "results/{lang}/segments/{rec}.tsv", lang=lang, rec=list(recordings)
        )
        targets += expand(
            "results/{lang}/asr/{rec}.{ext}",
            lang=lang,
            rec=list(recordings),
            ext=["json", "emissions.npy"],
        )
        targets += expand(
            "results/{lang}/report/{name}",
            lang=lang,
            name=["recordings.html", "recordings.tsv", "span_durations.svg"],
        )
    return targets
