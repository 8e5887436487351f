"""tala.vocoder: pitch on the units' grid, the training windows, train_vocoder's resume after a
SIGKILL, its bad inputs (foreign units, too little audio, a loss that diverges) and synthesize."""

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

from conftest import REPO, sigkill_when
from tala.errors import InputError
from tala.training import checkpoint_dirs
from tala.vocoder.data import WindowSampler, load_recording
from tala.vocoder.pitch import recording_pitch, track_f0
from tala.vocoder.train import Material, VocoderSettings, cpu_budget_warning, load_material, train

RATE = 16_000
K = 12


def glide(seconds: float, f0_from: float, f0_to: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A vowel-like harmonic signal whose F0 glides, and its F0 per sample."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = f0_from + (f0_to - f0_from) * t / seconds
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    audio = sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.1
    audio += 0.002 * np.random.default_rng(seed).standard_normal(len(t))
    return audio.astype(np.float32), f0


def write_recording(folder: Path, name: str, segments: list[tuple[float, float]], seed: int,
                    k: int = K) -> dict[str, Path]:
    """A WAV with speech-like glides in ``segments`` (silence between), its units file (random ids,
    as tala.units.quantize writes it) and its pitch (as extract_pitch writes it)."""
    rng = np.random.default_rng(seed)
    total = max(end for _, end in segments) + 0.3
    audio = np.zeros(int(total * RATE), dtype=np.float32)
    records = []
    for start, end in segments:
        part, _ = glide(end - start, 90 + 40 * rng.random(), 110 + 40 * rng.random(), seed)
        audio[int(start * RATE) : int(start * RATE) + len(part)] = part
        frames = int(round((end - start) / 0.02))
        records.append({"start": start, "end": end, "units": rng.integers(0, k, frames).tolist()})
    paths = {"wav": folder / "audio" / f"{name}.wav", "units": folder / "units" / f"{name}.json",
             "pitch": folder / "pitch" / f"{name}.npy"}  # fmt: skip
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(paths["wav"], audio, RATE, subtype="PCM_16")
    units = {"recording": name, "audio": str(paths["wav"]), "frame_s": 0.02, "units_per_s": 50, "k": k,
             "frames": sum(len(r["units"]) for r in records), "segments": records}  # fmt: skip
    paths["units"].write_text(json.dumps(units), encoding="utf-8")
    np.save(paths["pitch"], recording_pitch(paths["wav"], units))
    return paths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """Three recordings: two to train on, one for validation (named in valid.jsonl)."""
    folder = tmp_path_factory.mktemp("vocoder_corpus")
    recs = {"A": write_recording(folder, "A", [(0.2, 2.2), (2.6, 4.0)], 1),
            "B": write_recording(folder, "B", [(0.1, 1.9)], 2),
            "V": write_recording(folder, "V", [(0.3, 2.5)], 3)}  # fmt: skip
    (folder / "valid.jsonl").write_text(json.dumps({"id": "v1", "recording": "V"}) + "\n", encoding="utf-8")
    (folder / "test.jsonl").write_text("", encoding="utf-8")
    (folder / "kmeans.json").write_text(json.dumps({"k": K, "model": "toy", "layer": 1}), encoding="utf-8")
    return {"folder": folder, "recs": recs}


def material_of(corpus: dict) -> Material:
    recs, folder = corpus["recs"], corpus["folder"]
    return load_material([r["units"] for r in recs.values()], [r["pitch"] for r in recs.values()],
                         [r["wav"] for r in recs.values()], folder / "kmeans.json", [folder / "valid.jsonl"],
                         [folder / "test.jsonl"])  # fmt: skip


TINY = VocoderSettings(epochs=4, batch_size=4, samples_per_epoch=16, save_every=1, mel_only_epochs=4, lr=1e-3, harmonic_head=8,
                       channels=32, embed_dim=16, resblock_kernels=(3,), pitch_bins=16, valid_windows=2,
                       valid_s=1.0, log_every=2, patience=0, keep_checkpoints=2, device="cpu")  # fmt: skip


def test_praat_pitch_follows_a_glide_on_the_units_grid():
    audio, f0 = glide(2.0, 100.0, 160.0)
    tracked = track_f0(audio)
    assert len(tracked) == 100
    truth = f0[((np.arange(100) + 0.5) * 320).astype(int)]
    inner = slice(3, -3)
    assert np.all(tracked[inner] > 0)
    assert np.max(np.abs(tracked[inner] / truth[inner] - 1)) < 0.01
    assert np.all(track_f0(np.zeros(RATE, dtype=np.float32)) == 0)


def test_extract_pitch_cli_writes_one_value_per_unit_frame(corpus, tmp_path):
    rec = corpus["recs"]["A"]
    out = tmp_path / "A.npy"
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    done = subprocess.run([sys.executable, "-m", "tala.vocoder.pitch", str(rec["wav"]), str(rec["units"]), str(out)],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    pitch = np.load(out)
    frames = json.loads(rec["units"].read_text())["frames"]
    assert pitch.dtype == np.float32 and len(pitch) == frames
    voiced = pitch[pitch > 0]
    assert len(voiced) > 0.8 * frames and 85 < np.median(voiced) < 160
    assert not list(tmp_path.glob(".*part"))


def test_windows_are_a_pure_function_of_the_epoch_and_stay_inside_segments(corpus):
    material = material_of(corpus)
    assert [r.name for r in material.train.recordings] == ["A", "B"]
    assert [r.name for r in material.valid.recordings] == ["V"]
    lengths = tuple(s.frames for s in material.train.segments)
    sampler = WindowSampler(lengths, 50, 40, 4, seed=7)
    assert sampler.batches(3) == sampler.batches(3) and sampler.batches(3) != sampler.batches(4)
    assert len(sampler.batches(0)) == 10 and all(len(b) == 4 for b in sampler.batches(0))
    for segment, offset in sampler.decode([i for b in sampler.batches(0) for i in b]):
        assert lengths[segment] >= 50 and 0 <= offset <= lengths[segment] - 50
    batch = material.train.batch(sampler.decode(sampler.batches(0)[0]), 50)
    assert batch.units.shape == (4, 50) and batch.pitch.shape == (4, 50) and batch.audio.shape == (4, 1, 16_000)
    # The window's audio is the recording's samples under its units.
    segment, offset = sampler.decode(sampler.batches(0)[0][:1])[0]
    seg = material.train.segments[segment]
    wav, _ = sf.read(material.train.recordings[seg.recording].wav, dtype="float32")
    first = seg.start_sample + offset * 320
    assert np.allclose(batch.audio[0, 0].numpy(), wav[first : first + 16_000])


def test_training_lowers_the_validation_loss_and_writes_the_outputs(corpus, tmp_path, one_torch_thread):
    out = tmp_path / "vocoder"
    summary = train(out, material_of(corpus), TINY, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "generator.safetensors", "samples",
                                                     "training_log.json"]  # fmt: skip
    log = json.loads((out / "training_log.json").read_text())
    evals = [r["eval_mel_loss"] for r in log if "eval_mel_loss" in r]
    assert len(evals) == 4 and min(evals[1:]) < evals[0]
    assert summary["steps"] == 16 and summary["best"]["step"] in (4, 8, 12, 16)
    config = json.loads((out / "config.json").read_text())
    assert config["generator"]["n_units"] == K and config["units"]["k"] == K
    assert sorted(p.name for p in (out / "samples").glob("*.wav")) == ["00_original.wav", "00_synth.wav",
                                                                        "01_original.wav", "01_synth.wav"]  # fmt: skip
    assert len(list((out / "samples" / "training").glob("sample_step_*.wav"))) == 4
    assert not (tmp_path / "vocoder.checkpoints").exists()


def test_the_discriminators_join_after_the_mel_only_epochs(corpus, tmp_path, one_torch_thread):
    # One step an epoch, of two windows: a step with HiFi-GAN's discriminators (70 M parameters)
    # takes ~20 s on one CPU thread.
    tiny = {"epochs": 2, "mel_only_epochs": 1, "samples_per_epoch": 2, "batch_size": 2, "log_every": 1}
    settings = VocoderSettings(**{**TINY.__dict__, **tiny})
    train(tmp_path / "gan", material_of(corpus), settings, progress=False)
    log = json.loads((tmp_path / "gan" / "training_log.json").read_text())
    lines = [r for r in log if "mel_loss" in r]
    assert [r["step"] for r in lines] == [1, 2]
    assert "d_loss" not in lines[0] and {"d_loss", "adv_loss", "fm_loss"} <= lines[1].keys()
    start = next(r for r in log if r.get("event") == "start")
    assert start["discriminator_parameters"] > 0


def train_command(corpus: dict, out: Path) -> list[str]:
    recs, folder = corpus["recs"], corpus["folder"]
    return [sys.executable, "-m", "tala.vocoder.train", str(out),
            "--units", *[str(r["units"]) for r in recs.values()], "--pitch", *[str(r["pitch"]) for r in recs.values()],
            "--wavs", *[str(r["wav"]) for r in recs.values()], "--kmeans", str(folder / "kmeans.json"),
            "--valid", str(folder / "valid.jsonl"), "--test", str(folder / "test.jsonl"),
            "--epochs", "12", "--batch-size", "4", "--samples-per-epoch", "8", "--save-every", "2",
            "--mel-only-epochs", "12", "--lr", "1e-3", "--channels", "32", "--embed-dim", "16",
            "--resblock-kernels", "3", "--harmonic-head", "8", "--pitch-bins", "16", "--valid-windows", "2", "--valid-s", "1.0",
            "--log-every", "3", "--patience", "0", "--device", "cpu", "--no-progress"]  # fmt: skip


TIMING = {"elapsed_s", "steps_per_s", "audio_s_per_s"}


def comparable_log(out: Path) -> tuple[list[dict], list[dict]]:
    records = json.loads((out / "training_log.json").read_text())
    resumes = [r for r in records if r.get("event") == "resume"]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records if r not in resumes], resumes


@pytest.mark.slow
def test_sigkill_then_rerun_continues_from_the_last_save_and_ends_where_an_uninterrupted_run_does(corpus, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts"), "OMP_NUM_THREADS": "1"}
    out, reference = tmp_path / "out", tmp_path / "reference"
    checkpoints = tmp_path / "out.checkpoints"

    def past_a_checkpoint() -> bool:
        found = checkpoint_dirs(checkpoints)
        return bool(found) and found[-1][0] >= 4

    stderr = sigkill_when(train_command(corpus, out), env, past_a_checkpoint, timeout_s=120)
    found = checkpoint_dirs(checkpoints)
    assert found, stderr
    killed_at = found[-1][0]
    assert 4 <= killed_at < 24 and killed_at % 4 == 0 and not out.exists()

    rerun = subprocess.run(train_command(corpus, out), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"24 steps (resumed at step {killed_at})" in rerun.stderr.splitlines()[-1]
    done = subprocess.run(train_command(corpus, reference), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "generator.safetensors").read_bytes() == (reference / "generator.safetensors").read_bytes()
    resumed_log, resumes = comparable_log(out)
    reference_log, none = comparable_log(reference)
    assert [r["step"] for r in resumes] == [killed_at] and not none
    assert resumed_log == reference_log


def test_units_of_another_kmeans_are_one_clear_error(corpus, tmp_path):
    recs = corpus["recs"]
    small = tmp_path / "kmeans.json"
    small.write_text(json.dumps({"k": 5}), encoding="utf-8")
    with pytest.raises(InputError, match=r"unit id \d+ is outside the generator's 5 units") as err:
        load_material([r["units"] for r in recs.values()], [r["pitch"] for r in recs.values()],
                      [r["wav"] for r in recs.values()], small, [], [])  # fmt: skip
    assert err.value.path.endswith(".json") and "units" in err.value.path


def test_pitch_of_another_units_file_is_one_clear_error(corpus):
    a, b = corpus["recs"]["A"], corpus["recs"]["B"]
    with pytest.raises(InputError, match="rerun extract_pitch"):
        load_recording(a["units"], b["pitch"], a["wav"])


def test_less_audio_than_one_batch_is_one_clear_error(tmp_path):
    rec = write_recording(tmp_path, "short", [(0.1, 0.6)], 4)
    (tmp_path / "kmeans.json").write_text(json.dumps({"k": K}), encoding="utf-8")
    material = load_material([rec["units"]], [rec["pitch"]], [rec["wav"]], tmp_path / "kmeans.json", [], [])
    with pytest.raises(InputError, match="too little audio for one batch"):
        train(tmp_path / "out", material, TINY, progress=False)
    rec = write_recording(tmp_path, "one", [(0.1, 1.12)], 5)
    material = load_material([rec["units"]], [rec["pitch"]], [rec["wav"]], tmp_path / "kmeans.json", [], [])
    with pytest.raises(InputError, match="fewer than one batch of 4"):
        train(tmp_path / "out", material, TINY, progress=False)


def test_a_loss_that_is_not_finite_stops_training_naming_the_step_and_keeps_the_best(corpus, tmp_path,
                                                                                     one_torch_thread):
    out = tmp_path / "vocoder"
    best_files = {}

    def poison_after_step_8(step, result):
        if step == 8:
            folder = checkpoint_dirs(tmp_path / "vocoder.checkpoints")[-1][1]
            best_files.update({p.name: p.read_bytes() for p in folder.iterdir()})
            with torch.no_grad():
                for p in generator_params:
                    p.fill_(float("nan"))

    generator_params = []
    import tala.vocoder.train as vocoder_train

    original = vocoder_train.build_generator

    def capture(*args, **kwargs):
        generator, notes = original(*args, **kwargs)
        generator_params.extend(generator.parameters())
        return generator, notes

    vocoder_train.build_generator = capture
    try:
        with pytest.raises(InputError, match=r"loss is not finite at step 9.*step-000008") as err:
            train(out, material_of(corpus), TINY, progress=False, on_step=poison_after_step_8)
    finally:
        vocoder_train.build_generator = original
    assert "lower vocoder.lr" in str(err.value)
    assert not out.exists()
    found = checkpoint_dirs(tmp_path / "vocoder.checkpoints")
    assert found[-1][0] == 8
    assert {p.name: p.read_bytes() for p in found[-1][1].iterdir()} == best_files


def test_synthesize_cli_from_a_unit_line_with_a_flat_or_given_contour(corpus, tmp_path, one_torch_thread):
    out = tmp_path / "vocoder"
    train(out, material_of(corpus), VocoderSettings(**{**TINY.__dict__, "epochs": 1}), progress=False)
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    line = tmp_path / "units.txt"
    line.write_text(" ".join(str(i % K) for i in range(60)) + "\n", encoding="utf-8")
    wav = tmp_path / "flat.wav"
    done = subprocess.run([sys.executable, "-m", "tala.vocoder.synthesize", str(out), str(line), str(wav)],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    audio, rate = sf.read(wav)
    assert rate == RATE and len(audio) == 60 * 320
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 99\n", encoding="utf-8")
    failed = subprocess.run([sys.executable, "-m", "tala.vocoder.synthesize", str(out), str(bad), str(wav)],
                            env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        f"error: {bad}: unit id 99 is outside this vocoder's {K} units "
        f"(units of another k-means? the vocoder's: {{'model': 'toy', 'layer': 1, 'k': {K}}})"]


def test_pitch_shift_moves_the_pitch_keeps_the_length_and_repeats_with_its_seed():
    from tala.vocoder.data import shift_pitch

    audio, _ = glide(1.0, 110.0, 120.0)
    pitch = track_f0(audio)
    shifted, new_pitch = shift_pitch(audio, pitch, 1.4, seed=3)
    assert len(shifted) == len(audio) and np.array_equal(new_pitch > 0, pitch > 0)
    tracked = track_f0(shifted)
    both = (tracked > 0) & (pitch > 0)
    assert both.mean() > 0.8
    assert abs(np.median(tracked[both] / pitch[both]) - 1.4) < 0.05
    assert np.allclose(new_pitch[pitch > 0], 1.4 * pitch[pitch > 0])
    again, _ = shift_pitch(audio, pitch, 1.4, seed=3)
    assert np.array_equal(again, shifted)


def test_init_from_another_vocoder_loads_every_weight_that_fits(corpus, tmp_path, one_torch_thread):
    from safetensors.torch import load_file

    first = tmp_path / "first"
    train(first, material_of(corpus), VocoderSettings(**{**TINY.__dict__, "epochs": 1}), progress=False)
    # Another language: units of a k-means with more clusters, the same architecture.
    recs = {name: write_recording(tmp_path / "other", name, [(0.2, 2.4)], seed, k=K + 8)
            for name, seed in (("C", 11), ("D", 12))}  # fmt: skip
    (tmp_path / "other" / "kmeans.json").write_text(json.dumps({"k": K + 8}), encoding="utf-8")
    material = load_material([r["units"] for r in recs.values()], [r["pitch"] for r in recs.values()],
                             [r["wav"] for r in recs.values()], tmp_path / "other" / "kmeans.json", [], [])  # fmt: skip
    second = tmp_path / "second"
    summary = train(second, material, VocoderSettings(**{**TINY.__dict__, "epochs": 1, "lr": 1e-12}),
                    init_from=first, progress=False)  # fmt: skip
    assert summary["init_from"] == str(first) and summary["weights_drawn"] == ["unit_embedding.weight"]
    before, after = load_file(str(first / "generator.safetensors")), load_file(str(second / "generator.safetensors"))
    assert after["unit_embedding.weight"].shape[0] == K + 8
    same = [name for name in before if name != "unit_embedding.weight" and torch.allclose(before[name], after[name],
                                                                                            atol=1e-6)]  # fmt: skip
    assert len(same) == len(before) - 1
    with pytest.raises(InputError, match="not a vocoder folder"):
        train(tmp_path / "third", material, TINY, init_from=tmp_path / "nothing", progress=False)


def test_a_gpu_budget_on_the_cpu_is_one_warning_line():
    """config/config.yaml's budget (the seed's: 500 epochs of 10,000 windows) on a CPU is said up
    front; the demo's and the long recipe's budgets, or any budget on a GPU, are not."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    seed_budget = VocoderSettings(epochs=500, samples_per_epoch=10_000, batch_size=16, mel_only_epochs=0)
    line = cpu_budget_warning(seed_budget, cpu)
    assert line.startswith("warning: 312,500 training steps on the CPU, the discriminators from step 0")
    assert "\n" not in line and "config/demo.yaml" in line
    assert cpu_budget_warning(seed_budget, cuda) is None
    demo = VocoderSettings(epochs=4, samples_per_epoch=800, batch_size=8, mel_only_epochs=4)
    long_recipe = VocoderSettings(epochs=80, samples_per_epoch=800, batch_size=8, mel_only_epochs=80)
    assert demo.max_steps == 400 and long_recipe.max_steps == 8000
    assert cpu_budget_warning(demo, cpu) is None and cpu_budget_warning(long_recipe, cpu) is None
    mel_only = VocoderSettings(epochs=500, samples_per_epoch=10_000, batch_size=16, mel_only_epochs=500)
    assert "discriminators" not in cpu_budget_warning(mel_only, cpu)
