import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources" / "demo"
# The demo's languages and their MMS adapters.
DEMO_LANGUAGES = {"samoan": "smo", "portuguese": "por"}
_OKINA = re.compile(r"[ʻ'‘`’]")
sys.path.insert(0, str(REPO / "scripts"))

# No test may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _uses(item: pytest.Item, *fixtures: str) -> bool:
    return bool(set(fixtures) & set(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that read the session's demo run (and the Slurm tests, which compare with it) run
    last, in their order: the demo runs in the background meanwhile (see ``_demo_in_background``),
    on the cores the mostly one-threaded tests before them leave idle."""
    items.sort(key=lambda item: _uses(item, "demo_run", "cluster"))  # stable


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


def normalize_demo_text(text: str) -> str:
    """NFC, lower case, okina variants as ʻ, punctuation and hyphens as spaces, spaces collapsed."""
    text = _OKINA.sub("ʻ", unicodedata.normalize("NFC", text).lower())
    kept = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return " ".join(kept.split())


def demo_truth_ids() -> list[tuple[str, str]]:
    """(language folder, recording) of every demo chapter with ground truth."""
    return [(lang, path.stem) for lang in DEMO_LANGUAGES for path in sorted((DEMO / lang / "truth").glob("*.json"))]


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (tiny models only lose from threads on shared cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sigkill_when(command: list[str], env: dict, ready: Callable[[], bool], timeout_s: float = 120) -> str:
    """Run a long step's CLI, SIGKILL it as soon as ``ready()`` (e.g. a checkpoint is saved), and
    return its stderr. Fails if the step ended on its own first: a kill-and-resume test must not
    pass without a kill."""
    job = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout_s
    while job.poll() is None and time.monotonic() < deadline and not ready():
        time.sleep(0.01)
    job.send_signal(signal.SIGKILL)
    job.wait()
    stderr = job.stderr.read()
    assert job.returncode == -signal.SIGKILL, f"the run ended before the kill (exit {job.returncode}): {stderr}"
    return stderr


# --------------------------------------------------------------------------- the workflow

SNAKEFILE = REPO / "workflow" / "Snakefile"


def snakemake_command(workdir: Path, *args: str, env: dict | None = None) -> tuple[list[str], dict]:
    """The command line and environment of `snakemake` run on the workflow in ``workdir``."""
    env = {**os.environ, **(env or {})}
    # Jobs call `python`: the interpreter running the tests (the venv's) comes first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("PYTHONPATH", None)
    return [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), *args], env


def snakemake(workdir: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    command, env = snakemake_command(workdir, *args, env=env)
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def gpu_rules() -> set[str]:
    """The rules of workflow/rules/ that declare `resources: gpu=1` (what the profiles route to a GPU)."""
    rules = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t].*\n|\n)*)", smk.read_text(), re.MULTILINE):
            if re.search(r"^\s+gpu=1,?$", body, re.MULTILINE):
                rules.add(name)
    return rules


def demo_config(workdir: Path) -> Path:
    """config/demo.yaml with absolute paths, so the run can live in a temporary folder."""
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    for lang in config["languages"].values():
        for key in ("audio_dir", "text_dir", "truth_dir"):
            lang[key] = str(REPO / lang[key])
    config["transcribe"]["model"] = str(REPO / config["transcribe"]["model"])
    config["units"]["model"] = str(REPO / config["units"]["model"])
    for stage in ("speechllm", "moonshine"):
        if (config.get(stage) or {}).get("start"):
            config[stage]["start"] = str(REPO / config[stage]["start"])
    path = workdir / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class BackgroundRun:
    """`snakemake` started in ``workdir`` and left running; :meth:`wait` checks how it ended."""

    def __init__(self, workdir: Path, *args: str):
        self.workdir, self.args = workdir, args
        self.log = workdir.with_name(f"{workdir.name}.snakemake.log")  # beside it: the folder holds the run only
        command, env = snakemake_command(workdir, *args)
        with self.log.open("w") as log:  # a file, not a pipe: nobody reads it while it runs
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait(self) -> None:
        if self.proc.wait() != 0:
            tail = self.log.read_text(errors="replace")[-6000:]
            raise AssertionError(f"snakemake {' '.join(self.args)} failed (exit {self.proc.returncode}):\n{tail}")

    def stop(self) -> None:
        """Kills the run and its jobs (a session that ends early, e.g. under -x)."""
        if self.proc.poll() is None:
            self.kill()
            self.proc.wait()

    def kill(self) -> None:
        """SIGKILL to the run's process group, without waiting: safe in a signal handler that
        may have interrupted :meth:`wait` (``Popen.wait`` holds a lock that ``poll`` needs too)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # already ended and reaped
            pass


@pytest.fixture(scope="session", autouse=True)
def _demo_in_background(request, tmp_path_factory):
    """When the session has tests that read the demo run, the demo workflow starts at the first
    test, in the background (`snakemake --cores 2`); ``demo_run`` waits for it."""
    # The session's items as run (after every plugin's selection: -k, -m, --lf, --sw).
    if not any(_uses(item, "demo_run") for item in request.session.items) or shutil.which("ffmpeg") is None:
        yield None
        return
    workdir = tmp_path_factory.mktemp("demo")
    config = demo_config(workdir)
    run = BackgroundRun(workdir, "--cores", "2", "--configfile", str(config))
    previous = signal.getsignal(signal.SIGTERM) or signal.SIG_DFL  # None: set outside Python

    def stop_then_terminate(signum, frame):  # a SIGTERM (a CI timeout) skips the finally below
        run.kill()
        signal.signal(signal.SIGTERM, previous)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop_then_terminate)
    try:
        yield run, config
    finally:
        signal.signal(signal.SIGTERM, previous)
        run.stop()


@pytest.fixture(scope="session")
def demo_run(_demo_in_background):
    """The whole demo workflow, then the report, in a temporary working directory: run once per
    session, in the background from the session's first test (the end-to-end tests read it, the
    Slurm test compares its own run with it)."""
    require("ffmpeg")
    run, config = _demo_in_background
    run.wait()
    snakemake(run.workdir, "--configfile", str(config), "--report", "report.html")
    return run.workdir, config


def assert_validation_reads_as_evaluate_asr(trainer, run, manifest, monkeypatch, evaluations: int = 1,
                                            first_given: bool = False) -> None:
    """``run(name, **settings)`` trains ``trainer`` (a module) briefly on ``manifest``, validated on
    it: every validation clip (``evaluations`` validations) is read by evaluate_asr's
    ``read_in_parts`` with the train split's pace (``first_given``: and the clip's reading from the
    validation's batch, not made again), ``reread=False`` reads each once, and what it returns is
    what is scored."""
    import numpy as np

    from tala.finetune.evaluate_asr import read_in_parts

    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    pace = round(float(np.median([len(r["normalized"].replace(" ", "")) / r["duration"] for r in rows])), 3)
    calls = []

    def checked(samples, transcribe_part, pace, part_seconds, first=None):  # as evaluate_asr, recorded
        calls.append((len(samples), pace, part_seconds, first))
        return read_in_parts(samples, transcribe_part, pace, part_seconds, first)

    monkeypatch.setattr(trainer, "read_in_parts", checked)
    result = run("checked")
    assert len(calls) == evaluations * len(rows), "every validation clip's reading is checked"
    assert all(p.letters_per_second == pace and p.source == "the train split" for _, p, _, _ in calls)
    assert all(seconds is None for _, _, seconds, _ in calls), "whole clips unless part_seconds is set"
    if first_given:
        assert all(first is not None for *_, first in calls), "the clip's reading is checked, not made again"
    assert result.final_eval["reread"] == 0, "1-1.5 s clips are shorter than any part cut again"
    calls.clear()
    assert not run("once", reread=False).final_eval["reread"], "--no-reread: read once"
    assert len(calls) == evaluations * len(rows) and all(p is None for _, p, _, _ in calls)
    # what the check returns is what is scored: a check that empties every reading gives CER 1
    monkeypatch.setattr(trainer, "read_in_parts", lambda samples, part, pace, seconds, first=None: ("", first, 1))
    emptied = run("emptied").final_eval
    assert emptied["cer"] == 1.0 and emptied["reread"] == len(rows)


def assert_long_training_clips_are_learned_in_parts(trainer, run, manifest, tmp_path, monkeypatch) -> None:
    """``run(name, train_manifest, **settings)`` trains ``trainer`` (a module) briefly: with
    ``part_seconds`` the clips of a manifest with word times (here spread evenly over each clip,
    0.05 s apart) are learned as parts cut between their words, each loaded as its span of the clip;
    a clip without word times is learned whole."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    timed = tmp_path / "timed.jsonl"
    for row in rows:
        words, duration = row["normalized"].split(), row["duration"]
        step = duration / len(words)
        row["word_times"] = [[round(k * step + 0.025, 4), round((k + 1) * step - 0.025, 4)] for k in range(len(words))]
    timed.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (timed.parent / "clips").mkdir(exist_ok=True)
    for row in rows:  # the clips beside the new manifest
        target = timed.parent / row["audio"]
        if not target.exists():
            target.symlink_to(manifest.parent / row["audio"])
    spans = []
    load_audio = trainer.load_audio

    def recorded(example):
        spans.append(example.span)
        return load_audio(example)

    monkeypatch.setattr(trainer, "load_audio", recorded)
    run("parts", timed, part_seconds=0.6)
    info = json.loads((tmp_path / "parts" / "training.json").read_text())
    long_words = [r for r in rows if r["duration"] > 0.6 and len(r["normalized"].split()) > 1]
    assert long_words and info["examples"] > len(rows), "each clip over 0.6 s with two words or more is cut"
    assert any(s is not None and s[1] - s[0] <= 0.6 for s in spans), "a part is loaded as its span of the clip"
    spans.clear()
    run("whole", manifest, part_seconds=0.6)
    assert json.loads((tmp_path / "whole" / "training.json").read_text())["examples"] == len(rows)
    assert spans and all(s is None for s in spans), "without word times every clip is learned whole"


def generate_beams(monkeypatch) -> list:
    """The ``num_beams`` of every transformers ``generate()`` call from now on, recorded (the calls
    still run)."""
    from transformers.generation.utils import GenerationMixin

    calls = []
    original = GenerationMixin.generate

    def generate(self, *args, **kwargs):
        calls.append(kwargs.get("num_beams"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", generate)
    return calls


def assert_validation_and_evaluation_search_the_beams_asked(kind: str, run, manifest, tmp_path, monkeypatch,
                                                            beams: int = 3, part_seconds: float = 0.6) -> None:
    """``run(name, **settings)`` trains a ``kind`` recognizer briefly on ``manifest``, validated on
    it, into ``tmp_path / name``: with ``num_beams`` every transcript its validation writes is a beam
    search of that many, and with ``part_seconds`` every clip longer than that is read in parts no
    longer; evaluate_asr ``--num-beams --part-seconds`` reads the saved folder so too, records both,
    says them in its table, and scores the clips as the validation did."""
    import tala.finetune.evaluate_asr as evaluation

    with pytest.raises(ValueError, match="num_beams must be >= 1"):
        run("none", num_beams=0)
    with pytest.raises(ValueError, match="part_seconds must be > 0"):
        run("none", part_seconds=0.0)
    calls = generate_beams(monkeypatch)
    parts, quiet_parts = [], evaluation.quiet_parts

    def cut(samples, seconds):  # evaluate_asr's, recorded: the parts' lengths
        pieces = quiet_parts(samples, seconds)
        parts.append([len(p) for p in pieces])
        return pieces

    monkeypatch.setattr(evaluation, "quiet_parts", cut)
    result = run("beams", num_beams=beams, part_seconds=part_seconds)
    assert calls and set(calls) == {beams}, calls
    assert any(len(p) > 1 for p in parts), "1-1.5 s clips are read in parts of at most 0.6 s"
    assert all(n <= part_seconds * 16_000 for p in parts for n in p)
    calls.clear(), parts.clear()
    out = tmp_path / "beams.json"
    assert evaluation.main([str(out), str(tmp_path / "beams.tsv"), "--html", str(tmp_path / "beams.html"),
                            "--language", "samoan", "--kind", kind, "--split", "test", str(manifest),
                            "--system", "after", str(tmp_path / "beams"), "-", "--device", "cpu",
                            "--pace", str(manifest), "--num-beams", str(beams),
                            "--part-seconds", str(part_seconds)]) == 0  # fmt: skip
    assert calls and set(calls) == {beams}, calls
    assert any(len(p) > 1 for p in parts) and all(n <= part_seconds * 16_000 for p in parts for n in p)
    scores = json.loads(out.read_text())
    assert scores["num_beams"] == beams and scores["part_seconds"] == part_seconds
    assert scores["splits"]["test"]["after"]["cer"] == round(result.final_eval["cer"], 4)
    html = (tmp_path / "beams.html").read_text()
    assert f"Beam search of {beams}" in html and f"read in parts of at most {part_seconds:g} s" in html


def assert_unwritable_characters_are_named(run, manifest, tmp_path, capsys) -> None:
    """``run(name, train_manifest)`` trains briefly on a copy of ``manifest`` where two transcripts
    hold letters the tokenizer lacks (``ŋ``, ``q``): one line names the manifest, the clips and
    the characters; ``training.json`` and the card record them; the clips are still learned."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[0]["normalized"] = "ŋ " + rows[0]["normalized"]
    rows[1]["normalized"] = rows[1]["normalized"] + " qŋ"
    odd = tmp_path / "odd.jsonl"
    odd.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "clips").mkdir(exist_ok=True)
    for row in rows:  # the clips beside the new manifest
        if not (tmp_path / row["audio"]).exists():
            (tmp_path / row["audio"]).symlink_to(manifest.parent / row["audio"])
    capsys.readouterr()
    run("odd", odd)
    lines = [line for line in capsys.readouterr().err.splitlines() if "cannot write" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{odd}: 2 of {len(rows)} clips hold characters the tokenizer of ")
    assert "('ŋ' x2, 'q' x1): they are learned and read as <unk>" in lines[0], lines[0]
    info = json.loads((tmp_path / "odd" / "training.json").read_text())
    assert info["unwritable"]["train"] == {"clips": 2, "characters": {"ŋ": 2, "q": 1}}
    assert info["examples"] == len(rows), "the clips stay in"
    assert "2 train clips hold characters the tokenizer cannot write: `ŋ` (2), `q` (1)." in \
        (tmp_path / "odd" / "README.md").read_text()  # fmt: skip
    capsys.readouterr()
    run("plain", manifest)
    assert "cannot write" not in capsys.readouterr().err
    assert json.loads((tmp_path / "plain" / "training.json").read_text())["unwritable"] == \
        {"train": {"clips": 0, "characters": {}}}  # fmt: skip


def assert_checkpointed_layers_are_recomputed_and_take_the_same_steps(run, adapter: str, capsys) -> None:
    """``run(name, gradient_checkpointing, on_step)`` trains a recognizer a few steps and returns
    its output folder, where ``adapter`` is the file of what it trained (the recognizers' runs: LoRA
    with dropout and guided attention, which reads the checkpointed layers' attention weights):
    checkpointing runs each layer's feed-forward block again in the backward pass, and the run
    takes the steps the run without it takes (the same losses, the same weights up to rounding),
    so that it may be switched on to resume a run; the log says how many layers it covers."""
    import torch
    from safetensors.torch import load_file

    runs = {}
    for checkpointed in (False, True):
        calls, losses = [0], []

        # a feed-forward block is inside a checkpointed layer, so called again when it is recomputed
        # (a pre-hook: the recomputation stops as soon as it has what the backward pass needs)
        def count(module, args):
            if module.training and type(module).__name__.endswith(("MLP", "FeedForward")):
                calls[0] += 1

        hook = torch.nn.modules.module.register_module_forward_pre_hook(count)
        try:
            folder = run(f"run-{checkpointed}", checkpointed, lambda step, loss: losses.append(loss))
        finally:
            hook.remove()
        runs[checkpointed] = (losses, calls[0], load_file(str(folder / adapter)))
        said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("activation checkpointing:")]
        assert len(said) == checkpointed and (not said or said[0].endswith(" layers")), said
    (plain, plain_calls, plain_weights), (ckpt, ckpt_calls, ckpt_weights) = runs[False], runs[True]
    assert plain_calls > 0 and ckpt_calls == 2 * plain_calls, (plain_calls, ckpt_calls)
    assert ckpt == pytest.approx(plain, rel=1e-5), "the same losses, step by step"
    assert plain_weights.keys() == ckpt_weights.keys()
    assert all(torch.allclose(plain_weights[k], ckpt_weights[k], atol=1e-6) for k in plain_weights)


def assert_trains_under_bf16_autocast(trainer, run, weights: str, monkeypatch) -> None:
    """What a CUDA run does (``tala.training.autocast``: bf16 on Ampere or newer), on the CPU: the
    trainer module's autocast swapped for the CPU's bf16 one. ``run(name, on_step)`` trains and
    validates a few steps and returns its result and output folder, ``weights`` the file of what it
    trained. The linear layers really compute in bf16 (else the swap proves nothing), every loss is
    finite, the validation scores its clips, and what is saved is float32 (bf16 is only how the
    steps were computed)."""
    import math

    import torch
    from safetensors.torch import load_file

    monkeypatch.setattr(trainer, "autocast", lambda device: torch.autocast("cpu", dtype=torch.bfloat16))
    dtypes, losses = set(), []

    def record(module, args, output):
        if module.training and isinstance(output, torch.Tensor):
            dtypes.add(output.dtype)

    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, output: record(module, args, output) if isinstance(module, torch.nn.Linear) else None)
    try:
        result, folder = run("bf16", lambda step, loss: losses.append(loss))
    finally:
        hook.remove()
    assert torch.bfloat16 in dtypes, f"the training steps' linear layers computed in {dtypes}, not bf16"
    assert losses and all(math.isfinite(loss) for loss in losses), losses
    scores = result.final_eval
    assert scores["examples"] and all(math.isfinite(scores[k]) and scores[k] >= 0 for k in ("loss", "cer")), scores
    saved = load_file(str(folder / weights))
    assert saved and {t.dtype for t in saved.values()} == {torch.float32}


def assert_damaged_recognizer_folders_are_named(kind: str, folder: Path, manifest: Path, damages: dict,
                                                tmp_path: Path, capsys) -> None:
    """A saved ``kind`` recognizer ``folder`` copied and damaged as a copy or a sync cut short
    leaves it: for each ``damages[name] = (file, how)`` (``how``: "cut" to half its bytes, "gone",
    "not json", or a dict of fields added to the JSON) evaluate_asr on ``manifest`` ends with one
    line ``error: ...`` that names the damaged file, and no traceback."""
    import shutil

    from tala.errors import run_cli
    from tala.finetune.evaluate_asr import main as evaluate_asr

    for name, (file, how) in damages.items():
        copy = tmp_path / f"damaged-{name}"
        shutil.copytree(folder, copy)
        target = copy / file
        if how == "cut":
            target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
        elif how == "gone":
            target.unlink()
        elif how == "not json":
            target.write_text("{", encoding="utf-8")
        else:
            target.write_text(json.dumps({**json.loads(target.read_text()), **how}), encoding="utf-8")
        status = run_cli(evaluate_asr, [str(tmp_path / f"{name}.json"), str(tmp_path / f"{name}.tsv"),
                                        "--language", "samoan", "--kind", kind, "--split", "test", str(manifest),
                                        "--system", "after", str(copy), "-", "--no-progress"])  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 1 and err and err[-1].startswith("error: ") and str(target) in err[-1], (name, err)
        assert not any("Traceback" in line for line in err), (name, err)
