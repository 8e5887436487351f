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

from tala.config import ConfigError, load_workflow_config, settings

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
            "results/{lang}/report/{name}",
            lang=lang,
            name=["recordings.html", "recordings.tsv", "span_durations.svg"],
        )
    return targets
