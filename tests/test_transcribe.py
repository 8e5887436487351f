"""tala.asr.transcribe and tala.hub: windowing, greedy decoding, chunked = unchunked, resume, bad inputs.

Most tests use a tiny MMS-style model built from a config with seeded random weights (two language
adapters, nested vocabulary): its transcripts are gibberish, so they compare emissions, not text.
The tests on the real demo model (``resources/demo/model``, trained on synthesized speech) check
text and times against the demo corpus' ground truth; they skip while that model is missing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import DEMO, DEMO_LANGUAGES as LANGUAGES, REPO, demo_truth_ids, normalize_demo_text, sigkill_when
from tala.errors import InputError, run_cli
from tala.hub import ModelError, adapter_files, load_ctc_model, looks_like_path, resolve_model, vocab_languages
from tala import frames
from tala.asr.transcribe import main, transcribe_file
from tala.frames import audio_stats, conv_geometry, output_frames, partial_paths, plan_batches, plan_windows

RATE = 16_000
FRAME_S = 0.02
DEMO_MODEL = DEMO / "model"
ALPHABETS = {"smo": "aefgilmnopstuvhkrʻāēīōū", "por": "abcdefghijlmnopqrstuvxzçãõáéíóúâêôà"}
# float16 log-probabilities of a flat random model (values ~ -3) round to ~0.002.
FP16_ATOL = 0.01


# --- fixtures ---------------------------------------------------------------------------------

def build_tiny_model(folder: Path, feat_extract_norm: str = "layer", seed: int = 0) -> Path:
    """A seeded random MMS-style model: per-language adapters + nested vocab, saved as transformers does."""
    from safetensors.torch import save_file
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {}
    for lang, letters in ALPHABETS.items():
        tokens = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
        for letter in letters:
            tokens[letter] = len(tokens)
        vocab[lang] = tokens
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), target_lang="smo")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE, padding_value=0.0, do_normalize=True,
                                         return_attention_mask=feat_extract_norm == "layer")
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)

    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        vocab_size=len(vocab["smo"]), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, conv_dim=(32,) * 7, do_stable_layer_norm=feat_extract_norm == "layer",
        feat_extract_norm=feat_extract_norm, adapter_attn_dim=16, num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, pad_token_id=0)
    model = Wav2Vec2ForCTC(config).eval()
    model.save_pretrained(folder)
    # Each language's adapter file holds what model._get_adapters() names (attention adapters +
    # lm_head), as in facebook/mms-1b-all; load_adapter checks the keys exactly.
    for offset, lang in enumerate(sorted(vocab)):
        torch.manual_seed(seed + 1 + offset)
        model.lm_head = torch.nn.Linear(config.hidden_size, len(vocab[lang]))
        model.config.vocab_size = len(vocab[lang])
        model.init_adapter_layers()
        save_file({k: v.detach().contiguous() for k, v in model._get_adapters().items()},
                  str(folder / f"adapter.{lang}.safetensors"))
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-mms")


@pytest.fixture(scope="session")
def tiny_group_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-group", feat_extract_norm="group", seed=7)


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Bursts of harmonic tones and noise with pauses: varied enough that frames differ."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    envelope = (np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) > -0.3).astype(np.float32)
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.3 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(pitch) / RATE) / k for k in range(1, 6))
    audio = 0.2 * envelope * voiced + 0.02 * rng.standard_normal(n)
    return audio.astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, rate: int = RATE) -> Path:
    sf.write(str(path), audio, rate, subtype="PCM_16", format="WAV")
    return path


@pytest.fixture(scope="session")
def wav20(tmp_path_factory) -> Path:
    return write_wav(tmp_path_factory.mktemp("audio") / "speech20.wav", speechlike(20.3))


def run(tmp_path: Path, wav: Path, model: Path, name: str = "out", **kwargs) -> tuple[dict, np.ndarray]:
    kwargs.setdefault("adapter", "smo")
    result = transcribe_file(wav, tmp_path / f"{name}.json", tmp_path / f"{name}.emissions.npy",
                             model=str(model), **kwargs)
    return result, np.load(tmp_path / f"{name}.emissions.npy")


def reference_log_probs(model_dir: Path, wav: Path, adapter: str = "smo") -> np.ndarray:
    """The model's own forward pass on the whole recording, normalized as the feature extractor does."""
    model, processor = load_ctc_model(str(model_dir), adapter, "cpu", torch.float32)
    audio, _ = sf.read(str(wav), dtype="float32")
    inputs = processor.feature_extractor(audio, sampling_rate=RATE, return_tensors="pt")
    with torch.inference_mode():
        logits = model(inputs.input_values, attention_mask=inputs.get("attention_mask")).logits
    return torch.log_softmax(logits.float(), dim=-1)[0].numpy()


# --- frame grid and windows -------------------------------------------------------------------

def test_geometry_matches_wav2vec2():
    geometry = conv_geometry((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))
    assert (geometry.stride, geometry.receptive_field) == (320, 400)
    assert geometry.frame_s == pytest.approx(0.02)
    assert geometry.samples_for_frames(3, 5) == (960, 960 + 320 + 400)


def test_output_frames_equal_the_models(tiny_model):
    from transformers import Wav2Vec2ForCTC

    model = Wav2Vec2ForCTC.from_pretrained(str(tiny_model))
    config = model.config
    for n in (0, 1, 399, 400, 401, 719, 720, 16_000, 123_457, 7 * 3600 * RATE):
        expected = max(0, int(model._get_feat_extract_output_lengths(n)))
        assert output_frames(n, config.conv_kernel, config.conv_stride) == expected, n


@pytest.mark.parametrize("num_frames,chunk,context", [(0, 10, 2), (1, 10, 2), (10, 10, 2), (11, 10, 2),
                                                      (1000, 150, 100), (1000, 1500, 100), (37, 5, 0)])
def test_windows_keep_every_frame_once(num_frames, chunk, context):
    windows = plan_windows(num_frames, chunk, context)
    kept = [f for w in windows for f in range(w.keep_start, w.keep_end)]
    assert kept == list(range(num_frames))
    for w in windows:
        assert 0 <= w.start <= w.keep_start < w.keep_end <= w.end <= num_frames
        assert w.keep_start - w.start == min(context, w.keep_start)
        assert w.end - w.keep_end == min(context, num_frames - w.keep_end)
        assert w.keep_end - w.keep_start <= chunk


def test_batches_are_consecutive_and_resume_from_a_window():
    windows = plan_windows(100, 10, 3)
    batches = plan_batches(windows, 4)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [w.index for b in batches for w in b] == list(range(10))
    assert [w.index for w in plan_batches(windows, 4, start=8)[0]] == [8, 9]
    with pytest.raises(ValueError):
        plan_batches(windows, 0)


def test_npy_written_in_place_reads_back(tmp_path):
    from tala.frames import create_npy, iter_npy_rows, npy_layout

    rows = np.random.default_rng(0).standard_normal((1000, 7)).astype(np.float16)
    path = tmp_path / "e.npy"
    offset = create_npy(path, rows.shape)
    assert npy_layout(path)[:2] == (offset, rows.shape)
    with path.open("r+b") as out:  # out of order, as a resumed run may write
        out.seek(offset + 600 * 7 * 2)
        out.write(rows[600:].tobytes())
        out.seek(offset)
        out.write(rows[:600].tobytes())
    assert np.array_equal(np.load(path), rows)
    assert np.array_equal(np.concatenate(list(iter_npy_rows(path, block_rows=300))), rows)
    create_npy(tmp_path / "empty.npy", (0, 7))
    assert np.load(tmp_path / "empty.npy").shape == (0, 7)
    assert list(iter_npy_rows(tmp_path / "empty.npy")) == []


def test_audio_stats_stream_equals_numpy(wav20):
    audio, _ = sf.read(str(wav20), dtype="float64")
    mean, std = audio_stats(wav20, block_s=1.3)
    assert mean == pytest.approx(audio.mean(), abs=1e-9)
    assert std == pytest.approx(audio.std(), rel=1e-7)


# --- inference on the tiny model --------------------------------------------------------------

def test_one_window_equals_the_models_forward_pass(tmp_path, tiny_model, wav20):
    result, emissions = run(tmp_path, wav20, tiny_model, chunk_s=60)
    reference = reference_log_probs(tiny_model, wav20)
    assert result["chunking"]["windows"] == 1
    assert emissions.shape == reference.shape == (result["num_frames"], len(result["vocabulary"]))
    assert np.abs(emissions.astype(np.float32) - reference).max() < FP16_ATOL


@pytest.mark.parametrize("chunk_s,context_s,batch_size", [(5.0, 2.0, 2), (3.0, 1.0, 4), (4.0, 0.5, 1)])
def test_chunked_emissions_match_unchunked(tmp_path, tiny_model, wav20, chunk_s, context_s, batch_size):
    _, whole = run(tmp_path, wav20, tiny_model, "whole", chunk_s=60)
    result, chunked = run(tmp_path, wav20, tiny_model, "chunked", chunk_s=chunk_s, context_s=context_s,
                          batch_size=batch_size)
    assert result["chunking"]["windows"] == int(np.ceil(20.3 / chunk_s))
    assert chunked.shape == whole.shape
    assert np.abs(chunked.astype(np.float32) - whole.astype(np.float32)).max() < 0.05


def test_group_norm_model_runs_whole_windows(tmp_path, tiny_group_model, wav20):
    result, emissions = run(tmp_path, wav20, tiny_group_model, chunk_s=60)
    assert result["chunking"]["encoder"] == "per window"
    reference = reference_log_probs(tiny_group_model, wav20)
    assert np.abs(emissions.astype(np.float32) - reference).max() < FP16_ATOL
    result, chunked = run(tmp_path, wav20, tiny_group_model, "chunked", chunk_s=4, context_s=1, batch_size=3)
    assert chunked.shape == emissions.shape


def test_the_core_without_files_gives_the_files_result(tmp_path, tiny_model, wav20):
    """transcribe_samples (in memory, e.g. for dataset clips) = transcribe_file on the same audio."""
    from tala.asr.transcribe import ctc_vocabulary, transcribe_samples

    result, emissions = run(tmp_path, wav20, tiny_model, chunk_s=5, context_s=1, batch_size=2)
    model, processor = load_ctc_model(str(tiny_model), "smo", "cpu", torch.float32)
    audio, _ = sf.read(str(wav20), dtype="float32")
    text, words, log_probs = transcribe_samples(model, ctc_vocabulary(model, processor.tokenizer, "tiny"), audio,
                                                chunk_s=5, context_s=1, batch_size=2)
    assert log_probs.shape == emissions.shape
    assert np.abs(log_probs - emissions.astype(np.float32)).max() < FP16_ATOL
    # The file stores float16: a random model's near-ties may decode differently from float32, so
    # the in-memory result is compared at the file's precision.
    from tala.ctc_text import greedy_text

    vocabulary = ctc_vocabulary(model, processor.tokenizer, "tiny")
    assert greedy_text(log_probs.astype(np.float16).astype(np.float32), vocabulary) == result["text"]
    assert text == greedy_text(log_probs, vocabulary) and words


def layer_frames(tmp_path: Path, wav: Path, model_dir: Path, number: int, chunk_s: float, context_s: float = 2.0,
                 batch_size: int = 2, name: str = "layer") -> np.ndarray:
    """tala.frames' hidden-state variant: block ``number``'s output for every frame, into a float32 .npy."""
    model, processor = load_ctc_model(str(model_dir), "smo", "cpu", torch.float32)
    plan = frames.plan_recording(model, frames.check_audio(wav), chunk_s, context_s)
    output = frames.Layer(number)
    frames.check_output(model, output)
    shape = (plan.num_frames, frames.output_size(model, output))
    run_ = frames.WindowRun(wav, tmp_path / f"{name}.npy", shape, len(plan.windows), {"chunk_s": chunk_s},
                            normalize=True, dtype=np.float32)
    frames.run_windows(model, run_, plan.windows, batch_size, plan.geometry, torch.device("cpu"), torch.float32,
                       output)
    return np.load(run_.finish())


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_group_model"])
def test_layer_frames_equal_the_models_hidden_states(tmp_path, wav20, fixture, request):
    """The features for units: block 1's output (of 2), chunked and batched, equals the model's own
    ``output_hidden_states=True`` on the whole recording (both encoder kinds)."""
    model_dir = request.getfixturevalue(fixture)
    model, processor = load_ctc_model(str(model_dir), "smo", "cpu", torch.float32)
    audio, _ = sf.read(str(wav20), dtype="float32")
    inputs = processor.feature_extractor(audio, sampling_rate=RATE, return_tensors="pt")
    with torch.inference_mode():
        reference = model(inputs.input_values, attention_mask=inputs.get("attention_mask"),
                          output_hidden_states=True).hidden_states[1][0].numpy()
    whole = layer_frames(tmp_path, wav20, model_dir, 1, chunk_s=60, name="whole")
    assert whole.shape == reference.shape == (reference.shape[0], 64) and whole.dtype == np.float32
    assert np.abs(whole - reference).max() < 1e-3 * np.abs(reference).max()
    if fixture == "tiny_model":  # a local encoder: windows with context give the same frames
        chunked = layer_frames(tmp_path, wav20, model_dir, 1, chunk_s=4, context_s=2, name="chunked")
        assert np.abs(chunked - whole).max() < 0.05 * np.abs(whole).max()
    # The blocks after the chosen one are not run, and the model is left whole.
    assert len(model.wav2vec2.encoder.layers) == 2
    with pytest.raises(ValueError, match=r"layer 3 does not exist: the model has transformer blocks 1\.\.2"):
        frames.check_output(model, frames.Layer(3))


def test_output_json_and_emissions_file(tmp_path, tiny_model, wav20):
    result, emissions = run(tmp_path, wav20, tiny_model, chunk_s=5, context_s=1, batch_size=2, adapter="por")
    saved = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert saved == result
    from transformers import Wav2Vec2ForCTC

    model = Wav2Vec2ForCTC.from_pretrained(str(tiny_model))
    frames = int(model._get_feat_extract_output_lengths(sf.info(str(wav20)).frames))
    assert emissions.dtype == np.float16 and emissions.shape == (frames, len(ALPHABETS["por"]) + 5)
    assert np.allclose(np.exp(emissions.astype(np.float32)).sum(axis=1), 1.0, atol=0.02)
    assert result["emissions"] == {"file": "out.emissions.npy", "shape": [frames, emissions.shape[1]],
                                   "dtype": "float16", "values": result["emissions"]["values"]}
    assert result["vocabulary"][:5] == ["<pad>", "<s>", "</s>", "<unk>", "|"]
    assert result["vocabulary"][5:] == list(ALPHABETS["por"])
    assert (result["blank_id"], result["word_delimiter"], result["adapter"]) == (0, "|", "por")
    assert result["frame_s"] == pytest.approx(0.02) and result["frame_rate_hz"] == pytest.approx(50)
    assert result["num_frames"] == frames and result["duration_s"] == pytest.approx(20.3, abs=1e-3)
    assert result["model"]["given"] == str(tiny_model) and result["model"]["resolved"] == str(tiny_model)
    assert (result["device"], result["dtype"]) == ("cpu", "float32")
    assert result["chunking"] == {"chunk_s": 5.0, "context_s": 1.0, "batch_size": 2, "windows": 5,
                                  "encoder": "per batch, local"}
    assert result["normalization"]["method"] == "recording"
    assert set(result["tool"]) == {"tala", "transformers", "torch"}
    assert result["text"] == " ".join(w["word"] for w in result["words"])
    for word in result["words"]:
        assert 0 <= word["start"] < word["end"] <= result["duration_s"] + 0.02
        assert 0 < word["score"] <= 1
    assert not any(p.exists() for p in partial_paths(tmp_path / "out.emissions.npy"))


class Interrupted(Exception):
    pass


def test_resume_after_a_kill_gives_the_same_result(tmp_path, tiny_model, wav20):
    settings = dict(chunk_s=3.0, context_s=1.0, batch_size=2)
    _, uninterrupted = run(tmp_path, wav20, tiny_model, "full", **settings)

    def stop_after_first_batch(done, total):
        raise Interrupted

    with pytest.raises(Interrupted):
        run(tmp_path, wav20, tiny_model, "resumed", on_batch=stop_after_first_batch, **settings)
    data, record = partial_paths(tmp_path / "resumed.emissions.npy")
    assert data.exists() and json.loads(record.read_text())["windows_done"] == 2
    assert not (tmp_path / "resumed.json").exists() and not (tmp_path / "resumed.emissions.npy").exists()

    calls = []
    result, resumed = run(tmp_path, wav20, tiny_model, "resumed", on_batch=lambda d, t: calls.append(d), **settings)
    assert calls == [4, 6, 7]  # continued after window 2 of 7
    assert np.array_equal(resumed, uninterrupted)
    assert not data.exists() and not record.exists()
    assert result["chunking"]["windows"] == 7


def transcribe_command(wav: Path, model: Path, folder: Path) -> list[str]:
    """The CLI on ``wav`` into ``folder``, in ~200 windows of 0.1 s: a run of several seconds to kill."""
    return [sys.executable, "-m", "tala.asr.transcribe", str(wav), str(folder / "out.json"),
            str(folder / "out.emissions.npy"), "--model", str(model), "--adapter", "smo", "--chunk-s", "0.1",
            "--context-s", "1", "--batch-size", "1", "--device", "cpu", "--no-progress"]  # fmt: skip


def windows_done(record: Path) -> int:
    try:
        return json.loads(record.read_text(encoding="utf-8"))["windows_done"]
    except (OSError, ValueError, KeyError):
        return 0  # not written yet (it is replaced atomically, so never half-written)


@pytest.mark.slow
def test_sigkill_of_the_cli_then_rerun_resumes_and_writes_the_same_bytes(tmp_path, tiny_model, wav20):
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts"), "OMP_NUM_THREADS": "1"}
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for folder in (reference, killed):
        folder.mkdir()
    done = subprocess.run(transcribe_command(wav20, tiny_model, reference), env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "resum" not in done.stderr

    data, record = partial_paths(killed / "out.emissions.npy")
    sigkill_when(transcribe_command(wav20, tiny_model, killed), env, lambda: windows_done(record) >= 1)
    killed_after = windows_done(record)
    total = json.loads(record.read_text(encoding="utf-8"))["windows_total"]
    assert 1 <= killed_after < total, (killed_after, total)
    assert data.exists()
    assert not (killed / "out.json").exists() and not (killed / "out.emissions.npy").exists()

    rerun = subprocess.run(transcribe_command(wav20, tiny_model, killed), env=env, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    resumed = [line for line in rerun.stderr.splitlines() if "resum" in line]
    assert resumed[0] == f"transcribe: {wav20}: resuming after window {killed_after} of {total}"
    assert f"resumed after window {killed_after} of {total}" in resumed[-1]
    for name in ("out.json", "out.emissions.npy"):
        assert (killed / name).read_bytes() == (reference / name).read_bytes(), name
    assert not data.exists() and not record.exists()


def test_changed_settings_start_over(tmp_path, tiny_model, wav20, capsys):
    def stop(done, total):
        raise Interrupted

    with pytest.raises(Interrupted):
        run(tmp_path, wav20, tiny_model, on_batch=stop, chunk_s=3.0, context_s=1.0, batch_size=2)
    calls = []
    run(tmp_path, wav20, tiny_model, on_batch=lambda d, t: calls.append(d), chunk_s=3.0, context_s=0.5,
        batch_size=2)
    assert calls[0] == 2  # from the start
    assert "resuming" not in capsys.readouterr().err


# --- bad inputs -------------------------------------------------------------------------------

@pytest.mark.parametrize("samples", [0, 1, 399])
def test_shorter_than_one_frame_gives_an_empty_transcript(tmp_path, tiny_model, samples):
    wav = write_wav(tmp_path / "short.wav", speechlike(1.0)[:samples])
    result, emissions = run(tmp_path, wav, tiny_model)
    assert emissions.shape == (0, len(result["vocabulary"])) and emissions.dtype == np.float16
    assert (result["text"], result["words"], result["num_frames"], result["chunking"]["windows"]) == ("", [], 0, 0)


def test_one_frame_recording(tmp_path, tiny_model):
    wav = write_wav(tmp_path / "one.wav", speechlike(1.0)[:400])
    result, emissions = run(tmp_path, wav, tiny_model)
    assert emissions.shape == (1, len(result["vocabulary"]))


def test_silent_recording_does_not_crash(tmp_path, tiny_model):
    wav = write_wav(tmp_path / "silence.wav", np.zeros(5 * RATE, np.float32))
    result, emissions = run(tmp_path, wav, tiny_model, chunk_s=2, context_s=0.5)
    assert np.isfinite(emissions.astype(np.float32)).all()
    # A random model has no reason to say nothing, but constant input gives (nearly) constant frames.
    assert len(result["words"]) <= 3
    assert result["normalization"]["std"] == 0.0


def test_missing_adapter_lists_the_available_ones(tmp_path, tiny_model, wav20):
    with pytest.raises(ModelError, match=r"no language adapter 'xyz'.*adapters available: por, smo"):
        run(tmp_path, wav20, tiny_model, adapter="xyz")


def test_adapter_without_vocabulary_is_named(tmp_path, tiny_model):
    model = copy_model(tiny_model, tmp_path / "model")
    (model / "adapter.fra.safetensors").write_bytes((tiny_model / "adapter.smo.safetensors").read_bytes())
    assert sorted(adapter_files(model)) == ["fra", "por", "smo"] and vocab_languages(model) == ["por", "smo"]
    with pytest.raises(ModelError, match=r"vocab.json has no 'fra'.*adapters available: por, smo \(adapter "
                                         r"weights for: fra, por, smo; vocabulary for: por, smo\)"):
        load_ctc_model(str(model), "fra", "cpu")


def copy_model(source: Path, target: Path) -> Path:
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_model_without_preprocessor_config_uses_the_standard_one(tmp_path, tiny_model, wav20, capsys):
    model = copy_model(tiny_model, tmp_path / "model")
    (model / "processor_config.json").unlink()
    result, _ = run(tmp_path, wav20, model, adapter="por")
    assert result["normalization"]["method"] == "recording" and result["adapter"] == "por"
    assert "no preprocessor_config.json" in capsys.readouterr().err


def test_single_language_model_ignores_the_adapter(tmp_path, tiny_model, wav20, capsys):
    model = copy_model(tiny_model, tmp_path / "model")
    for path in model.glob("adapter.*"):
        path.unlink()
    vocab = json.loads((model / "vocab.json").read_text(encoding="utf-8"))["smo"]
    (model / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    config = json.loads((model / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.pop("target_lang")
    (model / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    result, _ = run(tmp_path, wav20, model, adapter="smo")
    assert result["adapter"] is None and result["vocabulary"][5:] == list(ALPHABETS["smo"])
    assert "--adapter smo ignored" in capsys.readouterr().err


def test_multilingual_model_needs_an_adapter_or_a_default(tmp_path, tiny_model, wav20):
    # The tiny model's tokenizer_config names smo as its language, so no adapter means the base weights.
    result, _ = run(tmp_path, wav20, tiny_model, adapter=None)
    assert result["adapter"] is None and len(result["vocabulary"]) == len(ALPHABETS["smo"]) + 5


def test_missing_model_path_is_named(tmp_path, wav20):
    missing = tmp_path / "models" / "nope"
    with pytest.raises(ModelError, match=re.escape(f"{missing}: model folder does not exist")):
        run(tmp_path, wav20, missing)
    for name in ("./nope", "../nope/x", "/abs/model", "a/b/c", "nope/"):
        assert looks_like_path(name), name
        with pytest.raises(ModelError, match="does not exist"):
            resolve_model(name, tmp_path)
    assert not looks_like_path("facebook/mms-1b-all")


def test_folder_without_config_is_named(tmp_path, wav20):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        run(tmp_path, wav20, tmp_path / "empty")


def test_a_weights_file_cut_short_is_named_and_other_languages_are_not_read(tmp_path, wav20, tiny_model):
    """A copy or download cut short: the model's weights or the language's adapter file is one
    ModelError naming the file (not a traceback from safetensors, nor "no adapter on the hub"), in a
    model folder given by path as in download_models' folder; another language's damaged adapter
    is never read."""
    import shutil

    def cut(folder: Path, name: str) -> Path:
        shutil.copytree(tiny_model, folder)
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
        return folder / name

    for name in ("model.safetensors", "adapter.smo.safetensors"):
        damaged = cut(tmp_path / name, name)
        with pytest.raises(ModelError, match=re.escape(f"{damaged}: damaged weights file (")):
            run(tmp_path, wav20, tmp_path / name)
    cut(tmp_path / "models" / "facebook__mms-1b-all", "model.safetensors")
    with pytest.raises(ModelError, match=r"facebook__mms-1b-all/model\.safetensors: damaged weights file"):
        resolve_model("facebook/mms-1b-all", tmp_path / "models")
    cut(tmp_path / "por-cut", "adapter.por.safetensors")
    result, _ = run(tmp_path, wav20, tmp_path / "por-cut", name="smo-read")
    assert result["adapter"] == "smo"


def test_hub_id_offline_and_not_downloaded(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelError, match=r"facebook/mms-1b-all: model not downloaded: neither .*facebook__mms-1b-all"
                                         r" nor the Hugging Face cache.*snakemake download_models"):
        resolve_model("facebook/mms-1b-all", tmp_path / "models")


def test_downloaded_copy_is_preferred_over_the_hub(tmp_path, tiny_model):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "facebook__mms-1b-all").symlink_to(tiny_model)
    assert resolve_model("facebook/mms-1b-all", models_dir) == str(models_dir / "facebook__mms-1b-all")
    (models_dir / "org__partial").mkdir()
    with pytest.raises(ModelError, match="org__partial: incomplete download"):
        resolve_model("org/partial", models_dir)


@pytest.mark.parametrize("rate,channels", [(44_100, 1), (16_000, 2), (8_000, 1)])
def test_unconverted_audio_is_refused(tmp_path, tiny_model, rate, channels):
    audio = np.zeros((rate, channels), np.float32) if channels > 1 else np.zeros(rate, np.float32)
    wav = write_wav(tmp_path / "raw.wav", audio, rate)
    with pytest.raises(InputError, match=r"expected a 16000 Hz mono WAV, got .*convert it first"):
        run(tmp_path, wav, tiny_model)


def test_cli_reports_one_line(tmp_path, tiny_model, wav20, capsys):
    wav = write_wav(tmp_path / "stereo.wav", np.zeros((RATE, 2), np.float32))
    code = run_cli(main, [str(wav), str(tmp_path / "o.json"), str(tmp_path / "o.emissions.npy"),
                          "--model", str(tiny_model), "--adapter", "smo"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and err.startswith(f"error: {wav}: expected a 16000 Hz")
    code = run_cli(main, [str(wav20), str(tmp_path / "o.json"), str(tmp_path / "o.emissions.npy"),
                          "--model", str(tmp_path / "gone")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err == f"error: {tmp_path / 'gone'}: model folder does not exist (the path exists " \
                                f"only up to {tmp_path}/)"


def test_cli_writes_outputs(tmp_path, tiny_model, wav20, capsys):
    code = run_cli(main, [str(wav20), str(tmp_path / "o.json"), str(tmp_path / "o.emissions.npy"),
                          "--model", str(tiny_model), "--adapter", "por", "--chunk-s", "8", "--batch-size", "2"])
    assert code == 0
    assert json.loads((tmp_path / "o.json").read_text())["chunking"]["windows"] == 3
    assert "transcribe: " in capsys.readouterr().err


# --- the real demo model ----------------------------------------------------------------------

requires_demo_model = pytest.mark.skipif(not (DEMO_MODEL / "config.json").is_file(),
                                         reason="demo model not trained yet (resources/demo/model)")
EDGE_TOLERANCE_S = 0.060
CER_LIMIT = 0.05


@pytest.fixture(scope="session")
def demo_wavs(tmp_path_factory) -> dict[tuple[str, str], Path]:
    from tala.audio.convert import convert_file

    folder = tmp_path_factory.mktemp("demo-wav")
    wavs = {}
    for lang, rec in demo_truth_ids():
        truth = json.loads((DEMO / lang / "truth" / f"{rec}.json").read_text(encoding="utf-8"))
        wavs[lang, rec] = folder / f"{lang}-{rec}.wav"
        convert_file(DEMO / lang / truth["audio"], wavs[lang, rec])
    return wavs


@pytest.fixture(scope="session")
def demo_results(demo_wavs, tmp_path_factory) -> dict[tuple[str, str], dict]:
    folder = tmp_path_factory.mktemp("demo-asr")
    return {key: transcribe_file(wav, folder / f"{key[0]}-{key[1]}.json", folder / f"{key[0]}-{key[1]}.npy",
                                 model=str(DEMO_MODEL), adapter=LANGUAGES[key[0]], chunk_s=30, context_s=2)
            for key, wav in demo_wavs.items()}


@requires_demo_model
@pytest.mark.slow
@pytest.mark.parametrize("lang,rec", demo_truth_ids())
def test_demo_greedy_cer(demo_results, lang, rec):
    import jiwer

    truth = json.loads((DEMO / lang / "truth" / f"{rec}.json").read_text(encoding="utf-8"))
    reference = normalize_demo_text(" ".join(v["text"] for v in truth["verses"]))
    # The heading is read aloud but is not verse text: the words before the middle of the pause
    # after it are left out.
    cut = (truth["heading"]["end"] + truth["verses"][0]["start"]) / 2
    hypothesis = normalize_demo_text(" ".join(w["word"] for w in demo_results[lang, rec]["words"] if w["start"] >= cut))
    assert jiwer.cer(reference, hypothesis) <= CER_LIMIT, hypothesis


@requires_demo_model
@pytest.mark.slow
@pytest.mark.parametrize("lang,rec", demo_truth_ids())
def test_demo_word_times_at_verse_edges(demo_results, lang, rec):
    truth = json.loads((DEMO / lang / "truth" / f"{rec}.json").read_text(encoding="utf-8"))
    words = [dict(w, norm=normalize_demo_text(w["word"])) for w in demo_results[lang, rec]["words"]]
    errors, checked = [], 0
    for verse in truth["verses"]:
        spoken = normalize_demo_text(verse["text"]).split()
        # An edge counts where the transcript has the verse's first (last) word near the true time.
        firsts = [w for w in words if w["norm"] == spoken[0] and abs(w["start"] - verse["start"]) < 0.5]
        lasts = [w for w in words if w["norm"] == spoken[-1] and abs(w["end"] - verse["end"]) < 0.5]
        for candidates, key, true in ((firsts, "start", verse["start"]), (lasts, "end", verse["end"])):
            if candidates:
                checked += 1
                error = min(abs(w[key] - true) for w in candidates)
                if error > EDGE_TOLERANCE_S:
                    errors.append((verse["number"], key, round(error, 3)))
    assert checked >= len(truth["verses"]), f"only {checked} verse edges found in the transcript"
    assert not errors, errors


@requires_demo_model
@pytest.mark.slow
@pytest.mark.parametrize(("chunk_s", "context_s", "windows"), [(30, 2, 2), (10, 4, 5)])
def test_demo_chunked_agrees_with_unchunked(tmp_path, demo_wavs, chunk_s, context_s, windows):
    """Chunking changes only what attention can see beyond the context, and the transcript barely.

    Exact equality is not to be had from a transformer (its attention spans the whole input): with
    the workflow's windows (30 s, 2 s context) and with short windows given more context, the demo
    model writes the same letters, and differs only at near-ties of blank and word delimiter (a few
    word boundaries). Short windows with only 2 s of context can flip a letter at a near-tie.
    """
    import difflib

    wav = demo_wavs["samoan", "PSA_121"]
    whole, _ = run(tmp_path, wav, DEMO_MODEL, "whole", chunk_s=600)
    chunked, _ = run(tmp_path, wav, DEMO_MODEL, "chunked", chunk_s=chunk_s, context_s=context_s, batch_size=3)
    assert chunked["chunking"]["windows"] == windows and whole["chunking"]["windows"] == 1
    assert chunked["text"].replace(" ", "") == whole["text"].replace(" ", "")
    words_a, words_b = whole["words"], chunked["words"]
    matcher = difflib.SequenceMatcher(a=[w["word"] for w in words_a], b=[w["word"] for w in words_b],
                                      autojunk=False)
    pairs = [(words_a[i + k], words_b[j + k]) for i, j, n in matcher.get_matching_blocks() for k in range(n)]
    assert len(pairs) >= 0.95 * len(words_a)
    drift = [max(abs(a["start"] - b["start"]), abs(a["end"] - b["end"])) for a, b in pairs]
    assert sum(d <= FRAME_S + 1e-9 for d in drift) >= 0.98 * len(pairs)
    assert max(drift) <= 3 * FRAME_S + 1e-9
