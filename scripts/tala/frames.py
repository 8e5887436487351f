"""Windowed, resumable inference of a wav2vec2-family model over a whole recording, frame by frame.

The core that the transcription step (log-probabilities of a CTC head) and the unit features (the
hidden states of one transformer layer) share: :func:`run_windows` writes one row per frame of the
recording into an ``.npy`` file, in bounded memory, resuming after a kill.

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

What a frame holds: :class:`LogProbs` (log-softmax of a CTC model's head) or :class:`Layer` ``(n)``
(the output of the n-th transformer block, 1-based: ``hidden_states[n]`` of the model's own
``output_hidden_states=True`` for n below the number of blocks; the blocks after n are not run).

Input normalization
-------------------
Wav2Vec2FeatureExtractor's ``do_normalize`` scales each input to zero mean and unit variance. Done
per window, the scale would change at every window boundary and chunked output would depend on
the chunking. We instead compute the mean and standard deviation of the whole recording in a first
streaming pass (a few ms per minute) and normalize every window with them: exactly what the
feature extractor does to the recording processed in one piece.

Memory, files and resuming
--------------------------
Audio is read per batch with soundfile (seek + read). Rows go straight into an ``.npy`` file whose
header (with the final frame count) is written first, by plain file writes rather than a memory
map, so that neither the process's memory nor its resident set grows with the length of the
recording. The partial file and a small progress record live beside the output under hidden names
(``.<name>.partial.npy`` / ``.partial.json``): Snakemake deletes a failed job's declared outputs but
not these. A rerun with the same settings (the caller's: input, model files, device, windowing …)
continues after the last completed batch; different settings start over. The caller renames the
partial file to the output once it has used it (:meth:`WindowRun.finish`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from tala.audio_io import SAMPLE_RATE, probe_audio
from tala.errors import InputError
from tala.fileio import write_json_atomic

CHUNK_S = 30.0
CONTEXT_S = 2.0
# Feature-encoder pieces: 10 s keeps the largest intermediate (the first conv layer's output,
# 512 x 3,200/s float32) near 65 MB.
CONV_PIECE_FRAMES = 500
STATS_BLOCK_S = 60.0
READ_BLOCK_FRAMES = 1 << 16
# The feature extractor's variance floor (Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm).
NORM_EPSILON = 1e-7
# (start, stop) -> float32 samples [start, stop) of the recording, zero-padded past its end.
Reader = Callable[[int, int], np.ndarray]
# Bumped whenever the partial-file layout or the computation changes, so stale partials restart.
PARTIAL_FORMAT = 1


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


@dataclass(frozen=True)
class RecordingPlan:
    """How one recording is cut into windows for one model."""

    geometry: FrameGeometry
    num_frames: int
    chunk_frames: int
    context_frames: int
    windows: list[Window]
    local_encoder: bool  # the feature encoder normalizes per frame: computed once per batch


def plan_recording(model, num_samples: int, chunk_s: float = CHUNK_S, context_s: float = CONTEXT_S) -> RecordingPlan:
    """The frame grid and windows of a recording of ``num_samples`` for ``model`` (a wav2vec2 family model)."""
    config = _base(model).config
    geometry = conv_geometry(config.conv_kernel, config.conv_stride)
    num_frames = max(0, int(_base(model)._get_feat_extract_output_lengths(num_samples)))
    chunk_frames = max(1, round(chunk_s * SAMPLE_RATE / geometry.stride))
    context_frames = max(0, round(context_s * SAMPLE_RATE / geometry.stride))
    return RecordingPlan(geometry, num_frames, chunk_frames, context_frames,
                         plan_windows(num_frames, chunk_frames, context_frames),
                         getattr(config, "feat_extract_norm", "group") == "layer")


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
# The .npy file, written by plain file writes
# ---------------------------------------------------------------------------------------------

def create_npy(path: Path, shape: tuple[int, int], dtype=np.float16) -> int:
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


def iter_npy_rows(path: Path, block_rows: int = READ_BLOCK_FRAMES) -> Iterator[np.ndarray]:
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
    for layer in _base(model).feature_extractor.conv_layers:
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
    for layer in _base(model).feature_extractor.conv_layers:
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
            pieces.append(_base(model).feature_extractor(samples[lo:hi][None])[0].transpose(0, 1))
    return torch.cat(pieces)


def _base(model):
    """The wav2vec2 body of a model with a head (``Wav2Vec2ForCTC.wav2vec2``) or the bare model."""
    return getattr(model, "wav2vec2", model)


def _window_hidden_states(model, batch: list[Window], read: Reader, geometry: FrameGeometry,
                          norm: Normalization, device: torch.device, dtype: torch.dtype,
                          local_encoder: bool) -> list[torch.Tensor]:
    """The projected features (frames x hidden) of each window of a batch."""
    base = _base(model)
    if local_encoder:
        first, last = min(w.start for w in batch), max(w.end for w in batch)
        lo, hi = geometry.samples_for_frames(first, last)
        samples = torch.from_numpy(norm.apply(read(lo, hi))).to(device=device, dtype=dtype)
        features = _conv_features(model, samples, last - first, geometry)
        hidden, _ = base.feature_projection(features[None])
        return [hidden[0, w.start - first:w.end - first] for w in batch]
    states = []
    for window in batch:
        lo, hi = geometry.samples_for_frames(window.start, window.end)
        samples = torch.from_numpy(norm.apply(read(lo, hi))).to(device=device, dtype=dtype)
        features = base.feature_extractor(samples[None]).transpose(1, 2)
        hidden, _ = base.feature_projection(features)
        states.append(hidden[0, :window.num_frames])
    return states


@dataclass(frozen=True)
class LogProbs:
    """Frames hold the log-softmax of a CTC model's head (``lm_head``): frames x vocabulary."""

    def describe(self) -> str:
        return "log_softmax over the vocabulary, one row per frame"


@dataclass(frozen=True)
class Layer:
    """Frames hold the output of transformer block ``number`` (1-based): frames x hidden size.

    Equal to ``hidden_states[number]`` of the model's ``output_hidden_states=True`` for a block
    before the last (after the last, the model adds its final layer norm; here it does not). The
    blocks after ``number`` are not run."""

    number: int

    def describe(self) -> str:
        return f"output of transformer block {self.number} (hidden_states[{self.number}]), one row per frame"


Output = LogProbs | Layer


def check_output(model, output: Output) -> None:
    """ValueError when the model cannot give ``output`` (no CTC head; a block it does not have)."""
    if isinstance(output, LogProbs):
        if getattr(model, "lm_head", None) is None:
            raise ValueError("the model has no CTC head (lm_head): log-probabilities need a *ForCTC model")
        return
    blocks = len(_base(model).encoder.layers)
    if not 1 <= output.number <= blocks:
        raise ValueError(f"layer {output.number} does not exist: the model has transformer blocks 1..{blocks}")


def output_size(model, output: Output) -> int:
    """Values per frame: the vocabulary size or the hidden size."""
    if isinstance(output, LogProbs):
        return int(model.lm_head.out_features)
    return int(_base(model).config.hidden_size)


def _run_blocks(encoder, hidden: torch.Tensor, mask: torch.Tensor | None, number: int) -> torch.Tensor:
    """The output of block ``number`` of a wav2vec2 encoder, running only the blocks before it.

    The encoder's own forward pass is used, with its block list cut to ``number`` for the call and a
    hook catching block ``number``'s output (before the stable-layer-norm variant's final norm)."""
    caught: list[torch.Tensor] = []
    blocks = encoder.layers
    handle = blocks[number - 1].register_forward_hook(
        lambda _m, _i, out: caught.append(out[0] if isinstance(out, tuple) else out))
    try:
        encoder.layers = blocks[:number]
        encoder(hidden, attention_mask=mask)
    finally:
        encoder.layers = blocks
        handle.remove()
    return caught[-1]


def batch_outputs(model, batch: list[Window], read: Reader, geometry: FrameGeometry,
                  norm: Normalization, device: torch.device, dtype: torch.dtype, local_encoder: bool,
                  output: Output = LogProbs()) -> list[np.ndarray]:
    """The kept frames of each window of a batch (float32, frames x values): ``output`` of each.

    Equivalent to the model's own forward pass on each window's samples, split at the feature
    projection so that the encoder runs once per batch (see the module docstring).
    """
    states = _window_hidden_states(model, batch, read, geometry, norm, device, dtype, local_encoder)
    longest = max(len(s) for s in states)
    hidden = states[0].new_zeros((len(states), longest, states[0].shape[-1]))
    mask = torch.zeros((len(states), longest), dtype=torch.bool, device=hidden.device)
    for row, state in enumerate(states):
        hidden[row, :len(state)] = state
        mask[row, :len(state)] = True
    attention = None if bool(mask.all()) else mask
    encoder = _base(model).encoder
    if isinstance(output, Layer):
        values = _run_blocks(encoder, hidden, attention, output.number).float()
    else:
        encoded = encoder(hidden, attention_mask=attention)
        values = torch.log_softmax(model.lm_head(encoded.last_hidden_state).float(), dim=-1)
    return [values[row, w.keep_start - w.start:w.keep_end - w.start].cpu().numpy()
            for row, w in enumerate(batch)]


# ---------------------------------------------------------------------------------------------
# A resumable run over a recording
# ---------------------------------------------------------------------------------------------

def partial_paths(out_npy: str | Path) -> tuple[Path, Path]:
    """The hidden partial ``.npy`` and progress-record paths beside ``out_npy``."""
    out_npy = Path(out_npy)
    return (out_npy.with_name(f".{out_npy.name}.partial.npy"),
            out_npy.with_name(f".{out_npy.name}.partial.json"))


def _settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _load_progress(record_path: Path, data_path: Path, settings_hash: str, shape: tuple[int, int],
                   dtype: np.dtype) -> dict | None:
    """The progress record if it belongs to these settings and its data file is intact."""
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        offset, found_shape, found_dtype = npy_layout(data_path)
    except (OSError, ValueError, KeyError):
        return None
    if record.get("settings_hash") != settings_hash or tuple(found_shape) != shape \
            or found_dtype != dtype or record.get("data_offset") != offset:
        return None
    if data_path.stat().st_size != offset + shape[0] * shape[1] * dtype.itemsize:
        return None
    return record


class WindowRun:
    """The partial ``.npy`` of one recording's frames and its progress record (see the module docstring).

    Opening continues a compatible partial run (same ``settings``, intact file) or starts a fresh
    one, computing the recording's normalization statistics when ``normalize``. :meth:`write`
    stores a batch's kept frames and, once they are on disk, the progress; :meth:`finish` renames
    the partial file to the output and removes the record.
    """

    def __init__(self, audio: str | Path, out_npy: str | Path, shape: tuple[int, int], num_windows: int,
                 settings: dict, normalize: bool, dtype=np.float16, label: str = "frames"):
        self.audio, self.out_npy, self.shape = Path(audio), Path(out_npy), tuple(shape)
        self.dtype = np.dtype(dtype)
        self.data_path, self.record_path = partial_paths(self.out_npy)
        self.data_path.parent.mkdir(parents=True, exist_ok=True)
        settings_hash = _settings_hash(settings)
        record = _load_progress(self.record_path, self.data_path, settings_hash, self.shape, self.dtype)
        if record is not None:
            if record["windows_done"]:
                print(f"{label}: {audio}: resuming after window {record['windows_done']} of {num_windows}",
                      file=sys.stderr)
        else:
            self.data_path.unlink(missing_ok=True)
            self.record_path.unlink(missing_ok=True)
            mean, std = audio_stats(audio) if normalize else (0.0, 1.0)
            offset = create_npy(self.data_path, self.shape, self.dtype)
            record = {"settings_hash": settings_hash, "windows_done": 0, "windows_total": num_windows,
                      "data_offset": offset, "shape": list(self.shape), "mean": mean, "std": std,
                      "settings": settings}
            write_json_atomic(self.record_path, record)
        self.record = record
        self.normalization = Normalization("recording", record["mean"], record["std"]) if normalize \
            else Normalization("none")

    @property
    def windows_done(self) -> int:
        return int(self.record["windows_done"])

    def write(self, batch: list[Window], blocks: list[np.ndarray]) -> None:
        row_bytes = self.shape[1] * self.dtype.itemsize
        with self.data_path.open("r+b") as out:
            out.seek(self.record["data_offset"] + batch[0].keep_start * row_bytes)
            for block in blocks:
                out.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
            out.flush()
            os.fsync(out.fileno())  # the data is on disk before the record says so
        self.record["windows_done"] = batch[-1].index + 1
        write_json_atomic(self.record_path, self.record)

    def finish(self) -> Path:
        os.replace(self.data_path, self.out_npy)
        return self.out_npy

    def forget(self) -> None:
        """Remove the progress record (after the caller's own outputs are written)."""
        self.record_path.unlink(missing_ok=True)


def run_windows(model, run: WindowRun, windows: list[Window], batch_size: int, geometry: FrameGeometry,
                device: torch.device, dtype: torch.dtype, output: Output = LogProbs(), *,
                progress: bool = False, desc: str = "frames",
                on_batch: Callable[[int, int], None] | None = None) -> None:
    """Compute the windows ``run`` has not done yet, batch by batch, into its partial file.

    ``on_batch(windows_done, windows_total)`` is called after each batch is safely on disk (tests
    use it to interrupt a run). ``progress``: a tqdm bar on stderr counting seconds of audio.
    """
    config = _base(model).config
    local_encoder = getattr(config, "feat_extract_norm", "group") == "layer"
    done = run.windows_done
    num_frames = windows[-1].keep_end if windows else 0
    bar = tqdm(total=round(num_frames * geometry.frame_s, 2), unit="s", desc=desc,
               initial=round(windows[done - 1].keep_end * geometry.frame_s, 2) if done else 0,
               file=sys.stderr, disable=not progress, mininterval=5.0, leave=False)
    with bar, sf.SoundFile(str(run.audio)) as handle, torch.inference_mode():
        for batch in plan_batches(windows, batch_size, done):
            blocks = batch_outputs(model, batch, lambda lo, hi: read_samples(handle, lo, hi), geometry,
                                   run.normalization, device, dtype, local_encoder, output)
            run.write(batch, blocks)
            bar.update((batch[-1].keep_end - batch[0].keep_start) * geometry.frame_s)
            bar.set_postfix_str(f"windows {run.windows_done}/{len(windows)}", refresh=False)
            if on_batch is not None:
                on_batch(run.windows_done, len(windows))


def frames_of_samples(model, samples: np.ndarray, output: Output = LogProbs(), *, chunk_s: float = CHUNK_S,
                      context_s: float = CONTEXT_S, batch_size: int = 1, normalize: bool = True,
                      device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> np.ndarray:
    """``output`` of every frame of an in-memory recording (16 kHz mono float32), float32 frames x values.

    The same windows, normalization and arithmetic as :func:`run_windows`, without files: for clips
    and tests (a long recording belongs in :class:`WindowRun`, whose memory does not grow with it)."""
    samples = np.asarray(samples, np.float32)
    plan = plan_recording(model, len(samples), chunk_s, context_s)
    check_output(model, output)
    if plan.num_frames == 0:
        return np.zeros((0, output_size(model, output)), np.float32)
    wide = samples.astype(np.float64)  # as audio_stats sums
    norm = Normalization("recording", float(wide.mean()), float(wide.std())) if normalize else Normalization("none")

    def read(lo: int, hi: int) -> np.ndarray:
        piece = samples[lo:hi]
        return np.pad(piece, (0, hi - lo - len(piece))) if len(piece) < hi - lo else piece

    device = torch.device(device)
    blocks = []
    with torch.inference_mode():
        for batch in plan_batches(plan.windows, batch_size):
            blocks += batch_outputs(model, batch, read, plan.geometry, norm, device, dtype, plan.local_encoder, output)
    return np.concatenate(blocks)
