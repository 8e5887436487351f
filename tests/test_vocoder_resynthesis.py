"""tala.vocoder.evaluate (test_vocoder): the held-out clips, the per-unit mean mel baseline, the four
systems side by side, a language without a test split, and foreign units."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from tala.vocoder.data import Corpus, load_recording
from tala.vocoder.evaluate import MEL_PER_UNIT, held_out_clips, unit_mean_mels
from tala.vocoder.mel import log_mel
from tala.vocoder.train import VocoderSettings, load_material, train
from test_vocoder_train import K, TINY, write_recording

DEMO_MODEL = REPO / "resources" / "demo" / "model"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """Three recordings (T held out for the test) and a vocoder trained a few steps on the others."""
    folder = tmp_path_factory.mktemp("resynthesis")
    recs = {"A": write_recording(folder, "A", [(0.2, 2.2), (2.6, 4.0)], 1),
            "B": write_recording(folder, "B", [(0.1, 1.9)], 2),
            "T": write_recording(folder, "T", [(0.3, 1.5), (1.8, 2.6)], 3)}  # fmt: skip
    (folder / "test.jsonl").write_text(json.dumps({"id": "t1", "recording": "T"}) + "\n", encoding="utf-8")
    (folder / "empty.jsonl").write_text("", encoding="utf-8")
    (folder / "kmeans.json").write_text(json.dumps({"k": K, "model": "toy", "layer": 1}), encoding="utf-8")
    material = load_material([r["units"] for r in recs.values()], [r["pitch"] for r in recs.values()],
                             [r["wav"] for r in recs.values()], folder / "kmeans.json", [], [folder / "test.jsonl"])  # fmt: skip
    settings = VocoderSettings(**{**TINY.__dict__, "epochs": 2})
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(folder / "vocoder", material, settings, progress=False)
    finally:
        torch.set_num_threads(threads)
    return {"folder": folder, "recs": recs}


def command(setup: dict, out: Path, test: str = "test.jsonl", *extra: str) -> list[str]:
    recs, folder = setup["recs"], setup["folder"]
    return [sys.executable, "-m", "tala.vocoder.evaluate", str(folder / "vocoder"), str(out),
            "--units", *[str(r["units"]) for r in recs.values()], "--pitch", *[str(r["pitch"]) for r in recs.values()],
            "--wavs", *[str(r["wav"]) for r in recs.values()], "--test", str(folder / test),
            "--model", str(DEMO_MODEL), "--lang", "smo", "--device", "cpu", *extra]  # fmt: skip


def run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


def test_every_system_is_scored_and_the_yardstick_beats_the_untrained_generator(setup, tmp_path):
    out, page = tmp_path / "test", tmp_path / "vocoder.html"
    done = run(command(setup, out, "test.jsonl", "--report", str(page)))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clips"] == 2 and metrics["recordings"] == ["T"]
    systems = metrics["systems"]
    assert sorted(systems) == ["true_mel_gl", "unit_mean_gl", "untrained", "vocoder"]
    for values in systems.values():
        assert np.isfinite(values["mcd_db"]) and values["length_ratio"] == 1.0
        assert values["cer"] is None or 0 <= values["cer"]
    assert systems["true_mel_gl"]["mcd_db"] < systems["untrained"]["mcd_db"]
    assert len(metrics["per_clip"]) == 2 * 4
    assert sorted(p.name for p in (out / "pairs").iterdir())[:5] == [
        "00_original.wav", "00_true_mel_gl.wav", "00_unit_mean_gl.wav", "00_untrained.wav", "00_vocoder.wav"]
    html = page.read_text()
    assert html.count("<audio") == 2 * 5 and "<svg" in html and "validation mel loss" in html
    assert "elapsed" not in (out / "metrics.json").read_text()


def test_a_language_without_test_recordings_says_so_and_succeeds(setup, tmp_path):
    out = tmp_path / "test"
    done = run(command(setup, out, "empty.jsonl", "--report", str(tmp_path / "page.html")))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clips"] == 0 and "not tested" in metrics["note"]
    assert list((out / "pairs").iterdir()) == []
    assert "not tested" in (tmp_path / "page.html").read_text()


def test_units_of_another_kmeans_are_one_clear_error(setup, tmp_path):
    bad = write_recording(tmp_path, "T", [(0.2, 1.4)], 9, k=K + 30)
    recs = {**setup["recs"], "T": bad}
    done = run(command({**setup, "recs": recs}, tmp_path / "out"))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad['units']}: unit id ")
    assert f"outside this vocoder's {K} units" in lines[0]
    assert not (tmp_path / "out").exists()


def test_unit_means_belong_to_the_unit_frames_two_mel_frames_each(tmp_path):
    rec = write_recording(tmp_path, "R", [(0.2, 1.2)], 5, k=4)
    units = json.loads(rec["units"].read_text())
    units["segments"][0]["units"] = [0] * 25 + [2] * 25
    rec["units"].write_text(json.dumps(units), encoding="utf-8")
    corpus = Corpus([load_recording(rec["units"], rec["pitch"], rec["wav"])])
    means = unit_mean_mels(corpus, 4)
    _, _, audio = corpus.window(0, 0, 50)
    mel = log_mel(audio)
    assert MEL_PER_UNIT == 2
    assert np.allclose(means[0], mel[:, :50].mean(1), atol=1e-4)
    assert np.allclose(means[2], mel[:, 50:100].mean(1), atol=1e-4)
    # Units never seen get the mean of every frame.
    assert np.allclose(means[1], mel[:, :100].mean(1), atol=1e-4) and np.allclose(means[3], means[1])
    clips = held_out_clips(corpus, max_clips=5, max_clip_s=0.5)
    assert len(clips) == 1 and len(clips[0].units) == 25 and len(clips[0].audio) == 25 * 320
