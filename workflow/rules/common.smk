import json
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


_STEP_OPTIONS = {}


def _step_options(stage, keys, lang):
    if (stage, keys, lang) in _STEP_OPTIONS:
        return _STEP_OPTIONS[stage, keys, lang]
    args = []
    for key in keys:
        value = settings(config, lang, stage)[key]
        name = key.replace("_", "-")
        if value is None:  # the step's own default
            continue
        if isinstance(value, bool):
            args.append(f"--{name}" if value else f"--no-{name}")
        else:
            args += [f"--{name}", str(value)]
    _STEP_OPTIONS[stage, keys, lang] = shlex.join(args)
    return _STEP_OPTIONS[stage, keys, lang]


def step_options(stage, *keys):
    """A params function: the job language's ``stage`` settings ``keys`` as the step's options
    (``--chunk-s 30.0``; booleans as ``--flag`` / ``--no-flag``), shell-quoted. One function per
    job rather than one per setting, since at 1,189 chapters every per-job function costs DAG
    time."""
    return lambda wildcards: _step_options(stage, keys, wildcards.lang)


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


def with_text(lang):
    """The language's recordings that have their official text (DOCX); the others are
    transcribed but left out of alignment and the dataset (and listed in its summary).
    """
    return [rec for rec, r in RECORDINGS[lang].items() if r.text.is_file()]


def without_text(lang):
    return [rec for rec, r in RECORDINGS[lang].items() if not r.text.is_file()]


def warn_missing_texts():
    for lang in LANGUAGES:
        for rec in without_text(lang):
            print(
                f"warning: {RECORDINGS[lang][rec].text}: no official text for recording"
                f" '{rec}': it is transcribed but not aligned nor in the dataset",
                file=sys.stderr,
            )


def official_text(wildcards):
    recording = RECORDINGS[wildcards.lang].get(wildcards.rec)
    if recording is None or not recording.text.is_file():
        raise WorkflowError(
            f"no official text for recording '{wildcards.rec}' of language '{wildcards.lang}'"
        )
    return str(recording.text)


def per_text_recording(pattern):
    """An input function expanding ``pattern`` over the job language's recordings with a text."""
    return lambda wildcards: expand(
        pattern, lang=wildcards.lang, rec=with_text(wildcards.lang)
    )


def text_options(wildcards):
    """read_text's flags from the text settings (already shell-quoted)."""
    cfg = settings(config, wildcards.lang, "text")
    args = []
    for style in cfg["skip_styles"]:
        args += ["--skip-style", style]
    for pattern in cfg["skip_patterns"]:
        args += ["--skip-pattern", pattern]
    if cfg["char_map"]:
        args += ["--char-map", json.dumps(cfg["char_map"], ensure_ascii=False)]
    if cfg["okina"]:
        args += ["--okina", cfg["okina"]]
    args += ["--macrons", cfg["macrons"]]
    if cfg["keep_case"]:
        args.append("--keep-case")
    return shlex.join(args)


def truth_dir(lang):
    return config["languages"][lang].get("truth_dir")


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
        texted = with_text(lang)
        if not texted:
            continue
        targets += expand("results/{lang}/aligned/{rec}.json", lang=lang, rec=texted)
        targets += expand(
            "results/{lang}/timing/{rec}.{ext}",
            lang=lang,
            rec=texted,
            ext=["csv", "vtt", "labels.txt"],
        )
        targets += expand(
            "results/{lang}/dataset/{name}",
            lang=lang,
            name=[
                "train.jsonl",
                "valid.jsonl",
                "test.jsonl",
                "README.md",
                "summary.json",
            ],
        )
        targets += expand(
            "results/{lang}/report/{name}",
            lang=lang,
            name=["alignment.html", "alignment.tsv", "proofing.tsv", "listen.html"],
        )
        if truth_dir(lang):
            targets.append(f"results/{lang}/report/boundary_errors.svg")
    return targets
