"""tala.vocoder.evaluate (test_vocoder): held-out clips resynthesized by the vocoder, the untrained
generator and the two Griffin-Lim references, scored and written; nothing held out is no error; bad
inputs are one clear line; the unit means are what they should be.

The material is real Samoan speech (the demo's PSA_121) with random unit ids: the recognizer then
has something to transcribe, and the systems' spectra something to miss."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from conftest import REPO
from tala.errors import InputError
from tala.models.vocoder import GeneratorV2, GeneratorV2Config
from tala.vocoder import evaluate
from tala.vocoder.data import Corpus, Recording
from tala.vocoder.evaluate import UnitMelMeans, unit_mean_segments, untrained_twin
from tala.vocoder.mel import MEL
from tala.vocoder.pitch import recording_pitch
from tala.vocoder.synthesize import Vocoder

RATE = 16_000
K = 12
MODEL = REPO / "resources" / "demo" / "model"
SPEECH = REPO / "resources" / "demo" / "samoan" / "audio" / "PSA_121.wav"


def write_recording(folder: Path, name: str, audio: np.ndarray, segments: list[tuple[float, float]],
                    seed: int) -> dict[str, Path]:
    """A 16 kHz WAV, its units file (random ids, as tala.units.quantize writes it) and its pitch
    (as extract_pitch writes it)."""
    rng = np.random.default_rng(seed)
    paths = {"wav": folder / "audio" / f"{name}.wav", "units": folder / "units" / f"{name}.json",
             "pitch": folder / "pitch" / f"{name}.npy"}  # fmt: skip
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(paths["wav"], audio, RATE, subtype="PCM_16")
    records = [{"start": start, "end": end, "units": rng.integers(0, K, int(round((end - start) / 0.02))).tolist()}
               for start, end in segments]  # fmt: skip
    units = {"recording": name, "frame_s": 0.02, "units_per_s": 50, "k": K,
             "frames": sum(len(r["units"]) for r in records), "segments": records}  # fmt: skip
    paths["units"].write_text(json.dumps(units), encoding="utf-8")
    np.save(paths["pitch"], recording_pitch(paths["wav"], units))
    return paths


def write_vocoder(folder: Path, weights_seed: int, settings_seed: int = 0) -> Path:
    """A train_vocoder-shaped folder with a tiny generator (weights drawn with ``weights_seed``)."""
    from safetensors.torch import save_model

    folder.mkdir(parents=True)
    config = GeneratorV2Config(n_units=K, embed_dim=32, channels=32, resblock_kernels=(3,),
                               resblock_dilations=((1, 3, 5),))  # fmt: skip
    torch.manual_seed(weights_seed)
    save_model(GeneratorV2(config), str(folder / "generator.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "generator": config.to_dict(), "mel": MEL.to_dict(), "units": {"model": "toy", "layer": 1, "k": K},
        "training": {"settings": {"seed": settings_seed}, "median_f0": 110.0, "held_out": ["T"]},
    }), encoding="utf-8")  # fmt: skip
    log = [{"step": 0, "event": "start"}, {"step": 25, "epoch": 0, "mel_loss": 60.0},
           {"step": 50, "eval_mel_loss": 40.0}, {"step": 75, "epoch": 1, "mel_loss": 35.0, "d_loss": 2.4},
           {"step": 100, "epoch": 1, "mel_loss": 30.0, "d_loss": 2.1}, {"step": 100, "eval_mel_loss": 31.0}]
    (folder / "training_log.json").write_text(json.dumps(log), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def material(tmp_path_factory) -> dict:
    """Held-out recording T (a speech segment, one too short to judge, another speech segment, then
    one of digital silence) and training recording A (two segments and one of a single frame, too
    short for the log-mel), a test.jsonl naming T, and a tiny vocoder."""
    folder = tmp_path_factory.mktemp("vocoder_eval")
    speech, rate = sf.read(str(SPEECH), dtype="float32")
    speech = soxr.resample(speech, rate, RATE)
    held = np.concatenate([speech[: 7 * RATE], np.zeros(2 * RATE, dtype=np.float32)])
    recs = {"T": write_recording(folder, "T", held, [(0.95, 3.25), (3.5, 3.8), (4.52, 6.9), (7.3, 8.3)], 1),
            "A": write_recording(folder, "A", speech[9 * RATE : 23 * RATE], [(0.17, 9.0), (9.55, 13.8), (13.9, 13.92)],
                                 2)}  # fmt: skip
    (folder / "test.jsonl").write_text(json.dumps({"id": "T_1", "audio": "clips/T_1.wav", "recording": "T"}) + "\n",
                                       encoding="utf-8")  # fmt: skip
    (folder / "empty.jsonl").write_text("", encoding="utf-8")
    return {"folder": folder, "recs": recs, "vocoder": write_vocoder(folder / "vocoder", weights_seed=7)}


def cli_args(material: dict, out: Path, test: str = "test.jsonl", units: dict | None = None) -> list[str]:
    recs = material["recs"]
    units = units or {name: paths["units"] for name, paths in recs.items()}
    return [str(material["vocoder"]), str(out), "--units", *map(str, units.values()),
            "--pitch", *(str(p["pitch"]) for p in recs.values()), "--wavs", *(str(p["wav"]) for p in recs.values()),
            "--test", str(material["folder"] / test), "--model", str(MODEL), "--lang", "smo", "--device", "cpu",
            "--max-clip-s", "2", "--report", str(out / "vocoder.html")]  # fmt: skip


def test_held_out_clips_are_resynthesized_by_four_systems_and_scored(material, tmp_path, one_torch_thread):
    out = tmp_path / "test"
    assert evaluate.main(cli_args(material, out)) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["clips"] == 3 and metrics["recordings"] == ["T"]
    rows = {(row["system"], row["clip"]): row for row in metrics["per_clip"]}
    assert len(rows) == len(metrics["per_clip"]) == 4 * 3
    vocoder_rows = [row for row in metrics["per_clip"] if row["system"] == "vocoder"]
    assert [row["clip"] for row in vocoder_rows] == ["T_000", "T_002", "T_003"]  # T_001: 0.3 s, passed over
    assert [row["seconds"] for row in vocoder_rows] == [2.0, 2.0, 1.0]  # cut to --max-clip-s
    # The means never see the held-out recording; A's one-frame segment is too short for the log-mel.
    assert metrics["unit_means"]["recordings"] == ["A"] and metrics["unit_means"]["segments"] == 2
    systems = metrics["systems"]
    assert set(systems) == set(evaluate.SYSTEMS)
    for name, values in systems.items():
        assert math.isfinite(values["mcd_db"]) and values["mcd_db"] > 0, (name, values)
        assert values["length_ratio"] == 1.0, (name, values)
        for clip in ("T_000", "T_002", "T_003"):
            assert set(evaluate.METRICS) | {"cer", "transcript", "original_transcript"} <= set(rows[name, clip])
    assert systems["true_mel_gl"]["mcd_db"] < systems["untrained"]["mcd_db"]
    # The recognizer hears the speech in the original's own spectrum far better than in noise.
    yard, floor = systems["true_mel_gl"], systems["untrained"]
    assert yard["cer"] is not None and yard["cer"] < floor["cer"], (yard, floor)
    # The silent clip has no transcript: left out of the CER and counted.
    assert rows["vocoder", "T_003"]["original_transcript"] == "" and rows["vocoder", "T_003"]["cer"] is None
    assert rows["true_mel_gl", "T_000"]["original_transcript"] and rows["true_mel_gl", "T_000"]["cer"] is not None
    assert yard["clips_without_original_transcript"] == 1 and yard["clips_scored_for_cer"] == 2
    assert "synthesis_x_realtime" not in metrics and metrics["recognizer"] == {"model": str(MODEL), "adapter": "smo"}
    assert set(metrics["notes"]) == set(evaluate.SYSTEMS)
    pairs = sorted(p.name for p in (out / "pairs").iterdir())
    assert {"00_original.wav", "00_vocoder.wav", "00_unit_mean_gl.wav", "00_untrained.wav",
            "00_true_mel_gl.wav", "02_vocoder.wav"} <= set(pairs)  # fmt: skip
    original, rate = sf.read(str(out / "pairs" / "01_original.wav"))
    assert rate == RATE and len(original) == 2 * RATE
    page = (out / "vocoder.html").read_text(encoding="utf-8")
    assert page.count("<audio") == 3 * 5 and page.count("data:audio/wav;base64,") == 15
    assert "<svg" in page and "yardstick" in page and "baseline to beat" in page and "discriminators joined" in page
    assert "src=\"http" not in page and "pairs/0" not in page  # self-contained


@pytest.mark.parametrize("case", ["no test recording", "no units for it"])
def test_nothing_held_out_is_said_in_the_outputs_not_an_error(material, tmp_path, case, capsys):
    out = tmp_path / "test"
    recs = material["recs"]
    if case == "no test recording":
        args = cli_args(material, out, test="empty.jsonl")
    else:  # test.jsonl names T, but only A's files are given
        args = cli_args(material, out)
        args = [a for a in args if "/T." not in a and not a.endswith(("T.json", "T.npy", "T.wav"))]
        assert str(recs["T"]["units"]) not in args
    assert evaluate.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["clips"] == 0 and metrics["per_clip"] == [] and "nothing held out" in metrics["note"]
    assert list((out / "pairs").iterdir()) == []
    page = (out / "vocoder.html").read_text(encoding="utf-8")
    assert "nothing held out" in page and "<audio" not in page
    assert "nothing held out" in capsys.readouterr().err


def test_a_unit_id_the_generator_does_not_know_is_one_clear_error(material, tmp_path):
    units = json.loads(material["recs"]["A"]["units"].read_text(encoding="utf-8"))
    units["segments"][1]["units"][3] = K + 5
    bad = tmp_path / "units" / "A.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps(units), encoding="utf-8")
    args = cli_args(material, tmp_path / "test", units={"T": material["recs"]["T"]["units"], "A": bad})
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "tala.vocoder.evaluate", *args], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0] and f"unit id {K + 5}" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "test").exists()


def test_pitch_of_another_length_and_a_missing_generator_are_input_errors(material, tmp_path):
    short = tmp_path / "T.npy"
    np.save(short, np.load(material["recs"]["T"]["pitch"])[:-3])
    args = cli_args(material, tmp_path / "test")
    args[args.index(str(material["recs"]["T"]["pitch"]))] = str(short)
    with pytest.raises(InputError, match=r"T\.npy: .*pitch values for .* unit frames"):
        evaluate.main(args)
    empty = tmp_path / "no_vocoder"
    empty.mkdir()
    (empty / "config.json").write_text((material["vocoder"] / "config.json").read_text())
    args = cli_args(material, tmp_path / "test")
    args[0] = str(empty)
    with pytest.raises(InputError, match=r"generator\.safetensors: no such file"):
        evaluate.main(args)


def test_unit_means_are_accumulated_per_unit_over_segments():
    """Mel frame m belongs to unit frame m // 2; the centred STFT's extra last frame is left out."""
    means = UnitMelMeans(k=3, n_mels=2)
    # Segment 1: units [0, 1] -> mel frames 0-1 are unit 0's, 2-3 unit 1's, frame 4 (extra) dropped.
    means.add(np.array([0, 1]), np.array([[1.0, 3.0, 10.0, 10.0, 99.0], [0.0, 0.0, -2.0, -4.0, 99.0]]))
    # Segment 2: units [1] -> mel frames 0-1 are unit 1's.
    means.add(np.array([1]), np.array([[16.0, 16.0, 99.0], [-3.0, -3.0, 99.0]]))
    result = means.means()
    assert result.shape == (3, 2) and result.dtype == np.float32
    np.testing.assert_allclose(result[0], [2.0, 0.0])  # (1 + 3) / 2, (0 + 0) / 2
    np.testing.assert_allclose(result[1], [13.0, -3.0])  # (10 + 10 + 16 + 16) / 4, (-2 - 4 - 3 - 3) / 4
    np.testing.assert_allclose(result[2], [(4 + 52) / 6, -12 / 6])  # never seen: the mean of all frames
    assert list(means.counts) == [2, 4, 0] and means.units_seen == 2


def test_unit_means_take_every_nth_segment_beyond_their_hours():
    lengths = [[100, 1, 100], [100, 100]]  # frames per segment, two recordings
    recordings = [Recording(f"R{r}", Path(f"R{r}.wav"), [0] * len(ls), [np.zeros(n, np.int64) for n in ls],
                            np.zeros(sum(ls), np.float32)) for r, ls in enumerate(lengths)]  # fmt: skip
    corpus = Corpus(recordings)
    assert unit_mean_segments(corpus, None) == [0, 2, 3, 4]  # segment 1 (20 ms) is too short for the log-mel
    assert unit_mean_segments(corpus, 400 * 0.02 / 3600) == [0, 2, 3, 4]
    assert unit_mean_segments(corpus, 200 * 0.02 / 3600) == [0, 3]  # every 2nd: both recordings
    assert unit_mean_segments(corpus, 150 * 0.02 / 3600) == [0, 4]


def test_the_untrained_system_is_the_generator_training_started_from(material, tmp_path):
    """Drawn with the training seed, as train_vocoder draws it: a folder whose weights are that draw
    gives the same weights; the trained fixture's differ."""
    step0 = Vocoder(write_vocoder(tmp_path / "step0", weights_seed=3, settings_seed=3))
    twin = untrained_twin(step0)
    assert all(torch.equal(a, b) for a, b in zip(step0.generator.state_dict().values(),
                                                 twin.generator.state_dict().values()))  # fmt: skip
    trained = Vocoder(material["vocoder"])
    assert not torch.equal(next(iter(trained.generator.parameters())),
                           next(iter(untrained_twin(trained).generator.parameters())))  # fmt: skip
    assert twin.generator is not step0.generator
