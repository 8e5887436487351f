"""tala.finetune.train_ctc on a tiny model and tone "speech": learning, exact resume, phases, outputs, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from conftest import (REPO, assert_checkpointed_layers_are_recomputed_and_take_the_same_steps,
                      assert_trains_under_bf16_autocast, sigkill_when)
from tala.ctc_text import CtcVocabulary, greedy_batch
from tala.errors import InputError
from tala.finetune.train_ctc import (
    TrainSettings,
    epoch_batches,
    lr_factor,
    main,
    read_manifest,
    train,
)
from tala.training import checkpoint_dirs

RATE = 16_000
# Each letter is a tone; a space is a short silence: a "language" a tiny CTC model learns in seconds.
TONES_HZ = {"a": 300.0, "b": 700.0, "c": 1300.0, "d": 2100.0}
VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "a": 5, "b": 6, "c": 7, "d": 8}
TEXTS = ["ab ca", "dd a", "cab", "ba dc", "a b c d", "dab", "cc ab", "bad", "da cb", "abcd"]


def tiny_config(**changes) -> dict:
    from transformers import Wav2Vec2Config

    config = Wav2Vec2Config(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4), feat_extract_norm="layer",
        do_stable_layer_norm=True, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, adapter_attn_dim=8,
        mask_time_prob=0.0, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0, ctc_zero_infinity=True, pad_token_id=0,
    ).to_dict()  # fmt: skip
    return {**config, **changes}


# What an MMS config draws at random while training: dropout and LayerDrop (torch's generator) and
# SpecAugment time masks (numpy's global one).
RANDOM_DRAWS = dict(mask_time_prob=0.05, mask_time_length=5, hidden_dropout=0.1, attention_dropout=0.1,
                    activation_dropout=0.1, feat_proj_dropout=0.1, final_dropout=0.1, layerdrop=0.1)


def tone_speech(text: str, rng: np.random.Generator) -> np.ndarray:
    pieces = [np.zeros(int(0.1 * RATE), np.float32)]
    for ch in text:
        n = int(rng.uniform(0.08, 0.12) * RATE)
        if ch == " ":
            pieces.append(np.zeros(n, np.float32))
            continue
        t = np.arange(n) / RATE
        pieces.append((0.4 * np.sin(2 * np.pi * TONES_HZ[ch] * t) * np.hanning(n)).astype(np.float32))
    pieces.append(np.zeros(int(0.1 * RATE), np.float32))
    audio = np.concatenate(pieces)
    return audio + rng.normal(0, 1e-3, len(audio)).astype(np.float32)


def write_dataset(folder: Path, texts=TEXTS, seed: int = 0, name: str = "train.jsonl", normalized: bool = False) -> Path:
    """Tone clips and their manifest; ``normalized``: as tala.dataset.build writes a split (``text`` as
    printed, ``normalized`` as trained, an ``id``)."""
    rng = np.random.default_rng(seed)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, text in enumerate(texts):
        audio = tone_speech(text, rng)
        clip = folder / "clips" / f"{Path(name).stem}-{i}.wav"
        sf.write(clip, audio, RATE, subtype="PCM_16")
        row = {"audio": f"clips/{clip.name}", "text": text, "duration": len(audio) / RATE}
        if normalized:
            row = {"id": clip.stem, **row, "text": text.upper() + ".", "normalized": text}
        lines.append(json.dumps(row))
    manifest = folder / name
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


# A tiny model gains nothing from threads, and loses much when other work shares the cores.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def data(tmp_path: Path) -> dict[str, Path]:
    spec = tmp_path / "spec"
    spec.mkdir()
    (spec / "config.json").write_text(json.dumps(tiny_config()), encoding="utf-8")
    (spec / "vocab.json").write_text(json.dumps({"toy": VOCAB}), encoding="utf-8")
    return {
        "train": write_dataset(tmp_path / "data"),
        "valid": write_dataset(tmp_path / "data", TEXTS[:4], seed=1, name="valid.jsonl"),
        "config": spec / "config.json",
        "vocab": spec / "vocab.json",
    }


def settings(**changes) -> TrainSettings:
    base = TrainSettings(phase="all", max_steps=12, learning_rate=5e-3, warmup_steps=2, batch_seconds=2.5,
                         max_batch_size=4, seed=3, eval_every=0, checkpoint_every=4, keep_checkpoints=2,
                         log_every=2, device="cpu")  # fmt: skip
    return TrainSettings(**{**base.__dict__, **changes})


def run(data: dict, out: Path, **kwargs):
    from_config = "model" not in kwargs
    return train([data["train"]], out, kwargs.pop("lang", "toy"), kwargs.pop("settings", settings()),
                 valid_manifests=[data["valid"]], config=data["config"] if from_config else None,
                 vocab_file=data["vocab"] if from_config else None, progress=False, **kwargs)  # fmt: skip


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_training_lowers_the_loss(data, tmp_path):
    losses = []
    result = run(data, tmp_path / "out", settings=settings(max_steps=40, learning_rate=1e-2, warmup_steps=4),
                 on_step=lambda step, loss: losses.append(loss))  # fmt: skip
    assert result.steps == 40 and len(losses) == 40
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    info = json.loads((tmp_path / "out" / "training.json").read_text())
    assert info["start_model"].startswith("config:") and info["settings"]["max_steps"] == 40
    assert info["tala_version"] and info["final_eval"]["cer"] <= 1.0
    log = [json.loads(line) for line in (tmp_path / "out" / "training_log.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "steps_per_s"} <= set(log[1]) and "eval_cer" in log[-1]


def test_gradient_checkpointing_recomputes_the_layers_and_takes_the_same_steps(data, tmp_path, capsys):
    config = tmp_path / "config_random.json"  # dropout, LayerDrop and SpecAugment: drawn alike in both runs
    config.write_text(json.dumps(tiny_config(**RANDOM_DRAWS)), encoding="utf-8")

    def go(name, checkpointed, on_step):
        run({**data, "config": config}, tmp_path / name, on_step=on_step,
            settings=settings(max_steps=4, gradient_checkpointing=checkpointed))
        return tmp_path / name

    assert_checkpointed_layers_are_recomputed_and_take_the_same_steps(go, "model.safetensors", capsys)


def test_trains_and_validates_under_cudas_bf16_autocast(data, tmp_path, monkeypatch):
    import tala.finetune.train_ctc as trainer

    config = tmp_path / "config_random.json"  # with dropout, LayerDrop and SpecAugment
    config.write_text(json.dumps(tiny_config(**RANDOM_DRAWS)), encoding="utf-8")

    def go(name, on_step):
        result = run({**data, "config": config}, tmp_path / name, on_step=on_step,
                     settings=settings(max_steps=3, eval_every=3))
        return result, tmp_path / name

    assert_trains_under_bf16_autocast(trainer, go, "model.safetensors", monkeypatch)


def test_output_folder_is_a_loadable_mms_model(data, tmp_path):
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    run(data, tmp_path / "out", settings=settings(max_steps=2))
    out = tmp_path / "out"
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "vocab.json", "adapter.toy.safetensors", "training.json",
            "training_log.jsonl"} <= names  # fmt: skip
    assert not (tmp_path / "out.checkpoints").exists(), "checkpoints are removed after success"
    model = Wav2Vec2ForCTC.from_pretrained(out)
    adapter = load_file(str(out / "adapter.toy.safetensors"))
    assert set(adapter) == set(model._get_adapters())
    model.load_adapter("toy")
    processor = Wav2Vec2Processor.from_pretrained(out)
    assert processor.tokenizer.target_lang == "toy" and processor.tokenizer.encoder == VOCAB


def test_kill_and_rerun_continues_from_the_checkpoint_and_matches_an_uninterrupted_run(data, tmp_path):
    reference = run(data, tmp_path / "ref")

    class Killed(Exception):
        pass

    def kill_at_6(step: int, loss: float) -> None:
        if step == 6:
            raise Killed

    out = tmp_path / "out"
    with pytest.raises(Killed):
        run(data, out, on_step=kill_at_6)
    assert not out.exists(), "the output appears only at the end"
    assert [step for step, _ in checkpoint_dirs(tmp_path / "out.checkpoints")] == [4]

    resumed = run(data, out)
    assert reference.resumed_from is None and resumed.resumed_from == 4 and resumed.steps == 12
    assert_same_outputs(out, tmp_path / "ref", resumed_at=4)


TIMING_FIELDS = {"steps_per_s", "audio_s_per_s", "elapsed_s"}


def log_without_resume_and_times(folder: Path) -> tuple[list[dict], list[dict]]:
    """The training log's records without the timing fields, and its resume events apart."""
    records = [json.loads(line) for line in (folder / "training_log.jsonl").read_text().splitlines()]
    resumes = [r for r in records if r.get("event") == "resume"]
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records if r not in resumes], resumes


def assert_same_outputs(out: Path, reference: Path, resumed_at: int) -> None:
    """``out`` (killed, then rerun) holds the same bytes as ``reference``, but for the log's resume
    event and timings; training.json holds neither times nor the output folder."""
    names = sorted(p.name for p in reference.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names
    for name in names:
        if name != "training_log.jsonl":
            assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    resumed_log, resumes = log_without_resume_and_times(out)
    reference_log, none = log_without_resume_and_times(reference)
    assert [r["step"] for r in resumes] == [resumed_at] and not none
    assert resumed_log == reference_log
    info = (out / "training.json").read_text()
    assert "elapsed" not in info and str(out) not in info and str(reference) not in info


class Stop(Exception):
    """Raised from on_step: a run interrupted after a checkpoint, as a kill would."""


def stop_at_step(data, out, step: int) -> None:
    def stop(current, loss):
        if current == step:
            raise Stop

    with pytest.raises(Stop):
        run(data, out, on_step=stop)


def test_checkpoint_holds_optimizer_scheduler_and_position(data, tmp_path):
    stop_at_step(data, tmp_path / "out", 4)
    (step, path), = checkpoint_dirs(tmp_path / "out.checkpoints")
    state = torch.load(path / "trainer_state.pt", weights_only=True)
    assert step == 4 and state["position"]["step"] == 4
    assert state["scheduler"]["last_epoch"] == 4
    moments = state["optimizer"]["state"]
    assert moments and all(int(s["step"]) == 4 and s["exp_avg"].abs().sum() > 0 for s in moments.values())


def test_a_checkpoint_of_other_settings_is_not_resumed(data, tmp_path):
    stop_at_step(data, tmp_path / "out", 4)
    with pytest.raises(InputError, match="other settings"):
        run(data, tmp_path / "out", settings=settings(learning_rate=1e-3))


def train_command(data: dict, config: Path, out: Path) -> list[str]:
    """The CLI for 120 steps, a checkpoint every 15 and a log line every 10 (so a resumed log window
    starts mid-way), an evaluation every 50."""
    return [sys.executable, "-m", "tala.finetune.train_ctc", "--train", str(data["train"]), "--valid", str(data["valid"]),
            "--config", str(config), "--vocab", str(data["vocab"]), "--lang", "toy", "--out", str(out),
            "--max-steps", "120", "--checkpoint-every", "15", "--log-every", "10", "--eval-every", "50",
            "--lr", "5e-3", "--warmup-steps", "2", "--batch-seconds", "2.5", "--max-batch-size", "4",
            "--seed", "3", "--device", "cpu", "--threads", "1", "--no-progress"]  # fmt: skip


def logged_past_a_checkpoint(checkpoints: Path) -> bool:
    """Whether the log has a line after the newest checkpoint (which a resumed run must drop)."""
    found = checkpoint_dirs(checkpoints)
    try:
        lines = (checkpoints / "training_log.jsonl").read_text(encoding="utf-8").splitlines()
        return bool(found) and max(json.loads(line)["step"] for line in lines) > found[-1][0]
    except (OSError, ValueError):
        return False  # no log yet, or a line being written


@pytest.mark.slow
def test_sigkill_of_the_cli_then_rerun_resumes_and_writes_the_same_bytes(data, tmp_path):
    config = tmp_path / "spec" / "config_random.json"
    config.write_text(json.dumps(tiny_config(**RANDOM_DRAWS)), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    reference, out = tmp_path / "reference", tmp_path / "out"
    checkpoints = tmp_path / "out.checkpoints"
    stderr = sigkill_when(train_command(data, config, out), env, lambda: logged_past_a_checkpoint(checkpoints),
                          timeout_s=60)
    found = checkpoint_dirs(checkpoints)
    assert found, f"no checkpoint within 60 s: {stderr}"
    killed_at = found[-1][0]
    assert 0 < killed_at < 120 and not out.exists()

    rerun = subprocess.run(train_command(data, config, out), env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{out}: 120 steps (resumed at step {killed_at})" in rerun.stderr.splitlines()[-1]
    done = subprocess.run(train_command(data, config, reference), env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert_same_outputs(out, reference, resumed_at=killed_at)


def test_adapter_phase_leaves_the_base_unchanged(data, tmp_path):
    run(data, tmp_path / "base", settings=settings(max_steps=4))
    run(data, tmp_path / "adapted", model=str(tmp_path / "base"), lang="toy",
        settings=settings(phase="adapter", max_steps=6, learning_rate=1e-2))  # fmt: skip
    before, after = weights(tmp_path / "base"), weights(tmp_path / "adapted")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    adapter_keys = set(load_file(str(tmp_path / "adapted" / "adapter.toy.safetensors")))
    assert changed and changed <= adapter_keys
    assert any(k.startswith("lm_head") for k in changed) and any("adapter_layer" in k for k in changed)


def test_lm_head_phase_trains_only_the_output_layer(data, tmp_path):
    run(data, tmp_path / "base", settings=settings(max_steps=2))
    run(data, tmp_path / "head", model=str(tmp_path / "base"), settings=settings(phase="lm_head", max_steps=4))
    before, after = weights(tmp_path / "base"), weights(tmp_path / "head")
    assert {k for k in before if not torch.equal(before[k], after[k])} == {"lm_head.weight", "lm_head.bias"}


def test_a_new_language_gets_its_own_vocabulary_and_head(data, tmp_path):
    from transformers import Wav2Vec2ForCTC

    run(data, tmp_path / "base", settings=settings(max_steps=2))
    texts = ["ab", "ba", "a b"]
    manifest = write_dataset(tmp_path / "new", texts, name="train.jsonl")
    train([manifest], tmp_path / "new_out", "new", settings(phase="adapter", max_steps=2), model=str(tmp_path / "base"),
          progress=False)  # fmt: skip
    vocab = json.loads((tmp_path / "new_out" / "vocab.json").read_text())
    assert set(vocab) == {"toy", "new"}
    assert sorted(vocab["new"], key=vocab["new"].get) == ["<pad>", "<s>", "</s>", "<unk>", "|", "a", "b"]
    model = Wav2Vec2ForCTC.from_pretrained(tmp_path / "new_out")
    model.load_adapter("new")
    assert model.lm_head.out_features == len(vocab["new"]) == 7
    head = load_file(str(tmp_path / "new_out" / "adapter.new.safetensors"))
    assert head["lm_head.weight"].shape == (7, 32)


def test_missing_manifest_is_one_clear_error(tmp_path, capsys):
    from tala.errors import run_cli

    missing = tmp_path / "nope.jsonl"
    assert run_cli(main, ["--train", str(missing), "--config", "c.json", "--lang", "x", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {missing}: manifest not found"


def test_missing_audio_names_the_manifest_line(data, tmp_path):
    manifest = tmp_path / "data" / "train.jsonl"
    lines = manifest.read_text().splitlines()
    record = json.loads(lines[2])
    record["audio"] = "clips/gone.wav"
    lines[2] = json.dumps(record)
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as caught:
        read_manifest(manifest)
    assert str(caught.value).startswith(f"{manifest}:3: audio file not found") and "gone.wav" in str(caught.value)


def test_character_outside_the_vocabulary_names_file_line_and_character(data, tmp_path):
    manifest = tmp_path / "data" / "train.jsonl"
    lines = manifest.read_text().splitlines()
    record = json.loads(lines[4])
    record["text"] = "ab cé"
    lines[4] = json.dumps(record, ensure_ascii=False)
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        run(data, tmp_path / "out")
    message = str(caught.value)
    assert message.startswith(f"{manifest}:5:") and "'é' (U+00E9)" in message and "'toy'" in message
    assert not (tmp_path / "out").exists()


def test_not_json_names_the_line(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio": "a.wav", "text": "a", "duration": 1.0}\nnot json\n')
    (tmp_path / "a.wav").write_bytes(b"")
    with pytest.raises(InputError, match=r"m\.jsonl:2: not JSON"):
        read_manifest(manifest)


def test_epoch_batches_are_seeded_complete_and_bounded():
    durations = list(np.random.default_rng(0).uniform(1, 20, 300))
    s = settings(batch_seconds=60.0, max_batch_size=8, max_duration_s=18.0)
    first = epoch_batches(durations, s, epoch=0)
    assert first == epoch_batches(durations, s, epoch=0)
    assert first != epoch_batches(durations, s, epoch=1)
    flat = sorted(i for batch in first for i in batch)
    assert flat == [i for i, d in enumerate(durations) if d <= 18.0]
    for batch in first:
        assert len(batch) <= 8 and (len(batch) == 1 or len(batch) * max(durations[i] for i in batch) <= 60.0)


def test_learning_rate_warms_up_then_decays():
    s = settings(max_steps=100, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    factors = [lr_factor(step, s) for step in range(100)]
    assert factors[0] < factors[5] < factors[9] <= 1.0
    assert factors[10] == pytest.approx(1.0) and factors[99] == pytest.approx(0.1, abs=0.01)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    linear = settings(max_steps=100, warmup_steps=0, schedule="linear")
    assert lr_factor(50, linear) == pytest.approx(0.5)


def test_greedy_decode_merges_repeats_and_drops_blanks():
    vocabulary = CtcVocabulary.from_token_ids(VOCAB)
    path = [0, 5, 5, 0, 5, 4, 4, 6, 0, 1, 7]  # a a | b <s> c -> "aa bc"
    logits = torch.nn.functional.one_hot(torch.tensor([path]), len(VOCAB)).float()
    assert greedy_batch(logits, [len(path)], vocabulary) == ["aa bc"]
    assert greedy_batch(logits, [3], vocabulary) == ["a"]


def test_word_times_are_read_and_a_wrong_count_names_the_line(tmp_path):
    manifest = tmp_path / "m.jsonl"
    (tmp_path / "a.wav").write_bytes(b"")
    manifest.write_text('{"audio": "a.wav", "text": "ab cd", "duration": 1.0, "word_times": [[0.1, 0.3], [0.4, 0.9]]}\n'
                        '{"audio": "a.wav", "text": "ab", "duration": 1.0}\n')
    first, second = read_manifest(manifest)
    assert first.word_times == ((0.1, 0.3), (0.4, 0.9)) and second.word_times is None
    manifest.write_text('{"audio": "a.wav", "text": "ab cd", "duration": 1.0, "word_times": [[0.1, 0.3]]}\n')
    with pytest.raises(InputError, match=r'm\.jsonl:1: "word_times" must be 2 \[start, end\] pairs'):
        read_manifest(manifest)
