"""The features units are made of: the output of one transformer layer of a wav2vec2-family model
over each speech segment of a recording, through the shared windowed reader (:mod:`tala.frames`).

A segment (one line of ``results/{lang}/segments/{rec}.tsv``: speech between pauses, at most
``segment.max_span_s``) is read from the 16 kHz WAV on its own, normalized as the model's feature
extractor normalizes one input (zero mean, unit variance over the segment) and run through the
model in windows (:func:`tala.frames.frames_of_samples`, ``Layer(n)``: only the blocks up to n
run). Frame i of a segment starting at ``start`` covers ``[start + i * FRAME_S, start + (i + 1) *
FRAME_S)``: 50 frames per second, the wav2vec2 grid. Memory holds one segment's samples and
features at a time, whatever the length of the recording or the corpus.

The model is any checkpoint ``Wav2Vec2Model.from_pretrained`` loads: a pre-trained one
(``facebook/wav2vec2-large-xlsr-53``, the default; HuBERT-style units use layer 14 of its 24) or a
fine-tuned ``*ForCTC`` one (the CTC head is not used). The fit and the quantization load it the
same way, so a unit means the same thing in both.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tala.device import ensure_mps_fallback

ensure_mps_fallback()  # before torch

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from tala.audio_io import SAMPLE_RATE  # noqa: E402
from tala.errors import InputError  # noqa: E402
from tala.hub import ModelError, _cached_snapshot, _check_model_folder, _first_line, _hub_is_offline  # noqa: E402
from tala.hub import resolve_model  # noqa: E402

FRAME_S = 0.02  # wav2vec2: one frame per 320 samples at 16 kHz


@dataclass(frozen=True)
class Segment:
    """One span of speech of a recording (seconds)."""

    recording: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def read_segments(path: str | Path, recording: str | None = None) -> list[Segment]:
    """The speech spans of a segments TSV (columns start, end[, level_db]); InputError when malformed."""
    path = Path(path)
    recording = recording or path.stem
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
    except OSError as err:
        raise InputError(path, f"cannot read the segments: {err.strerror or err}") from None
    segments = []
    for line, row in enumerate(rows, start=2):
        try:
            start, end = float(row["start"]), float(row["end"])
        except (KeyError, TypeError, ValueError):
            raise InputError(path, f"line {line}: expected numeric 'start' and 'end' columns") from None
        if not 0 <= start < end:
            raise InputError(path, f"line {line}: a segment must have 0 <= start < end, got {start} .. {end}")
        segments.append(Segment(recording, start, end))
    return segments


def read_segment_audio(handle: sf.SoundFile, segment: Segment) -> np.ndarray:
    """The segment's samples (float32) from an open 16 kHz mono WAV (cut at the end of the file)."""
    first = int(round(segment.start * SAMPLE_RATE))
    last = min(int(round(segment.end * SAMPLE_RATE)), handle.frames)
    if last <= first:
        return np.zeros(0, np.float32)
    handle.seek(first)
    samples = handle.read(last - first, dtype="float32", always_2d=True)
    return samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]


def open_wav(path: str | Path) -> sf.SoundFile:
    try:
        handle = sf.SoundFile(str(path))
    except (OSError, RuntimeError, sf.LibsndfileError) as err:
        raise InputError(path, f"cannot read the audio: {_first_line(err)}") from None
    if handle.samplerate != SAMPLE_RATE:
        handle.close()
        raise InputError(path, f"expected {SAMPLE_RATE} Hz audio (the convert step's WAV), got {handle.samplerate} Hz")
    return handle


class FeatureModel:
    """A wav2vec2-family model reduced to one layer's frames (``features(samples)``)."""

    def __init__(self, model: str, layer: int, *, models_dir: str | Path | None = None, device: str = "auto",
                 dtype: str = "auto"):
        import torch
        import transformers
        from transformers import Wav2Vec2Model

        from tala.device import describe_device, pick_device, pick_dtype
        from tala.frames import Layer, check_output, output_size

        self.name = model
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        resolved = resolve_model(model, models_dir)
        folder = Path(resolved).expanduser()
        if folder.exists():
            _check_model_folder(folder)
            source = str(folder)
        elif _hub_is_offline():
            cached = _cached_snapshot(resolved)
            if cached is None:
                raise ModelError(model, "model not downloaded and the hub is offline (HF_HUB_OFFLINE=1); run "
                                        "`snakemake download_models` on a machine with internet first")
            source = str(cached)
        else:
            source = resolved
        transformers.logging.set_verbosity_error()  # "weights not used: lm_head" is expected here
        try:
            net = Wav2Vec2Model.from_pretrained(source, dtype=self.dtype)
        except (OSError, ValueError) as err:
            raise ModelError(model, f"cannot load it as a wav2vec2 model: {_first_line(err)}") from None
        self.model = net.to(self.device).eval()
        self.output = Layer(layer)
        try:
            check_output(self.model, self.output)
        except ValueError as err:
            raise ModelError(model, f"units.layer {layer}: {err}") from None
        self.layer = layer
        self.dim = output_size(self.model, self.output)
        self.source = source
        self.device_label = describe_device(self.device)
        self._torch = torch

    def features(self, samples: np.ndarray) -> np.ndarray:
        """Frames x dim (float32) of one segment's samples, on the wav2vec2 frame grid."""
        from tala.frames import frames_of_samples

        out = frames_of_samples(self.model, samples, self.output, device=self.device, dtype=self.dtype)
        return np.ascontiguousarray(out, dtype=np.float32)

    def describe(self) -> dict:
        return {"model": self.name, "layer": self.layer, "dim": self.dim, "frame_s": FRAME_S,
                "features": self.output.describe()}


def segment_features(model: FeatureModel, wav: str | Path, segments: list[Segment]) -> Iterator[tuple[Segment, np.ndarray]]:
    """(segment, frames x dim) for each segment of one recording, one at a time."""
    if not segments:
        return
    with open_wav(wav) as handle:
        for segment in segments:
            yield segment, model.features(read_segment_audio(handle, segment))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
