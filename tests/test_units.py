"""The unit steps (tala.units.fit_kmeans / quantize / collect / score) on real features of the demo model.

Audio: two short synthesized recordings (espeak-ng when installed, else tones), 16 kHz WAVs with a
segments TSV each, in a temporary folder; the feature model is the demo's own (4 blocks, 192 dims)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, sigkill_when
from tala.errors import InputError
from tala.units import collect, fit_kmeans, quantize
from tala.units.features import FeatureModel, read_segments
from tala.units.kmeans import StreamingKMeans

MODEL = REPO / "resources" / "demo" / "model"
LAYER = 3


def write_wav(path: Path, samples: np.ndarray) -> None:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(pcm.tobytes())


def speechlike(seed: int, seconds: float) -> np.ndarray:
    """Voiced bursts with changing formant-like tones and pauses: enough structure for a k-means."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 110 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    source = sum(np.sin(h * phase) / h for h in range(1, 12))
    formant = np.sin(2 * np.pi * (500 + 400 * np.sign(np.sin(2 * np.pi * 3 * t))) * t)
    envelope = (np.sin(2 * np.pi * 0.5 * t) > -0.3).astype(float)
    return 0.3 * envelope * (0.6 * source / 3 + 0.3 * formant) + 0.01 * rng.standard_normal(len(t))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("units")
    recs = {}
    for i, name in enumerate(["A_001", "B_002"]):
        wav, tsv = root / f"{name}.wav", root / f"{name}.tsv"
        write_wav(wav, speechlike(i, 12.0))
        tsv.write_text("start\tend\tlevel_db\n0.100\t4.000\t-20.0\n4.500\t8.200\t-20.0\n8.600\t11.900\t-20.0\n")
        recs[name] = (wav, tsv)
    silent_wav, silent_tsv = root / "C_003.wav", root / "C_003.tsv"
    write_wav(silent_wav, np.zeros(16000))
    silent_tsv.write_text("start\tend\tlevel_db\n")
    recs["C_003"] = (silent_wav, silent_tsv)
    return root, recs


@pytest.fixture(scope="module")
def model():
    return FeatureModel(str(MODEL), LAYER, device="cpu")


def fit_args(root: Path, recs: dict, out: str, *extra: str) -> list[str]:
    wavs = [str(w) for w, _ in recs.values()]
    tsvs = [str(t) for _, t in recs.values()]
    return [str(root / out / "kmeans.npy"), str(root / out / "kmeans.json"), "--language", "testlang",
            "--wavs", *wavs, "--segments", *tsvs, "--model", str(MODEL), "--layer", str(LAYER), "--k", "8",
            "--passes", "2", "--batch-frames", "300", "--device", "cpu", *extra]


def test_two_clean_runs_give_identical_centroids_and_units(corpus):
    root, recs = corpus
    for out in ("run1", "run2"):
        assert fit_kmeans.main(fit_args(root, recs, out)) == 0
        for name, (wav, tsv) in recs.items():
            assert quantize.main([str(wav), str(tsv), str(root / out / "kmeans.npy"), str(root / out / f"{name}.json"),
                                  "--model", str(MODEL), "--layer", str(LAYER), "--device", "cpu"]) == 0
    for name in ["kmeans.npy", "kmeans.json", *(f"{n}.json" for n in recs)]:
        assert (root / "run1" / name).read_bytes() == (root / "run2" / name).read_bytes(), name
    centroids = np.load(root / "run1" / "kmeans.npy", allow_pickle=False)
    assert centroids.dtype == np.float32 and centroids.shape == (8, 192)
    record = json.loads((root / "run1" / "kmeans.json").read_text())
    assert record["k"] == 8 and record["layer"] == LAYER and record["frames"] > 1000 and record["segments"] == 6
    assert not (root / "run1" / fit_kmeans.CHECKPOINT_NAME).exists(), "the checkpoint is removed at the end"
    units = json.loads((root / "run1" / "A_001.json").read_text())
    assert units["frame_s"] == 0.02 and len(units["segments"]) == 3
    first = units["segments"][0]
    assert len(first["units"]) == int((3.9 * 16000 - 400) // 320 + 1)  # the wav2vec2 frame count
    assert set(first["units"]) <= set(range(8)) and len(set(first["units"])) > 1


def test_a_recording_without_speech_has_no_units(corpus):
    root, recs = corpus
    wav, tsv = recs["C_003"]
    fit_kmeans.main(fit_args(root, {k: v for k, v in recs.items() if k != "C_003"}, "nospeech"))
    out = root / "nospeech" / "C_003.json"
    assert quantize.main([str(wav), str(tsv), str(root / "nospeech" / "kmeans.npy"), str(out), "--model", str(MODEL),
                          "--layer", str(LAYER), "--device", "cpu"]) == 0
    record = json.loads(out.read_text())
    assert record["segments"] == [] and record["frames"] == 0


def test_fit_resumes_after_a_kill_with_the_same_centroids(corpus):
    root, recs = corpus
    fit_kmeans.main(fit_args(root, recs, "whole"))
    out = root / "killed"
    checkpoint = out / fit_kmeans.CHECKPOINT_NAME
    env = dict(os.environ, PYTHONPATH=str(REPO / "scripts"))
    command = [sys.executable, "-m", "tala.units.fit_kmeans", *fit_args(root, recs, "killed", "--checkpoint-s", "0")]
    # Killed after the first checkpoint of the second pass: resuming must redo nothing twice.
    sigkill_when(command, env, lambda: checkpoint.is_file() and _position(checkpoint) >= (1, 2))
    assert not (out / "kmeans.npy").exists()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "resuming pass 2/2" in proc.stderr
    assert (out / "kmeans.npy").read_bytes() == (root / "whole" / "kmeans.npy").read_bytes()


def _position(path: Path) -> tuple[int, int]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return tuple(int(v) for v in data["fit.position"])
    except (OSError, ValueError, KeyError, EOFError):
        return (-1, -1)


def test_more_clusters_than_frames_is_one_error_naming_the_language(corpus, capsys):
    root, recs = corpus
    args = fit_args(root, {"A_001": recs["A_001"]}, "toomany")
    args[args.index("--k") + 1] = "5000"
    with pytest.raises(InputError, match=r"^testlang: units.k = 5000: .*frames"):
        fit_kmeans.main(args)


def test_centroids_of_another_dimension_are_one_error(corpus, tmp_path):
    root, recs = corpus
    wrong = tmp_path / "shared.npy"
    np.save(wrong, np.zeros((8, 1024), np.float32))
    with pytest.raises(InputError, match=r"dimension 1024, but layer 3 of .* gives 192"):
        fit_kmeans.main(fit_args(root, recs, "shared", "--centroids", str(wrong)))
    right = tmp_path / "right.npy"
    np.save(right, np.random.default_rng(0).standard_normal((8, 192)).astype(np.float32))
    assert fit_kmeans.main(fit_args(root, recs, "shared", "--centroids", str(right))) == 0
    assert (root / "shared" / "kmeans.npy").read_bytes() == right.read_bytes()


def test_a_layer_the_model_lacks_is_one_error():
    from tala.hub import ModelError

    with pytest.raises(ModelError, match=r"units.layer 14: layer 14 does not exist: the model has transformer "
                                         r"blocks 1..4"):
        FeatureModel(str(MODEL), 14, device="cpu")


def test_sample_is_seeded_and_bounded():
    from tala.units.features import Segment

    segments = [Segment(f"R{i // 10}", i * 10.0, i * 10.0 + 9.0) for i in range(400)]  # 1 h of speech
    everything = fit_kmeans.sample_segments(segments, 2.0, 0)
    assert everything == segments
    half = fit_kmeans.sample_segments(segments, 0.5, 0)
    assert half == fit_kmeans.sample_segments(segments, 0.5, 0) != fit_kmeans.sample_segments(segments, 0.5, 1)
    assert 0.5 * 3600 <= sum(s.duration for s in half) < 0.5 * 3600 + 9.0
    assert half == sorted(half, key=segments.index), "read in recording order"


def test_features_stream_into_the_same_kmeans_as_in_memory(corpus, model):
    """fit() over segments equals StreamingKMeans fed the same features at once (chunking does not matter)."""
    root, recs = corpus
    sample = [s for name in ("A_001", "B_002") for s in read_segments(recs[name][1], name)]
    wavs = {name: recs[name][0] for name in recs}
    streamed = fit_kmeans.fit(model, sample, wavs, k=8, passes=2, seed=0, batch_frames=300, checkpoint=None)
    from tala.units.features import segment_features

    features = np.concatenate([f for name in ("A_001", "B_002")
                               for _, f in segment_features(model, wavs[name], read_segments(recs[name][1], name))])
    at_once = StreamingKMeans(8, 192, seed=0, batch_frames=300)
    for _ in range(2):
        at_once.add(features)
        at_once.end_pass()
    assert np.array_equal(streamed.centroids, at_once.centroids)


def test_collect_writes_the_timestamped_corpus_and_the_bpe_text(tmp_path):
    units = tmp_path / "R1.json"
    units.write_text(json.dumps({"recording": "R1", "frame_s": 0.02, "segments": [
        {"start": 1.0, "end": 1.2, "units": [3, 3, 3, 7, 7, 1]}, {"start": 2.0, "end": 2.01, "units": []}]}))
    empty = tmp_path / "R2.json"
    empty.write_text(json.dumps({"recording": "R2", "frame_s": 0.02, "segments": []}))
    out_jsonl, out_txt = tmp_path / "c.jsonl", tmp_path / "u.txt"
    assert collect.main([str(out_jsonl), str(out_txt), "--units", str(units), str(empty)]) == 0
    assert out_txt.read_text() == "3 3 3 7 7 1\n"
    line = json.loads(out_jsonl.read_text())
    assert line["units"] == [3, 3, 3, 7, 7, 1] and line["frames"] == [1] * 6 and line["times"][3] == 1.06
    assert collect.main([str(out_jsonl), str(out_txt), "--units", str(units), "--dedup"]) == 0
    line = json.loads(out_jsonl.read_text())
    assert line == {"recording": "R1", "start": 1.0, "end": 1.2, "units": [3, 7, 1], "times": [1.0, 1.06, 1.1],
                    "frames": [3, 2, 1]}
    assert out_txt.read_text() == "3 3 3 7 7 1\n", "the BPE text is never deduplicated"


@pytest.mark.parametrize("step", ["fit_kmeans", "quantize", "collect", "score", "train_bpe"])
def test_help(step):
    import importlib

    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(f"tala.units.{step}").main(["--help"])
    assert exit_.value.code == 0
