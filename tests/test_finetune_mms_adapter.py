"""tala.finetune.mms_adapter on a tiny model and tone "speech": a new language's adapter from a
neighbour's, the best weights kept, exact resume after a SIGKILL, and the bad inputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, sigkill_when
from tala.finetune.train_ctc import TrainSettings, train
from tala.training import checkpoint_dirs
from test_train_ctc import TEXTS, VOCAB, tiny_config, write_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ENV = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}


def write_split(folder: Path, name: str, texts, seed: int) -> Path:
    """A dataset split as tala.dataset.build writes it: ``text`` as printed, ``normalized`` as trained."""
    return write_dataset(folder, texts, seed, name=f"{name}.jsonl", normalized=True)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny MMS-style model with one adapter, ``toy``, trained until it half knows the tones."""
    root = tmp_path_factory.mktemp("base")
    spec = root / "spec"
    spec.mkdir()
    (spec / "config.json").write_text(json.dumps(tiny_config()), encoding="utf-8")
    (spec / "vocab.json").write_text(json.dumps({"toy": VOCAB}), encoding="utf-8")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # restored below: later tests compare in-process results with CLIs'
    try:
        train([write_split(root / "data", "train", TEXTS, 0)], root / "model", "toy",
              TrainSettings(phase="all", max_steps=40, learning_rate=1e-2, warmup_steps=4, batch_seconds=2.5,
                            max_batch_size=4, seed=3, eval_every=0, device="cpu", text_field="normalized"),
              config=spec / "config.json", vocab_file=spec / "vocab.json", progress=False)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return root / "model"


@pytest.fixture()
def dataset(tmp_path) -> dict[str, Path]:
    return {"train": write_split(tmp_path / "dataset", "train", TEXTS, 1),
            "valid": write_split(tmp_path / "dataset", "valid", TEXTS[:4], 2)}  # fmt: skip


def command(base: Path, dataset: dict, out: Path, *extra: str, lang: str = "new", start: str = "toy") -> list[str]:
    return [sys.executable, "-m", "tala.finetune.mms_adapter", "--language", "tonal", "--lang", lang,
            "--start-adapter", start, "--model", str(base), "--train", str(dataset["train"]),
            "--valid", str(dataset["valid"]), "--out", str(out), "--lm-head-epochs", "2", "--epochs", "4",
            "--lm-head-lr", "5e-3", "--lr", "5e-3", "--batch-seconds", "2.5", "--max-batch-size", "4",
            "--eval-every", "4", "--checkpoint-every", "3", "--log-every", "2", "--seed", "5", "--device", "cpu",
            "--threads", "1", "--no-progress", *extra]  # fmt: skip


def run_cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_a_new_language_starts_from_the_neighbours_adapter_and_loads_with_plain_transformers(base, dataset, tmp_path):
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    out = tmp_path / "mms_adapter"
    done = run_cli(command(base, dataset, out))
    assert done.returncode == 0, done.stderr
    assert "valid CER" in done.stderr.splitlines()[-1]
    assert not (tmp_path / "mms_adapter.checkpoints").exists(), "work folders go after success"
    info = json.loads((out / "training.json").read_text())
    assert info["lang"] == "new" and info["start_adapter"] == "toy" and info["train_clips"] == len(TEXTS)
    phase1, phase2 = info["phases"]["phase1-lm_head"], info["phases"]["phase2-adapter"]
    assert "started from the model's toy adapter" in phase1["start_notes"]
    assert any("copied from the toy head" in note for note in phase1["start_notes"])
    assert phase1["settings"]["phase"] == "lm_head" and phase2["settings"]["phase"] == "adapter"
    assert phase1["steps"] > 0 and phase2["steps"] > 0 and 0 <= info["valid_cer"] <= 1
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert {row["phase"] for row in log} == {"lm_head", "adapter"} and any("eval_cer" in row for row in log)
    card = (out / "README.md").read_text()  # the model card: data, settings, validation, how to load
    assert "library_name: transformers" in card and f"| {len(TEXTS)} |" in card
    assert f"| {100 * info['valid_cer']:.1f} % |" in card and 'model.load_adapter("new")' in card

    model = Wav2Vec2ForCTC.from_pretrained(out)
    model.load_adapter("new")
    processor = Wav2Vec2Processor.from_pretrained(out)
    processor.tokenizer.set_target_lang("new")
    assert model.lm_head.out_features == len(processor.tokenizer) == len(VOCAB)
    # The new head's rows for the shared letters started from the toy head: with the base, the
    # toy adapter and the rows equal, the phase-1 model would transcribe as the toy one did.
    assert set(load_file(str(out / "adapter.new.safetensors"))) == set(model._get_adapters())


def test_the_weights_of_the_best_validation_cer_are_kept(base, dataset, tmp_path):
    """A learning rate that wrecks the model: the output holds the weights of the best evaluation
    (the starting weights compete too), not the last step's."""
    out = tmp_path / "wrecked"
    settings = TrainSettings(phase="lm_head", max_steps=8, learning_rate=50.0, warmup_steps=0, batch_seconds=2.5,
                             max_batch_size=4, seed=3, eval_every=4, device="cpu", text_field="normalized",
                             evaluate_start=True, checkpoint_every=4, keep_checkpoints=1)  # fmt: skip
    result = train([dataset["train"]], out, "toy", settings, valid_manifests=[dataset["valid"]], model=str(base),
                   progress=False, keep_checkpoint_dir=True)  # fmt: skip
    info = json.loads((out / "training.json").read_text())
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    evals = {row["step"]: row["eval_cer"] for row in log if "eval_cer" in row and "event" not in row}
    assert sorted(evals) == [0, 4, 8]
    best = min(evals, key=lambda step: (evals[step], step))
    assert best != 8, f"the last step was the best: nothing to test ({evals})"
    assert info["best"]["step"] == best and result.final_eval["cer"] == pytest.approx(evals[best], abs=1e-5)
    kept = load_file(str(out / "model.safetensors"))
    at_best = load_file(str(tmp_path / "wrecked.checkpoints" / f"step-{best:06d}" / "model.safetensors"))
    last = load_file(str(tmp_path / "wrecked.checkpoints" / "step-000008" / "model.safetensors"))
    assert torch.equal(kept["lm_head.weight"], at_best["lm_head.weight"])
    assert not torch.equal(kept["lm_head.weight"], last["lm_head.weight"])


def phase2_checkpoint_saved(root: Path) -> bool:
    return any(step > 0 for step, _ in checkpoint_dirs(root / "phase2-adapter.checkpoints"))


@pytest.mark.slow
def test_sigkill_in_either_phase_then_rerun_reaches_the_same_weights(base, dataset, tmp_path):
    reference = tmp_path / "reference"
    done = run_cli(command(base, dataset, reference))
    assert done.returncode == 0, done.stderr

    out = tmp_path / "out"
    root = tmp_path / "out.checkpoints"
    # Killed in phase 1 after its first checkpoint, then in phase 2 after one of its own.
    sigkill_when(command(base, dataset, out), ENV,
                 lambda: any(s > 0 for s, _ in checkpoint_dirs(root / "phase1-lm_head.checkpoints")), timeout_s=120)
    assert not out.exists()
    sigkill_when(command(base, dataset, out), ENV, lambda: phase2_checkpoint_saved(root), timeout_s=120)
    assert not out.exists() and (root / "phase1-lm_head" / "training.json").is_file()
    rerun = run_cli(command(base, dataset, out))
    assert rerun.returncode == 0, rerun.stderr
    assert "phase 1 done before" in rerun.stderr
    for name in ("model.safetensors", "adapter.new.safetensors", "vocab.json"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    events = [json.loads(line).get("event") for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert events.count("resume") >= 1


def test_an_empty_train_split_is_one_error_naming_the_language(base, dataset, tmp_path):
    dataset["train"].write_text("", encoding="utf-8")
    done = run_cli(command(base, dataset, tmp_path / "out"))
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "tonal: the train split is empty" in last and str(dataset["train"]) in last
    assert "Traceback" not in done.stderr


def test_an_empty_valid_split_is_said_and_the_last_weights_kept(base, dataset, tmp_path):
    dataset["valid"].write_text("", encoding="utf-8")
    out = tmp_path / "out"
    done = run_cli(command(base, dataset, out))
    assert done.returncode == 0, done.stderr
    assert "tonal: the valid split is empty: no validation, the last weights are kept" in done.stderr
    assert json.loads((out / "training.json").read_text())["valid"] is None
    assert "No validation clips" in (out / "README.md").read_text()


def test_a_start_adapter_the_model_lacks_lists_those_it_has(base, dataset, tmp_path):
    done = run_cli(command(base, dataset, tmp_path / "out", start="xyz"))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "no language adapter 'xyz'" in last and "adapters available: toy" in last


def test_a_damaged_start_model_is_named(base, dataset, tmp_path):
    """A start model copied or downloaded cut short: one line naming its weights file, or the
    adapter of the language it is about to load, not a traceback."""
    import shutil

    copy = tmp_path / "cut"
    shutil.copytree(base, copy)
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes()[:1000])
    done = run_cli(command(copy, dataset, tmp_path / "out"))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {copy / 'model.safetensors'}: damaged weights file ("), last

    # a language whose adapter the model has (no --start-adapter: the trainer loads it), cut short
    other = tmp_path / "other"
    shutil.copytree(base, other)
    (other / "adapter.other.safetensors").write_bytes((base / "adapter.toy.safetensors").read_bytes()[:1000])
    vocab = json.loads((other / "vocab.json").read_text())
    (other / "vocab.json").write_text(json.dumps({**vocab, "other": vocab["toy"]}))
    args = command(other, dataset, tmp_path / "out-other", lang="other")
    at = args.index("--start-adapter")
    done = run_cli(args[:at] + args[at + 2:])
    assert done.returncode != 0 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {other / 'adapter.other.safetensors'}: damaged weights file ("), last
    # the trainer's own default (no start adapter): the language's adapter if the model has one
    from tala.finetune.train_ctc import load_start_model
    from tala.hub import ModelError

    with pytest.raises(ModelError, match=re.escape(f"{other / 'adapter.other.safetensors'}: damaged weights file")):
        load_start_model("other", TrainSettings(device="cpu"), TEXTS, tmp_path / "scratch", model=str(other))


def test_a_training_letter_the_vocabulary_lacks_is_named_with_file_and_line(base, dataset, tmp_path):
    rows = dataset["train"].read_text(encoding="utf-8").splitlines()
    row = json.loads(rows[2])
    row["normalized"] = "ab cz"
    rows[2] = json.dumps(row)
    dataset["train"].write_text("\n".join(rows) + "\n", encoding="utf-8")
    done = run_cli(command(base, dataset, tmp_path / "out", lang="toy", start="toy"))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"{dataset['train']}:3" in last and "'z'" in last and "not in the 'toy' vocabulary" in last


def test_help():
    done = run_cli([sys.executable, "-m", "tala.finetune.mms_adapter", "--help"], timeout=60)
    assert done.returncode == 0 and "--start-adapter" in done.stdout


def test_a_frozen_base_is_not_checkpointed(base, dataset, tmp_path):
    """Adapter-phase checkpoints hold the adapters and lm_head only (MMS-1B: MBs, not 3.9 GB each)."""
    settings = TrainSettings(phase="adapter", max_steps=4, learning_rate=1e-3, warmup_steps=0, batch_seconds=2.5,
                             max_batch_size=4, seed=3, eval_every=0, checkpoint_every=2, device="cpu",
                             text_field="normalized")  # fmt: skip
    train([dataset["train"]], tmp_path / "out", "toy", settings, model=str(base), progress=False,
          keep_checkpoint_dir=True)  # fmt: skip
    (_, newest), *_ = reversed(checkpoint_dirs(tmp_path / "out.checkpoints"))
    saved = set(load_file(str(newest / "model.safetensors")))
    assert saved == set(load_file(str(tmp_path / "out" / "adapter.toy.safetensors")))
    assert any(k.startswith("lm_head") for k in saved) and not any("feature_extractor" in k for k in saved)
