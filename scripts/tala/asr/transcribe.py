"""Transcribe a recording with a CTC model: greedy text, word times, and the frame log-probabilities.

    python -m tala.asr.transcribe IN.wav OUT.json OUT.emissions.npy --model M [--adapter smo]
        [--models-dir resources/models] [--device auto] [--dtype auto]
        [--chunk-s 30] [--context-s 2] [--batch-size N] [--no-progress]

The emissions (log-softmax, float16, frames x vocabulary) are what the aligner works on; the JSON
holds the greedy transcript, word times in seconds, and everything needed to read the emissions
(vocabulary, blank id, frame duration). It is written last.

Long recordings in bounded memory
---------------------------------
wav2vec2 turns audio into one frame per ``stride`` samples (320 = 20 ms): frame i is computed from
samples ``[i * stride, i * stride + receptive_field)`` (400) by the convolutional feature encoder,
then a transformer looks at all frames. A recording is cut into *windows* of ``chunk_s`` seconds of
frames to keep plus ``context_s`` seconds of frames on each side whose output is dropped, so every
kept frame was computed with at least ``context_s`` of audio around it. Windows start on the frame
grid (multiples of ``stride`` samples), so the frames line up exactly with those of the whole
recording, and their count equals ``model._get_feat_extract_output_lengths(num_samples)``.

For models whose feature encoder normalizes per frame (``feat_extract_norm == "layer"``, MMS and
XLS-R) the encoder is local: a frame depends on its 400 samples only. There we compute it once for
a batch's stretch of audio, in pieces of CONV_PIECE_FRAMES frames (the first conv layer's output,
512 channels at 3,200 steps per second, is the largest tensor of the whole model: 30 s of it is
~200 MB), and cut the windows out of the features. Only the transformer sees windows, in batches,
padded with an attention mask. The result equals the model's own forward pass on each window
(tests check it) while computing the encoder once instead of once per overlapping window. Models
with a group-normalized encoder (``"group"``, wav2vec2-base style) normalize over the whole input,
so their encoder runs on each window as a whole.

Input normalization
-------------------
Wav2Vec2FeatureExtractor's ``do_normalize`` scales each input to zero mean and unit variance. Done
per window, the scale would change at every window boundary and chunked output would depend on
the chunking. We instead compute the mean and standard deviation of the whole recording in a first
streaming pass (a few ms per minute) and normalize every window with them: exactly what the
feature extractor does to the recording processed in one piece.

Memory, files and resuming
--------------------------
Audio is read per batch with soundfile (seek + read). Emissions go straight into an ``.npy``
file whose header (with the final frame count) is written first, by plain file writes rather than
a memory map, so that neither the process's memory nor its resident set grows with the length of
the recording. The greedy transcript is decoded from the file in blocks at the end.

The partial file and a small progress record live beside the output under hidden names
(``.<emissions name>.partial.npy`` / ``.partial.json``): Snakemake deletes a failed job's declared
outputs but not these. A rerun with the same settings (input, model files, adapter, device, dtype,
windowing) continues after the last completed batch; different settings start over. On success the
partial emissions file is renamed to the output and the record removed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from tala.device import ensure_mps_fallback

ensure_mps_fallback()

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import tala  # noqa: E402
from tala.audio_io import SAMPLE_RATE, probe_audio  # noqa: E402
from tala.ctc_text import CtcVocabulary, Word, collapse, greedy_labels, greedy_words, spans_text  # noqa: E402
from tala.device import describe_device, pick_device, pick_dtype  # noqa: E402
from tala.errors import InputError, run_cli  # noqa: E402
from tala.fileio import write_json_atomic  # noqa: E402
from tala.hub import (ModelError, load_ctc_model, model_revision, resolve_model,  # noqa: E402
                         weights_signature)

CHUNK_S = 30.0
CONTEXT_S = 2.0
# Windows per forward pass when not given: batches pay off on a GPU; on a CPU one window at a time
# is faster (9.2 vs 8.4 audio s/s on a base-sized model, 2 cores) and needs ~300 MB less.
BATCH_SIZE_GPU = 4
BATCH_SIZE_CPU = 1
# Feature-encoder pieces: 10 s keeps the largest intermediate (the first conv layer's output,
# 512 x 32,000 floats) near 65 MB while the pieces stay long enough for efficient convolutions.
CONV_PIECE_FRAMES = 500
STATS_BLOCK_S = 60.0
DECODE_BLOCK_FRAMES = 1 << 16
# The feature extractor's variance floor (Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm).
NORM_EPSILON = 1e-7
EMISSIONS_DTYPE = np.float16
# Bumped whenever the partial-file layout or the computation changes, so stale partials restart.
PARTIAL_FORMAT = 1
PROGRESS_MIN_S = 60.0


# ---------------------------------------------------------------------------------------------
# Frame grid and windows (pure)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FrameGeometry:
    """How the feature encoder maps samples to frames: frame i reads ``[i * stride, i * stride + receptive_field)``."""

    stride: int  # samples per frame (product of the conv strides)
    receptive_field: int  # samples one frame depends on
    sample_rate: int = SAMPLE_RATE

    @property
    def frame_s(self) -> float:
        return self.stride / self.sample_rate

    def samples_for_frames(self, start: int, end: int) -> tuple[int, int]:
        """The sample range the frames ``[start, end)`` are computed from."""
        if end <= start:
            return start * self.stride, start * self.stride
        return start * self.stride, (end - 1) * self.stride + self.receptive_field


def conv_geometry(kernels: list[int] | tuple[int, ...], strides: list[int] | tuple[int, ...],
                  sample_rate: int = SAMPLE_RATE) -> FrameGeometry:
    """Stride and receptive field of a stack of unpadded 1-D convolutions (wav2vec2: 320 and 400)."""
    stride, field = 1, 1
    for kernel, step in zip(kernels, strides):
        field += (kernel - 1) * stride
        stride *= step
    return FrameGeometry(stride, field, sample_rate)


def output_frames(num_samples: int, kernels: list[int] | tuple[int, ...],
                  strides: list[int] | tuple[int, ...]) -> int:
    """Frames the conv stack yields for ``num_samples`` (wav2vec2's formula, 0 below one frame)."""
    length = num_samples
    for kernel, step in zip(kernels, strides):
        length = (length - kernel) // step + 1
        if length <= 0:
            return 0
    return length


@dataclass(frozen=True)
class Window:
    """One inference window, in frames of the whole recording.

    It computes frames ``[start, end)`` and keeps ``[keep_start, keep_end)``; the rest is context.
    """

    index: int
    start: int
    end: int
    keep_start: int
    keep_end: int

    @property
    def num_frames(self) -> int:
        return self.end - self.start


def plan_windows(num_frames: int, chunk_frames: int, context_frames: int) -> list[Window]:
    """Windows that keep ``chunk_frames`` each, with up to ``context_frames`` more on each side.

    Every frame of ``[0, num_frames)`` is kept by exactly one window, the one whose kept part (its
    centre) covers it. Context is cut at the ends of the recording rather than borrowed from the
    other side: the windows next to the ends are shorter, not shifted.
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    if context_frames < 0:
        raise ValueError(f"context_frames must be >= 0, got {context_frames}")
    windows = []
    for index, keep_start in enumerate(range(0, num_frames, chunk_frames)):
        keep_end = min(keep_start + chunk_frames, num_frames)
        windows.append(Window(index, max(0, keep_start - context_frames),
                              min(num_frames, keep_end + context_frames), keep_start, keep_end))
    return windows


def plan_batches(windows: list[Window], batch_size: int, start: int = 0) -> list[list[Window]]:
    """Consecutive groups of ``batch_size`` windows, from window ``start`` on."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rest = windows[start:]
    return [rest[i:i + batch_size] for i in range(0, len(rest), batch_size)]


# ---------------------------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------------------------

def check_audio(path: str | Path) -> int:
    """The number of samples of a complete 16 kHz mono WAV (or FLAC); InputError for anything else.

    Windows are read by seeking, which is sample-exact only in uncompressed or FLAC files; and
    resampling or downmixing here would hide that the convert step was skipped.
    """
    info = probe_audio(path)
    seekable = info.decoder == "libsndfile" and info.format.split()[0] in ("WAV", "WAVEX", "RF64", "W64", "FLAC")
    if not seekable or info.sample_rate != SAMPLE_RATE or info.channels != 1:
        raise InputError(path, f"expected a {SAMPLE_RATE} Hz mono WAV, got {info.describe()}; convert it first "
                               f"(python -m tala.audio.convert IN OUT.wav, the workflow's convert step)")
    return int(info.frames)


def audio_stats(path: str | Path, block_s: float = STATS_BLOCK_S) -> tuple[float, float]:
    """Mean and standard deviation of all samples, in one streaming pass (float64 sums)."""
    total = 0
    sum1 = sum2 = 0.0
    with sf.SoundFile(str(path)) as handle:
        block_frames = max(1, round(block_s * handle.samplerate))
        while True:
            block = handle.read(block_frames, dtype="float32")
            if len(block) == 0:
                break
            block64 = block.astype(np.float64)
            total += len(block)
            sum1 += float(block64.sum())
            sum2 += float(np.dot(block64, block64))
    if total == 0:
        return 0.0, 1.0
    mean = sum1 / total
    variance = max(0.0, sum2 / total - mean * mean)
    return mean, float(np.sqrt(variance))


def read_samples(handle: sf.SoundFile, start: int, stop: int) -> np.ndarray:
    """Samples ``[start, stop)`` as float32, zero-padded if the file ends early (it never should)."""
    handle.seek(start)
    samples = handle.read(stop - start, dtype="float32")
    if len(samples) < stop - start:
        samples = np.pad(samples, (0, stop - start - len(samples)))
    return samples


# ---------------------------------------------------------------------------------------------
# Emissions file: an .npy written by plain file writes
# ---------------------------------------------------------------------------------------------

def create_npy(path: Path, shape: tuple[int, int], dtype=EMISSIONS_DTYPE) -> int:
    """Write an .npy header for ``shape`` and size the file; return the data offset."""
    with path.open("wb") as handle:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(handle, header)
        offset = handle.tell()
        handle.truncate(offset + int(np.prod(shape)) * np.dtype(dtype).itemsize)
    return offset


def npy_layout(path: Path) -> tuple[int, tuple[int, ...], np.dtype]:
    """(data offset, shape, dtype) of an .npy file, from its header."""
    with path.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(handle)
        if fortran:
            raise ValueError(f"{path}: Fortran-ordered array")
        return handle.tell(), shape, dtype


def iter_npy_rows(path: Path, block_rows: int = DECODE_BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Blocks of rows of a 2-D .npy, read with plain reads (not mapped, so RSS stays small)."""
    offset, shape, dtype = npy_layout(path)
    rows, cols = shape
    with path.open("rb") as handle:
        handle.seek(offset)
        for first in range(0, rows, block_rows):
            count = min(block_rows, rows - first)
            yield np.fromfile(handle, dtype=dtype, count=count * cols).reshape(count, cols)


# ---------------------------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Normalization:
    """How samples are scaled before the model: ``(x - mean) / sqrt(std**2 + epsilon)``, or not at all."""

    method: str  # "recording" or "none"
    mean: float = 0.0
    std: float = 1.0

    def apply(self, samples: np.ndarray) -> np.ndarray:
        if self.method == "none":
            return samples
        scale = np.float32(1.0 / np.sqrt(self.std * self.std + NORM_EPSILON))
        return (samples - np.float32(self.mean)) * scale

    def describe(self) -> dict:
        if self.method == "none":
            return {"method": "none", "note": "the model's feature extractor has do_normalize=false"}
        return {"method": "recording", "mean": self.mean, "std": self.std, "epsilon": NORM_EPSILON,
                "note": "zero mean and unit variance with the whole recording's statistics (streaming "
                        "first pass), as Wav2Vec2FeatureExtractor does to unchunked input; the same scale "
                        "for every window, so the output does not depend on the chunking"}


def _channels_last_encoder(model) -> bool:
    """Whether :func:`_conv_features_channels_last` can stand in for the model's feature encoder."""
    for layer in model.wav2vec2.feature_extractor.conv_layers:
        conv = getattr(layer, "conv", None)
        if getattr(layer, "layer_norm", None) is None or not isinstance(layer.layer_norm, torch.nn.LayerNorm) \
                or conv is None or conv.padding != (0,) or conv.dilation != (1,) or conv.groups != 1:
            return False
    return True


def _conv_features_channels_last(model, samples: torch.Tensor) -> torch.Tensor:
    """The feature encoder's output (frames x channels) for 1-D ``samples``, computed channels last.

    The same arithmetic as ``model.wav2vec2.feature_extractor`` (per layer: convolution, layer norm
    over the channels, activation), but each strided convolution is a sum of ``kernel`` matrix
    products over strided views of a (time, channels) tensor. The layer norm then runs over
    contiguous rows and nothing is transposed back and forth: on the CPU the encoder takes ~25%
    less time and half the memory (tests check it against the model's own forward pass).
    """
    hidden = samples[:, None]
    for layer in model.wav2vec2.feature_extractor.conv_layers:
        conv = layer.conv
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        frames = (hidden.shape[0] - kernel) // stride + 1
        weight = conv.weight  # (out, in, kernel)
        if hidden.shape[1] == 1:
            # One input channel (the waveform): a single product with the (frames, kernel) patches.
            out = hidden[:, 0].unfold(0, kernel, stride)[:frames] @ weight[:, 0, :].t()
        else:
            span = (frames - 1) * stride + 1
            out = hidden[0:span:stride] @ weight[:, :, 0].t()
            for offset in range(1, kernel):
                out.addmm_(hidden[offset:offset + span:stride], weight[:, :, offset].t())
        # Dropping each intermediate as soon as it is used keeps two layer outputs alive, not four.
        del hidden
        if conv.bias is not None:
            out += conv.bias
        norm = layer.layer_norm
        normed = torch.nn.functional.layer_norm(out, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        del out
        hidden = layer.activation(normed)
        del normed
    return hidden


def _conv_features(model, samples: torch.Tensor, num_frames: int, geometry: FrameGeometry,
                   piece_frames: int = CONV_PIECE_FRAMES) -> torch.Tensor:
    """Feature-encoder output (frames x channels) of a local ("layer") encoder, in pieces."""
    channels_last = _channels_last_encoder(model)
    pieces = []
    for first in range(0, num_frames, piece_frames):
        last = min(first + piece_frames, num_frames)
        lo, hi = geometry.samples_for_frames(first, last)
        if channels_last:
            pieces.append(_conv_features_channels_last(model, samples[lo:hi]))
        else:
            pieces.append(model.wav2vec2.feature_extractor(samples[lo:hi][None])[0].transpose(0, 1))
    return torch.cat(pieces)


def _window_hidden_states(model, batch: list[Window], handle: sf.SoundFile, geometry: FrameGeometry,
                          norm: Normalization, device: torch.device, dtype: torch.dtype,
                          local_encoder: bool) -> list[torch.Tensor]:
    """The projected features (frames x hidden) of each window of a batch."""
    if local_encoder:
        first, last = min(w.start for w in batch), max(w.end for w in batch)
        lo, hi = geometry.samples_for_frames(first, last)
        samples = torch.from_numpy(norm.apply(read_samples(handle, lo, hi))).to(device=device, dtype=dtype)
        features = _conv_features(model, samples, last - first, geometry)
        hidden, _ = model.wav2vec2.feature_projection(features[None])
        return [hidden[0, w.start - first:w.end - first] for w in batch]
    states = []
    for window in batch:
        lo, hi = geometry.samples_for_frames(window.start, window.end)
        samples = torch.from_numpy(norm.apply(read_samples(handle, lo, hi))).to(device=device, dtype=dtype)
        features = model.wav2vec2.feature_extractor(samples[None]).transpose(1, 2)
        hidden, _ = model.wav2vec2.feature_projection(features)
        states.append(hidden[0, :window.num_frames])
    return states


def batch_log_probs(model, batch: list[Window], handle: sf.SoundFile, geometry: FrameGeometry,
                    norm: Normalization, device: torch.device, dtype: torch.dtype,
                    local_encoder: bool) -> list[np.ndarray]:
    """Log-softmax emissions (float32, kept frames x vocabulary) of each window of a batch.

    Equivalent to ``model(input_values, attention_mask).logits`` on each window's samples, split
    at the feature projection so that the encoder runs once per batch (see the module docstring).
    """
    states = _window_hidden_states(model, batch, handle, geometry, norm, device, dtype, local_encoder)
    longest = max(len(s) for s in states)
    hidden = states[0].new_zeros((len(states), longest, states[0].shape[-1]))
    mask = torch.zeros((len(states), longest), dtype=torch.bool, device=hidden.device)
    for row, state in enumerate(states):
        hidden[row, :len(state)] = state
        mask[row, :len(state)] = True
    encoded = model.wav2vec2.encoder(hidden, attention_mask=None if bool(mask.all()) else mask)
    logits = model.lm_head(encoded.last_hidden_state)
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return [log_probs[row, w.keep_start - w.start:w.keep_end - w.start].cpu().numpy()
            for row, w in enumerate(batch)]


# ---------------------------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------------------------

def partial_paths(emissions: str | Path) -> tuple[Path, Path]:
    """The hidden partial-emissions and progress-record paths beside ``emissions``."""
    emissions = Path(emissions)
    return (emissions.with_name(f".{emissions.name}.partial.npy"),
            emissions.with_name(f".{emissions.name}.partial.json"))


def _settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _load_progress(record_path: Path, data_path: Path, settings_hash: str,
                   shape: tuple[int, int]) -> dict | None:
    """The progress record if it belongs to these settings and its data file is intact."""
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        offset, found_shape, dtype = npy_layout(data_path)
    except (OSError, ValueError, KeyError):
        return None
    if record.get("settings_hash") != settings_hash or tuple(found_shape) != shape \
            or dtype != np.dtype(EMISSIONS_DTYPE) or record.get("data_offset") != offset:
        return None
    if data_path.stat().st_size != offset + shape[0] * shape[1] * np.dtype(EMISSIONS_DTYPE).itemsize:
        return None
    return record


def ctc_vocabulary(model, tokenizer, label: str) -> CtcVocabulary:
    """The output vocabulary of a loaded model, with the tokenizer's names for its ids."""
    size = int(model.lm_head.out_features)
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    missing = [i for i in range(size) if i not in by_id]
    if missing:
        raise ModelError(label, f"the vocabulary has no token for output ids {missing[:5]} (the output layer "
                                f"has {size}): adapter and vocab.json do not match")
    # CTC's blank is the pad token, as in transformers' CTC loss.
    blank_id = model.config.pad_token_id if model.config.pad_token_id is not None else tokenizer.pad_token_id
    ignore = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id} - {None, blank_id}
    tokens = [by_id[i] for i in range(size)]
    ignore |= {i for i, t in enumerate(tokens) if len(t) > 2 and t[0] == "<" and t[-1] == ">" and i != blank_id}
    return CtcVocabulary(tokens, int(blank_id), getattr(tokenizer, "word_delimiter_token", None), frozenset(ignore))


def decode_emissions_file(path: Path, vocabulary: CtcVocabulary, frame_s: float) -> tuple[str, list[Word]]:
    """Greedy transcript and words of an emissions .npy, read in blocks.

    Only the best id and its log-probability per frame are kept (8 bytes a frame: 3 MB for two hours).
    """
    ids_blocks, best_blocks = [np.zeros(0, np.int32)], [np.zeros(0, np.float32)]
    for block in iter_npy_rows(path):
        ids, best = greedy_labels(block.astype(np.float32))
        ids_blocks.append(ids)
        best_blocks.append(best)
    ids, best = np.concatenate(ids_blocks), np.concatenate(best_blocks)
    spans = collapse(ids, vocabulary)
    return spans_text(spans, vocabulary), greedy_words(spans, vocabulary, frame_s, best)


def _start_or_resume(audio: Path, data_path: Path, record_path: Path, settings: dict, shape: tuple[int, int],
                     num_windows: int, do_normalize: bool) -> dict:
    """The progress record of a compatible partial run, or a fresh one (with new statistics and file)."""
    settings_hash = _settings_hash(settings)
    record = _load_progress(record_path, data_path, settings_hash, shape)
    if record is not None:
        if record["windows_done"]:
            print(f"transcribe: {audio}: resuming after window {record['windows_done']} of {num_windows}",
                  file=sys.stderr)
        return record
    data_path.unlink(missing_ok=True)
    record_path.unlink(missing_ok=True)
    mean, std = audio_stats(audio) if do_normalize else (0.0, 1.0)
    offset = create_npy(data_path, shape)
    record = {"settings_hash": settings_hash, "windows_done": 0, "windows_total": num_windows,
              "data_offset": offset, "shape": list(shape), "mean": mean, "std": std, "settings": settings}
    write_json_atomic(record_path, record)
    return record


def transcribe_file(audio: str | Path, out_json: str | Path, out_emissions: str | Path, *, model: str,
                    adapter: str | None = None, models_dir: str | Path | None = None, device: str = "auto",
                    dtype: str = "auto", chunk_s: float = CHUNK_S, context_s: float = CONTEXT_S,
                    batch_size: int | None = None, progress: bool | None = None,
                    on_batch: Callable[[int, int], None] | None = None) -> dict:
    """Transcribe ``audio`` (16 kHz mono WAV) into ``out_json`` and ``out_emissions``; return the JSON.

    ``on_batch(windows_done, windows_total)`` is called after each batch is safely on disk (tests
    use it to interrupt a run). ``progress``: tqdm bar on stderr; default for inputs over
    PROGRESS_MIN_S. Raises InputError (ModelError, DeviceError) for bad inputs, one line each.

    The JSON depends only on the inputs and settings (paths as given, no times), so a resumed run
    writes the same bytes as an uninterrupted one; the time taken goes to the log line on stderr.
    """
    started = time.perf_counter()
    audio, out_json, out_emissions = Path(audio), Path(out_json), Path(out_emissions)
    if chunk_s <= 0 or context_s < 0 or (batch_size is not None and batch_size < 1):
        raise InputError("--chunk-s/--context-s/--batch-size",
                         f"need chunk_s > 0, context_s >= 0, batch_size >= 1 (got {chunk_s}, {context_s}, "
                         f"{batch_size})")
    if out_emissions.suffix != ".npy":
        raise InputError(out_emissions, "the emissions output must end in .npy")
    num_samples = check_audio(audio)

    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    if batch_size is None:
        batch_size = BATCH_SIZE_CPU if torch_device.type == "cpu" else BATCH_SIZE_GPU
    resolved = resolve_model(model, models_dir)
    ctc_model, processor = load_ctc_model(resolved, adapter, torch_device, torch_dtype)
    config = ctc_model.config
    if getattr(config, "add_adapter", False):
        raise ModelError(model, "models with a downsampling adapter (config.add_adapter) are not supported")
    if ctc_model.target_lang is None:
        adapter = None  # load_ctc_model ignored it (a model without language adapters)
    vocabulary = ctc_vocabulary(ctc_model, processor.tokenizer, model)
    geometry = conv_geometry(config.conv_kernel, config.conv_stride)
    num_frames = max(0, int(ctc_model._get_feat_extract_output_lengths(num_samples)))
    local_encoder = getattr(config, "feat_extract_norm", "group") == "layer"
    do_normalize = bool(getattr(processor.feature_extractor, "do_normalize", True))
    chunk_frames = max(1, round(chunk_s * SAMPLE_RATE / geometry.stride))
    context_frames = max(0, round(context_s * SAMPLE_RATE / geometry.stride))
    windows = plan_windows(num_frames, chunk_frames, context_frames)
    shape = (num_frames, len(vocabulary.tokens))

    # Everything the emissions depend on; a partial run with other settings is not continued.
    audio_stat = audio.stat()
    settings = {
        "format": PARTIAL_FORMAT, "tala": tala.__version__, "torch": torch.__version__,
        "audio": [audio.name, audio_stat.st_size, audio_stat.st_mtime_ns, num_samples],
        "model": [resolved, weights_signature(resolved), adapter], "device": torch_device.type,
        "dtype": str(torch_dtype), "frames": [chunk_frames, context_frames, batch_size, num_frames, shape[1]],
        "normalize": do_normalize,
    }
    data_path, record_path = partial_paths(out_emissions)
    data_path.parent.mkdir(parents=True, exist_ok=True)
    record = _start_or_resume(audio, data_path, record_path, settings, shape, len(windows), do_normalize)
    norm = Normalization("recording", record["mean"], record["std"]) if do_normalize else Normalization("none")

    duration_s = num_samples / SAMPLE_RATE
    done = resumed_after = record["windows_done"]
    row_bytes = shape[1] * np.dtype(EMISSIONS_DTYPE).itemsize
    # Counts seconds of audio, so the rate reads as audio seconds per second.
    bar = tqdm(total=round(num_frames * geometry.frame_s, 2), unit="s", desc=f"transcribe {audio.name}",
               initial=round(windows[done - 1].keep_end * geometry.frame_s, 2) if done else 0,
               file=sys.stderr, disable=not (progress if progress is not None else duration_s >= PROGRESS_MIN_S),
               mininterval=5.0, leave=False)
    with bar, sf.SoundFile(str(audio)) as handle, data_path.open("r+b") as out, torch.inference_mode():
        for batch in plan_batches(windows, batch_size, done):
            emissions = batch_log_probs(ctc_model, batch, handle, geometry, norm, torch_device, torch_dtype,
                                        local_encoder)
            out.seek(record["data_offset"] + batch[0].keep_start * row_bytes)
            for block in emissions:
                out.write(np.ascontiguousarray(block, dtype=EMISSIONS_DTYPE).tobytes())
            out.flush()
            os.fsync(out.fileno())  # the data is on disk before the record says so
            done = batch[-1].index + 1
            record["windows_done"] = done
            write_json_atomic(record_path, record)
            bar.update((batch[-1].keep_end - batch[0].keep_start) * geometry.frame_s)
            bar.set_postfix_str(f"windows {done}/{len(windows)}", refresh=False)
            if on_batch is not None:
                on_batch(done, len(windows))

    text, words = decode_emissions_file(data_path, vocabulary, geometry.frame_s)
    os.replace(data_path, out_emissions)
    import transformers

    result = {
        "audio": str(audio),
        "text": text,
        "words": [asdict(w) for w in words],
        "model": {"given": model, "resolved": resolved,
                  "revision": model_revision(resolved) if Path(resolved).is_dir() else None},
        "adapter": adapter,
        "device": describe_device(torch_device),
        "dtype": str(torch_dtype).removeprefix("torch."),
        "chunking": {"chunk_s": round(chunk_frames * geometry.frame_s, 6),
                     "context_s": round(context_frames * geometry.frame_s, 6),
                     "batch_size": batch_size, "windows": len(windows),
                     "encoder": "per batch, local" if local_encoder else "per window"},
        "frame_s": geometry.frame_s,
        "frame_rate_hz": SAMPLE_RATE / geometry.stride,
        "num_frames": num_frames,
        "num_samples": num_samples,
        "sample_rate": SAMPLE_RATE,
        "duration_s": duration_s,
        **vocabulary.record(),
        "emissions": {"file": out_emissions.name, "shape": list(shape), "dtype": "float16",
                      "values": "log_softmax over the vocabulary, one row per frame"},
        "normalization": norm.describe(),
        "word_times": "start: first frame of the word's first token x frame_s; end: first frame of the word "
                      "delimiter after the word, else the end of its last token; score: exp(mean greedy "
                      "log-prob over the word's token frames)",
        "tool": {"tala": tala.__version__, "transformers": transformers.__version__, "torch": torch.__version__},
    }
    write_json_atomic(out_json, result)
    record_path.unlink(missing_ok=True)
    # The rate counts the audio this run computed: after a resume, not the windows done before.
    audio_done_s = (num_frames - (windows[resumed_after - 1].keep_end if resumed_after else 0)) * geometry.frame_s
    speed = audio_done_s / max(time.perf_counter() - started, 1e-9)
    resumed = (f", resumed after window {resumed_after} of {len(windows)} ({audio_done_s:.2f} s of audio in this run)"
               if resumed_after else "")
    print(f"transcribe: {audio}: {duration_s:.2f} s, {num_frames} frames x {len(vocabulary.tokens)} tokens, "
          f"{len(windows)} windows on {result['device']} ({result['dtype']}){resumed}, {speed:.1f} s audio/s, "
          f"{len(words)} words -> {out_json}", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tala.asr.transcribe",
        description="Greedy CTC transcript, word times and frame log-probabilities of a 16 kHz mono WAV, "
                    "in bounded memory (chunked, batched inference; resumes after a kill).")
    parser.add_argument("input", help="16 kHz mono WAV (the convert step's output)")
    parser.add_argument("output", help="transcript JSON to write (last)")
    parser.add_argument("emissions", help="emissions .npy to write (float16 log-probabilities, frames x vocabulary)")
    parser.add_argument("--model", required=True, help="Hugging Face id or local folder of a Wav2Vec2ForCTC model")
    parser.add_argument("--adapter", default=None, help="MMS language adapter, e.g. smo (default: none)")
    parser.add_argument("--models-dir", default="resources/models",
                        help="where download_models put hub models (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cuda, mps or cpu (default: auto)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                        help="auto: float16 on CUDA, float32 elsewhere (default: auto)")
    parser.add_argument("--chunk-s", type=float, default=CHUNK_S,
                        help="audio kept per window, seconds (default: %(default)s)")
    parser.add_argument("--context-s", type=float, default=CONTEXT_S,
                        help="extra audio on each side of a window, dropped from its output (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"windows per forward pass (default: {BATCH_SIZE_CPU} on a CPU, {BATCH_SIZE_GPU} on a GPU)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help=f"progress bar on stderr (default: for inputs over {PROGRESS_MIN_S:.0f} s)")
    args = parser.parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Loading weights" bars would only clutter the job log

    transcribe_file(args.input, args.output, args.emissions, model=args.model, adapter=args.adapter,
                    models_dir=args.models_dir, device=args.device, dtype=args.dtype, chunk_s=args.chunk_s,
                    context_s=args.context_s, batch_size=args.batch_size, progress=args.progress)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
