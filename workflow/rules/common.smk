import atexit
import gc
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# Garbage collection at the scale of a whole Bible (1,189 chapters per language: ~7,000 jobs
# and millions of objects in Snakemake's DAG, all alive until the process ends). Python's cyclic
# collector, tuned for small heaps, traversed the whole growing DAG at each of its ~15 full
# collections and once more at exit: 25-30% of `snakemake -n` (tests/bench/bench_dag.py).
# Young collections now come every 50,000 allocations instead of 700 (the few cycles a job
# leaves are still collected young), the modules loaded so far are never traversed again
# (gc.freeze), and at exit nothing is traversed: the atexit handlers run before the last
# collection, whose objects the end of the process frees anyway (logging closes its files in
# its own atexit handler).
gc.freeze()
gc.set_threshold(50_000, 20, 10)
atexit.register(gc.freeze)

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
from tala.report.problems import inspection_problems

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
        elif isinstance(value, list):
            args += [f"--{name}", *map(str, value)]
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


# The order of ready jobs when cores are short (the `priority` directive, Snakemake default 0). A
# training job reads its whole language, so each per-recording step that feeds one goes first (else
# one 6-s step of a language waits behind minutes of another's training, and that language's
# training starts late and runs alone at the end); then the trainings, longest first so that the
# short ones fill the cores at the end: the vocoder, trained from scratch, before the fine-tunings.
PRIORITY_VOCODER = -1
PRIORITY_FINETUNE = -2


def per_recording(pattern):
    """An input function expanding ``pattern`` over the recordings of the job's language."""
    return lambda wildcards: expand(
        pattern, lang=wildcards.lang, rec=list(RECORDINGS[wildcards.lang])
    )


def asr_model(lang):
    return settings(config, lang, "transcribe")["model"]


def asr_adapter(wildcards):
    return _setting_or_mms_lang(wildcards.lang, "transcribe", "adapter")


def asr_model_input(wildcards):
    """A local model folder is an input as it is; a hub id first goes through download_models,
    so that compute nodes without internet find it in models_dir."""
    return _model_input(asr_model(wildcards.lang))


def hub_models():
    """{folder name: (hub id, adapters)} for every hub model the selected languages use: the
    transcription model with each language's adapter, the units' feature model, and the model
    fine-tuning starts from with its start adapter."""
    models = {}
    for lang in LANGUAGES:
        model = asr_model(lang)
        if not Path(model).is_dir():
            adapter = _setting_or_mms_lang(lang, "transcribe", "adapter")
            models.setdefault(hub_folder_name(model), (model, set()))[1].add(adapter)
        model = units_model(lang)
        if not Path(model).is_dir():
            models.setdefault(hub_folder_name(model), (model, set()))
        model = finetune_model(lang)
        if "mms_adapter" in trained_models(lang) and not Path(model).is_dir():
            models.setdefault(hub_folder_name(model), (model, set()))[1].add(
                finetune_start_adapter(lang)
            )
        for model in speechllm_bases(lang) + moonshine_bases(lang):
            if not Path(model).is_dir():
                models.setdefault(hub_folder_name(model), (model, set()))
    return models


def finetune_model(lang):
    """The model fine-tuning starts from: finetune.model, else transcribe.model."""
    return settings(config, lang, "finetune")["model"] or asr_model(lang)


def finetune_lang(lang):
    """The adapter fine-tuning trains: finetune.lang, else the language's mms_lang."""
    return _setting_or_mms_lang(lang, "finetune", "lang")


def finetune_start_adapter(lang):
    """The adapter fine-tuning starts from: finetune.start_adapter, else the language's mms_lang."""
    return _setting_or_mms_lang(lang, "finetune", "start_adapter")


def _setting_or_mms_lang(lang, stage, key):
    return settings(config, lang, stage)[key] or config["languages"][lang]["mms_lang"]


def finetune_model_input(wildcards):
    """The starting model: its config.json, or download_models' marker for a hub id."""
    return _model_input(finetune_model(wildcards.lang))


# The recognizer family of each fine-tuned model (evaluate_asr --kind).
MODEL_KINDS = {"mms_adapter": "ctc", "speechllm": "speechllm", "moonshine": "moonshine"}


def trained_models(lang):
    """The fine-tuned recognizers a language trains (finetune.models)."""
    return settings(config, lang, "finetune")["models"]


def speechllm_bases(lang):
    """The hub ids or folders a language's speech-LLM starts from: none with speechllm.start (a
    saved recognizer names its own), else its encoder and decoder."""
    if "speechllm" not in trained_models(lang):
        return []
    cfg = settings(config, lang, "speechllm")
    return [] if cfg["start"] else [cfg["encoder"], cfg["decoder"]]


def moonshine_bases(lang):
    """The Moonshine a language fine-tunes (moonshine.start), when it trains one."""
    if "moonshine" not in trained_models(lang):
        return []
    return [settings(config, lang, "moonshine")["start"]]


def moonshine_start_input(wildcards):
    """A saved LoRA recognizer's moonshine.json, a whole model's config.json, or download_models'
    marker for a hub id."""
    start = settings(config, wildcards.lang, "moonshine")["start"]
    if (Path(start) / "moonshine.json").is_file():
        return str(Path(start) / "moonshine.json")
    return _model_input(start)


def _model_input(model):
    """A local model folder's config.json, or download_models' marker for a hub id."""
    if Path(model).is_dir():
        return str(Path(model) / "config.json")
    return f"{config['models_dir']}/{hub_folder_name(model)}/.complete"


def speechllm_start_input(wildcards):
    """The saved recognizer's speechllm.json, or the encoder's and decoder's inputs."""
    start = settings(config, wildcards.lang, "speechllm")["start"]
    if start:
        return [str(Path(start) / "speechllm.json")]
    return [_model_input(model) for model in speechllm_bases(wildcards.lang)]


def speechllm_start_options(wildcards):
    """--start FOLDER, or --encoder E --decoder D (shell-quoted)."""
    cfg = settings(config, wildcards.lang, "speechllm")
    if cfg["start"]:
        return shlex.join(["--start", cfg["start"]])
    return shlex.join(["--encoder", cfg["encoder"], "--decoder", cfg["decoder"]])


def evaluation_before(wildcards):
    """evaluate_asr's "before" system (shell-quoted): the model fine-tuning started from. A
    speech-LLM started from two bases has no "before" (its projector is new: it hears nothing);
    Moonshine always starts from a whole model.
    """
    if wildcards.model == "mms_adapter":
        lang = wildcards.lang
        return shlex.join(
            ["--system", "before", finetune_model(lang), finetune_start_adapter(lang)]
        )
    start = settings(config, wildcards.lang, wildcards.model)["start"]
    return shlex.join(["--system", "before", start, "-"]) if start else ""


def evaluation_before_input(wildcards):
    if wildcards.model == "mms_adapter":
        return finetune_model_input(wildcards)
    if wildcards.model == "moonshine":
        return moonshine_start_input(wildcards)
    return speechllm_start_input(wildcards)


def evaluation_after_adapter(wildcards):
    """The fine-tuned system's adapter: the trained MMS language; speech-LLM and Moonshine folders carry their own."""
    return finetune_lang(wildcards.lang) if wildcards.model == "mms_adapter" else "-"


def chapter_files(pattern):
    """An input function: ``pattern`` over the language's text recordings for an evaluation that
    scores whole chapters (a CTC model's), nothing for one that scores clips only."""
    files = per_text_recording(pattern)
    return lambda wildcards: (
        files(wildcards) if MODEL_KINDS[wildcards.model] == "ctc" else []
    )


def evaluation_pace(wildcards, input):
    """Recognizers with a decoder that can end a transcript early (speech-LLM, Moonshine) are
    checked against the language's pace, the train split's letters a second; CTC reads once.
    """
    if MODEL_KINDS[wildcards.model] == "ctc":
        return ""
    return shlex.join(["--pace", input.train])


def evaluation_decoding(wildcards):
    """The speech-LLM's and Moonshine's ``num_beams`` and ``part_seconds`` (their config sections
    are named as the models; their validation reads with them too), for before and after alike;
    CTC reads whole clips greedily.
    """
    if MODEL_KINDS[wildcards.model] == "ctc":
        return ""
    return _step_options(wildcards.model, ("num_beams", "part_seconds"), wildcards.lang)


def evaluation_chapters(wildcards, input):
    """Whole chapters too, for recognizers that give word times (CTC); clips only otherwise."""
    if MODEL_KINDS[wildcards.model] != "ctc":
        return ""
    return shlex.join(
        [
            "--chapters",
            "test",
            input.summary,
            "--wavs",
            *input.wavs,
            "--texts",
            *input.texts,
            "--aligned",
            *input.aligned,
        ]
    )


def units_model(lang):
    return settings(config, lang, "units")["model"]


def units_model_input(wildcards):
    """The units' feature model: its config.json, or download_models' marker for a hub id."""
    return _model_input(units_model(wildcards.lang))


def shared_centroids(wildcards):
    """units.kmeans: existing centroids to use instead of fitting (an input when set)."""
    path = settings(config, wildcards.lang, "units")["kmeans"]
    return [path] if path else []


def vocoder_init_input(wildcards):
    """vocoder.init_from: the generator training starts from (an input when set)."""
    folder = settings(config, wildcards.lang, "vocoder")["init_from"]
    return (
        [str(Path(folder) / name) for name in ("generator.safetensors", "config.json")]
        if folder
        else []
    )


# --------------------------------------------------------------------------- inspected chapters
# checkpoint inspect_inputs (inspect.smk) probes every raw recording and DOCX of a language up
# front; the rest of the language's DAG is built from what it found, so that one damaged file
# never stops its language (see tala.inspect.inputs).

_INSPECTED = {}


def regroup_from_scratch():
    """Work around Snakemake 9.27 merging group jobs again at every DAG update after a checkpoint.

    DAG.update_groups() takes each connected component's GroupJob from a cache that still holds
    the object it merged `group-components` of them into last time, and merges those again: with
    the slurm-gpu profile's `group-components: 40`, a rerun (whose DAG is updated twice at start
    because the inspections exist) put 1,600 chapters, then a whole language, into one Slurm job.
    Each update now forms the groups from a fresh cache, as a first update does.
    """
    from snakemake.dag import DAG
    from snakemake.jobs import GroupJobFactory

    if getattr(DAG.update_groups, "_tala_fresh", False):
        return
    update_groups = DAG.update_groups

    def update_groups_afresh(self):
        self.group_job_factory = GroupJobFactory()
        return update_groups(self)

    update_groups_afresh._tala_fresh = True
    DAG.update_groups = update_groups_afresh


regroup_from_scratch()


def inspected(lang):
    """{recording: inspection record} of a language (after its checkpoint has run)."""
    path = checkpoints.inspect_inputs.get(lang=lang).output.json
    stamp = os.stat(path).st_mtime_ns
    if _INSPECTED.get(lang, (None,))[0] != stamp:
        with open(path, encoding="utf-8") as handle:
            records = json.load(handle)["recordings"]
        _INSPECTED[lang] = (stamp, {r["recording"]: r for r in records})
    return _INSPECTED[lang][1]


def has_texts(lang):
    return bool(config["languages"][lang].get("text_dir"))


def audio_recordings(lang):
    """The recordings whose audio can be read: converted, segmented and transcribed."""
    return [rec for rec, r in inspected(lang).items() if r["status"] != "excluded"]


def text_recordings(lang):
    """The recordings with a usable official text as well: read, aligned, cut into clips."""
    return (
        [rec for rec, r in inspected(lang).items() if r["status"] == "ok"]
        if has_texts(lang)
        else []
    )


def per_recording(pattern):
    """An input function expanding ``pattern`` over the job language's readable recordings."""
    return lambda wildcards: expand(
        pattern, lang=wildcards.lang, rec=audio_recordings(wildcards.lang)
    )


def per_text_recording(pattern):
    """An input function expanding ``pattern`` over the job language's recordings with a text."""
    return lambda wildcards: expand(
        pattern, lang=wildcards.lang, rec=text_recordings(wildcards.lang)
    )


def official_text(wildcards):
    recording = RECORDINGS[wildcards.lang].get(wildcards.rec)
    if recording is None or recording.text is None:
        raise WorkflowError(
            f"no official text for recording '{wildcards.rec}' of language '{wildcards.lang}'"
        )
    return str(recording.text)


def inspection_options(wildcards):
    """inspect_inputs' recordings (id, audio, text) and text settings, shell-quoted."""
    args = []
    for rec, r in RECORDINGS[wildcards.lang].items():
        args += ["--recording", rec, str(r.audio), str(r.text or "-")]
    if not has_texts(wildcards.lang):
        args.append("--audio-only")
    cfg = settings(config, wildcards.lang, "text")
    for style in cfg["skip_styles"]:
        args += ["--skip-style", style]
    for pattern in cfg["skip_patterns"]:
        args += ["--skip-pattern", pattern]
    return shlex.join(args)


def existing_texts(wildcards):
    """The language's DOCX files that exist: inputs of the inspection (a new one reruns it)."""
    return [
        str(r.text)
        for r in RECORDINGS[wildcards.lang].values()
        if r.text is not None and r.text.is_file()
    ]


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


# --------------------------------------------------------------------------- default targets
# Each rules/<stage>.smk names what `rule all` builds from it with add_targets(), so that a new
# stage is one .smk file and one include.

_TARGETS = []
TARGET_SCOPES = {
    "recording": "per readable recording (the inspection did not exclude it)",
    "text recording": "per recording with a usable official text",
    "language": "per language",
    "audio language": "per language with at least one readable recording",
    "text language": "per language with at least one recording with a usable text",
    "truth language": "per text language with ground-truth verse times (truth_dir)",
}


def add_targets(scope, *patterns, when=None):
    """Declare default targets: ``patterns`` with {lang} (and {rec} for the recording scopes);
    ``when(lang)``: only for the languages it is true of (e.g. those that train a model).
    """
    if scope not in TARGET_SCOPES:
        raise WorkflowError(
            f"add_targets: unknown scope {scope!r} ({', '.join(TARGET_SCOPES)})"
        )
    _TARGETS.extend((scope, pattern, when) for pattern in patterns)


def language_targets(lang):
    """Everything the default target builds for one language, from what its inspection found."""
    audio, texted = audio_recordings(lang), text_recordings(lang)
    recordings = {"recording": audio, "text recording": texted}
    applies = {
        "language": True,
        "audio language": bool(audio),
        "text language": bool(texted),
        "truth language": bool(texted) and bool(truth_dir(lang)),
    }
    targets = []
    for scope, pattern, when in _TARGETS:
        if when is not None and not when(lang):
            continue
        if scope in recordings:
            targets += expand(pattern, lang=lang, rec=recordings[scope])
        elif applies[scope]:
            targets += expand(pattern, lang=lang)
    return targets


def all_targets():
    """The default target's inputs: one function per language, so that the inspections of all
    languages run at once (Snakemake evaluates input items one by one and waits on each item's
    checkpoint)."""
    return [lambda wildcards, lang=lang: language_targets(lang) for lang in LANGUAGES]


def report_problems(log=sys.stderr):
    """The run's last log lines: every chapter left out or rejected, per language, read from the
    problems tables (or, where the run stopped before them, from the inspections)."""
    lines = []
    for lang in LANGUAGES:
        problems_json = Path(f"results/{lang}/report/problems.json")
        inspection_json = Path(f"results/{lang}/inspection.json")
        current = problems_json.is_file() and (
            not inspection_json.is_file()
            or problems_json.stat().st_mtime >= inspection_json.stat().st_mtime
        )
        if current:
            with open(problems_json, encoding="utf-8") as handle:
                problems = json.load(handle)
        elif inspection_json.is_file():
            with open(inspection_json, encoding="utf-8") as handle:
                problems = inspection_problems(json.load(handle), inspection_json)
        else:
            continue
        left_out = [p for p in problems if p["severity"] != "warning"]
        warnings = len(problems) - len(left_out)
        for p in left_out:
            lines.append(
                f"  {lang}/{p['recording']}: {p['severity']}: {p['file']}: {p['reason']}"
            )
        if warnings:
            lines.append(
                f"  {lang}: {warnings} text warning(s): see results/{lang}/report/problems.html"
            )
    if lines:
        print(
            "tala: chapters left out or to check (results/<lang>/report/problems.html):",
            *lines,
            sep="\n",
            file=log,
        )


# --------------------------------------------------------------------------- Snakemake at scale
# A whole Bible is 1,189 chapters per language, ~9,500 jobs, and Snakemake 9.27 spends most of a
# dry run in a few places that grow faster than the DAG (tests/bench/bench_dag.py: 1,189
# chapters x 2 languages, 19,055 jobs: 28 s plain and 39 s with the slurm-gpu profile without
# these patches, 15 s and 14 s with them). The patches change how fast Snakemake gets there, not
# what it plans: the same jobs, files, reasons, resources, shell commands and groups
# (test_snakemake_patches_change_no_job compares the dry runs job by job, with and without the
# slurm-gpu profile; TALA_SNAKEMAKE_PATCHES=off turns them off). Written for Snakemake 9.27 and
# applied only to it: another version runs unpatched, only slower (re-measure with the bench,
# then update PATCHED_SNAKEMAKE or the patches).

PATCHED_SNAKEMAKE = "9.27"


def patch_snakemake(patch):
    """Apply one of the performance patches below: only to Snakemake PATCHED_SNAKEMAKE, and once
    per process (the Snakefile may be read more than once). TALA_SNAKEMAKE_PATCHES=off runs
    Snakemake as it is, to compare (tests/test_workflow.py compares the dry runs' jobs).
    """
    import snakemake

    applied = snakemake.__dict__.setdefault("_tala_patches", set())
    if (
        snakemake.__version__.startswith(f"{PATCHED_SNAKEMAKE}.")
        and os.environ.get("TALA_SNAKEMAKE_PATCHES", "on") != "off"
        and patch.__name__ not in applied
    ):
        patch()
        applied.add(patch.__name__)


def remember_function_params():
    """Snakemake inspects the signature of an input, params or resources function each time it
    calls one (inspect.signature, 2 to 3 times per call: threads and every resource of every job
    included): a tenth of a dry run. Each function's parameters are now inspected once (a
    method's once per function)."""
    import inspect
    import weakref
    from types import FunctionType, MethodType

    import snakemake.common
    import snakemake.rules

    inspect_params = snakemake.common.get_function_params
    functions, methods = weakref.WeakKeyDictionary(), weakref.WeakKeyDictionary()

    def get_function_params(func):
        if type(func) is FunctionType:
            known, key = functions, func
        elif type(func) is MethodType and type(func.__func__) is FunctionType:
            known, key = methods, func.__func__
        else:
            return inspect_params(func)
        if hasattr(key, "_overwrite_params"):
            return inspect_params(func)
        try:
            return known[key]
        except KeyError:
            known[key] = params = inspect.signature(func).parameters
            return params

    snakemake.common.get_function_params = get_function_params
    snakemake.rules.get_function_params = get_function_params


def format_shell_command_once():
    """Job.log_info formats the job's shell command three times (Job.shellcmd is a property),
    each time copying every global of the Snakefile: once now, for as long as the job is logged.
    """
    import threading

    from snakemake.jobs import Job

    format_command, log_info = Job.shellcmd.fget, Job.log_info
    logging = threading.local()

    def shellcmd(self):
        if getattr(logging, "job", None) is self:
            return logging.command
        return format_command(self)

    def log_info_with_command(self, *args, **kwargs):
        logging.command, logging.job = format_command(self), self
        try:
            return log_info(self, *args, **kwargs)
        finally:
            logging.job = logging.command = None

    Job.shellcmd = property(shellcmd, doc=Job.shellcmd.__doc__)
    Job.log_info = log_info_with_command


def job_info_only_when_shown():
    """Job.log_info builds each job's description (its inputs and outputs formatted, the reason,
    the resources, the shell command) for two log records, also when every log handler then
    drops them, as `--quiet rules` asks: a quarter of `snakemake -n -q rules` at a whole Bible.
    The description is now built only when some handler of Snakemake's logger (the default
    stream, a log file, a logger plugin, each with its own filter) would keep one of the two
    records; otherwise only the checkpoint notice is logged, as before."""
    import logging
    import logging.handlers

    import snakemake.logging
    from snakemake.jobs import Job
    from snakemake_interface_logger_plugins.common import LogEvent

    log_info = Job.log_info

    def handlers():
        manager = getattr(snakemake.logging, "logger_manager", None)
        listener = getattr(manager, "queue_listener", None)
        for handler in snakemake.logging.logger.handlers:
            if (
                isinstance(handler, logging.handlers.QueueHandler)
                and listener is not None
            ):
                yield from listener.handlers
            else:
                yield handler

    def shown(event):
        logger = snakemake.logging.logger
        if not logger.isEnabledFor(logging.INFO):
            return False
        record = logger.makeRecord(
            logger.name, logging.INFO, __file__, 0, "", None, None
        )
        record.event = event
        return logger.filter(record) and any(
            handler.level <= logging.INFO and handler.filter(record)
            for handler in handlers()
        )

    def log_info_when_shown(self, *args, **kwargs):
        if shown(LogEvent.JOB_INFO) or shown(LogEvent.SHELLCMD):
            return log_info(self, *args, **kwargs)
        if self.rule.is_checkpoint:
            snakemake.logging.logger.info(
                "DAG of jobs will be updated after completion."
            )
        if self.rule.is_handover:
            snakemake.logging.logger.info("Handing over execution to foreign system...")

    Job.log_info = log_info_when_shown


def producers_once_per_file():
    """DAG.file2jobs asks the output index which rules produce a file each time a job names it as
    input: every rule whose output shares the file's constant prefix and suffix ("results/",
    ".json") is matched by regular expression. A chapter's alignment is named by ten jobs (the
    per-language summaries, proofing, units, fine-tuning, the default target), so at a whole Bible
    a tenth of a dry run matched the same files again. The rules, and so the answer for a file,
    do not change once the Snakefile is read: each file's producers are now matched once.
    """
    from snakemake.output_index import OutputIndex

    match_producers = OutputIndex.match_producers

    def match_producers_once(self, targetfile):
        known = self.__dict__.setdefault("_tala_producers", {})
        key = str(targetfile)
        try:
            return set(known[key])
        except KeyError:
            rules = known[key] = frozenset(match_producers(self, targetfile))
            return set(rules)

    OutputIndex.match_producers = match_producers_once


def conda_env_without_params():
    """Job.conda_env_spec expands the job's params to hand them to Rule.expand_conda_env, also
    when the `conda:` file is a constant that the rule has already expanded once and only returns
    again, as for every step here. DAG.update_conda_envs asks every job at each DAG update, so a
    dry run expanded the params of all jobs for nothing (a twentieth of it). A rule's cached
    environment is now returned without them; a `conda:` function still gets them."""
    from snakemake.jobs import Job
    from snakemake.rules import _NOT_CACHED

    conda_env_spec = Job.conda_env_spec.fget

    def conda_env_spec_cached(self):
        if self._conda_env_spec is None:
            cached = self.rule._expanded_conda_env
            if cached is not _NOT_CACHED:
                self._conda_env_spec = cached
                return cached
        return conda_env_spec(self)

    Job.conda_env_spec = property(conda_env_spec_cached, doc=Job.conda_env_spec.__doc__)


def input_membership_by_hash():
    """DAG.update asks, for every job that consumes a file, whether the file's producer also
    names it as input (`file in job.input`, a cycle check), a scan of the producer's inputs:
    each chapter's quantize_units needs the language's k-means, whose fit_kmeans job names every
    chapter's WAV and segments, so a whole Bible compared 1,189 x 2,378 paths per language
    (quadratic in the chapters; a tenth of a dry run). A job's inputs, once expanded, are only
    replaced, never edited in place (Job.input's setter), so a long input list now answers `in`
    from a set of its files, built on first use and rebuilt if its length changes. The answer is
    the same: an input file's hash and equality are those of its path."""
    from snakemake.iocontainers import InputFiles
    from snakemake.jobs import Job

    class IndexedInputFiles(InputFiles):
        def __contains__(self, item):
            if len(self) < 64:
                return list.__contains__(self, item)
            index = self.__dict__.get("_tala_index")
            if index is None or index[0] != len(self):
                index = self._tala_index = (len(self), set(self))
            try:
                return item in index[1]
            except TypeError:  # an unhashable item
                return list.__contains__(self, item)

    job_init = Job.__init__

    def init_with_indexed_input(self, *args, **kwargs):
        job_init(self, *args, **kwargs)
        if type(self._input) is InputFiles:
            self._input.__class__ = IndexedInputFiles

    Job.__init__ = init_with_indexed_input


def no_resource_accounting_in_dry_runs():
    """A dry run selects every ready job without weighing resources (JobScheduler.schedule:
    `run = needrun`), yet gave each job's resources back to the pool when it "finished",
    evaluating every resource of every job (and a group's sum over its jobs) for counters nothing
    reads: a tenth of a dry run. A dry run now skips that; a real run is unchanged. (A listed
    job's resources are still evaluated when its description is shown.)"""
    from snakemake.scheduling.job_scheduler import JobScheduler

    free_resources = JobScheduler._free_resources

    def free_resources_unless_dry(self, job):
        if not self.dryrun:
            free_resources(self, job)

    JobScheduler._free_resources = free_resources_unless_dry


def input_sizes_on_the_workflow_loop():
    """`input.size_mb` (in Snakemake's default `disk_mb` of every job of a cluster profile) ran
    its coroutine on a new event loop at each call: InputFiles looks for the workflow's runner in
    its own module's globals, where nothing puts it (the comment there expects it in the eval
    context). A fifth of a dry run with the slurm-gpu profile. It now gets the workflow's
    runner; inside a running loop the fallback still raises NestedCoroutineError, which
    Snakemake turns into a size to be determined (<TBD>), as before."""
    import asyncio

    import snakemake.common
    import snakemake.iocontainers

    def async_run(coroutine):
        if asyncio.events._get_running_loop() is not None:
            return snakemake.common.async_run(coroutine)
        return workflow.async_run(coroutine)

    snakemake.iocontainers.async_run = async_run


def check_each_group_once():
    """DAG._check_groups checks every group once per job in it (it loops over the job -> group
    map): a text group of the slurm-gpu profile (40 recordings, 3 jobs each) 120 times. It now
    sees each group once."""
    from snakemake.dag import DAG

    check_groups = DAG._check_groups

    def check_groups_once(self):
        group_of_job = self._group
        self._group = {id(group): group for group in group_of_job.values()}
        try:
            return check_groups(self)
        finally:
            self._group = group_of_job

    DAG._check_groups = check_groups_once


def group_readiness_once_per_update():
    """DAG.update_ready asks DAG._ready about each job twice (once for a debug message), and
    once more about each job of a group that may start. For a job in a group, _ready compares,
    for every job of the group, the group of each of its dependencies with the group (GroupJob
    equality compares their sets of jobs): cubic in the group's size over a group, a sixth of a
    dry run with the slurm-gpu profile's groups of 80 and 120 jobs. Its answer (whether no job of
    the group still waits on a job outside it) is the same for all jobs of a group, so within one
    update_ready it is now worked out once per group."""
    from snakemake.dag import DAG

    update_ready, ready = DAG.update_ready, DAG._ready

    def update_ready_per_group(self, jobs=None):
        group_ready = {}

        def job_ready(job):
            group = self._group.get(job)
            if group is None:
                return ready(self, job)
            if id(group) not in group_ready:
                group_ready[id(group)] = ready(self, job)
            return group_ready[id(group)]

        self._ready = job_ready
        try:
            return update_ready(self, jobs)
        finally:
            del self._ready

    DAG.update_ready = update_ready_per_group


patch_snakemake(remember_function_params)
patch_snakemake(format_shell_command_once)
patch_snakemake(job_info_only_when_shown)
patch_snakemake(producers_once_per_file)
patch_snakemake(conda_env_without_params)
patch_snakemake(input_membership_by_hash)
patch_snakemake(no_resource_accounting_in_dry_runs)
patch_snakemake(input_sizes_on_the_workflow_loop)
patch_snakemake(check_each_group_once)
patch_snakemake(group_readiness_once_per_update)
