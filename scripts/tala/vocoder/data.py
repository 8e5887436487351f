"""The vocoder's data: windows of (units, pitch, audio) from a language's speech segments.

A language's material is, per recording, its units file (:mod:`tala.units.quantize`: segments with
their start and one unit id per 20 ms frame), its pitch (:mod:`tala.vocoder.pitch`: Hz per unit
frame) and its 16 kHz WAV. Only an index is held in memory (recording, segment start, frame count,
offset into the pitch array) and the pitch arrays (4 bytes per 20 ms: 58 MB for 80 hours); the
audio of a window is read from its WAV when the batch needs it, so memory does not grow with the
corpus.

Training windows are ``window_frames`` frames (1 s by default) inside one segment, drawn uniformly
over all positions of all segments long enough; an epoch's draws are a pure function of
``(seed, epoch)``, so a resumed run draws what an uninterrupted one would. A window is named by one
integer (``segment * stride + offset``) so that the training core's batches are lists of ints.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from tala.errors import InputError
from tala.fileio import read_jsonl
from tala.vocoder.pitch import FRAME_S, read_units

SAMPLE_RATE = 16_000
HOP = round(FRAME_S * SAMPLE_RATE)  # 320 samples per unit frame


@dataclass(frozen=True)
class Segment:
    recording: int  # index into Corpus.recordings
    start_sample: int
    frames: int
    pitch_offset: int  # where its frames start in the recording's pitch array


@dataclass
class Recording:
    name: str
    wav: Path
    starts: list[int]  # per segment, its first sample
    units: list[np.ndarray]  # per segment, int64
    pitch: np.ndarray  # float32 Hz per frame, the segments' frames concatenated


@dataclass
class Batch:
    units: torch.Tensor  # B x T long
    pitch: torch.Tensor  # B x T float (Hz, 0 unvoiced)
    audio: torch.Tensor  # B x 1 x T*HOP float


class Corpus:
    """The segments of some recordings, with their units and pitch in memory and audio on disk."""

    def __init__(self, recordings: list[Recording]):
        self.recordings = recordings
        self.segments: list[Segment] = []
        self.segment_units: list[np.ndarray] = []
        for r, rec in enumerate(recordings):
            offset = 0
            for units, start in zip(rec.units, rec.starts):
                self.segments.append(Segment(r, start, len(units), offset))
                self.segment_units.append(units)
                offset += len(units)

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.segments)

    @property
    def hours(self) -> float:
        return self.frames * FRAME_S / 3600

    def max_unit(self) -> int:
        return max((int(u.max()) for u in self.segment_units if len(u)), default=-1)

    def window(self, segment: int, offset: int, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(units, pitch, audio) of ``frames`` frames from frame ``offset`` of a segment; audio
        past the end of the file is zeros (a segment's last frame may overhang by a few samples)."""
        seg = self.segments[segment]
        rec = self.recordings[seg.recording]
        units = self.segment_units[segment][offset : offset + frames]
        pitch = rec.pitch[seg.pitch_offset + offset : seg.pitch_offset + offset + len(units)]
        first = seg.start_sample + offset * HOP
        audio, rate = sf.read(str(rec.wav), start=first, stop=first + len(units) * HOP, dtype="float32",
                              always_2d=True)  # fmt: skip
        audio = audio.mean(axis=1)
        if len(audio) < len(units) * HOP:
            audio = np.pad(audio, (0, len(units) * HOP - len(audio)))
        return units, pitch, audio

    def batch(self, windows: Sequence[tuple[int, int]], frames: int, ratios: Sequence[float] | None = None,
              f0_range: tuple[float, float] = (50.0, 500.0), seed: int = 0) -> Batch:
        """The windows' units, pitch and audio; ``ratios`` (one per window, 1 = as recorded) shift
        each window's pitch (:func:`shift_pitch`, window ``i`` with Praat's generator at ``seed + i``)."""
        parts = [self.window(s, o, frames) for s, o in windows]
        if ratios is not None:
            parts = [(u, *shift_pitch(a, p, r, *f0_range, seed=seed + i)[::-1]) if r != 1 else (u, p, a)
                     for i, ((u, p, a), r) in enumerate(zip(parts, ratios))]  # fmt: skip
        return Batch(torch.from_numpy(np.stack([p[0] for p in parts]).astype(np.int64)),
                     torch.from_numpy(np.stack([p[1] for p in parts]).astype(np.float32)),
                     torch.from_numpy(np.stack([p[2] for p in parts]))[:, None])  # fmt: skip


def shift_pitch(audio: np.ndarray, pitch: np.ndarray, ratio: float, f0_min: float = 50.0,
                f0_max: float = 500.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The window with its pitch multiplied by ``ratio``, its duration and formants kept (Praat's
    PSOLA "Change gender": ~15 ms per second of audio), and the pitch values to match.

    Why: a reader's pitch varies little (the demo's voices sit within a few Hz of 100 Hz, twice
    the unit rate), so a generator trained on it alone can make its voicing with structure locked
    to the 20 ms frames and ignore its pitch input; windows shifted over most of an octave teach it
    that the pitch it is given is the pitch it must make."""
    import parselmouth
    from parselmouth.praat import call, run

    voiced = pitch > 0
    if not voiced.any() or len(audio) < int(3 / f0_min * SAMPLE_RATE) + 1:
        return audio, pitch
    target = float(np.clip(np.median(pitch[voiced]) * ratio, f0_min, f0_max))
    sound = parselmouth.Sound(np.asarray(audio, dtype=np.float64), sampling_frequency=SAMPLE_RATE)
    # Praat's resynthesis draws random numbers: seeded, a resumed run gets the audio it had.
    run(f"random_initializeWithSeedUnsafelyButPredictably ({int(seed) % 2**31})")
    with warnings.catch_warnings():  # "no voiced segments found": Praat's voicing is stricter; kept as is
        warnings.simplefilter("ignore", parselmouth.PraatWarning)
        shifted = call(sound, "Change gender", f0_min, f0_max, 1.0, target, 1.0, 1.0).values[0]
    shifted = np.pad(shifted[: len(audio)], (0, max(0, len(audio) - len(shifted)))).astype(np.float32)
    new_pitch = np.where(voiced, np.clip(pitch * ratio, f0_min, f0_max), 0.0).astype(np.float32)
    return shifted, new_pitch


def load_recording(units_path: str | Path, pitch_path: str | Path, wav_path: str | Path) -> Recording:
    """One recording's units, pitch and WAV, checked against each other."""
    units = read_units(units_path)
    try:
        pitch = np.load(pitch_path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(pitch_path, f"cannot read the pitch array ({err})") from None
    frames = sum(len(s["units"]) for s in units["segments"])
    if pitch.ndim != 1 or len(pitch) != frames:
        raise InputError(pitch_path, f"{pitch.shape} pitch values for {frames} unit frames in {units_path}; "
                                     "rerun extract_pitch")  # fmt: skip
    try:
        info = sf.info(str(wav_path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise InputError(wav_path, f"cannot read audio ({err})") from None
    if info.samplerate != SAMPLE_RATE:
        raise InputError(wav_path, f"{info.samplerate} Hz audio; the vocoder expects {SAMPLE_RATE} Hz")
    return Recording(Path(units_path).stem, Path(wav_path),
                     [int(round(float(s["start"]) * SAMPLE_RATE)) for s in units["segments"]],
                     [np.asarray(s["units"], dtype=np.int64) for s in units["segments"]], pitch.astype(np.float32))  # fmt: skip


def split_recordings(manifests: Sequence[str | Path]) -> set[str]:
    """The recordings named in dataset manifests (``dataset/{valid,test}.jsonl``)."""
    names = set()
    for manifest in manifests:
        for _, record in read_jsonl(manifest):
            if "recording" in record:
                names.add(str(record["recording"]))
    return names


def check_units(recording: Recording, units_path: str | Path, n_units: int) -> None:
    """A unit id the embedding cannot hold (units of another k-means) is one clear error."""
    for units in recording.units:
        if len(units) and (int(units.max()) >= n_units or int(units.min()) < 0):
            bad = int(units.max()) if int(units.max()) >= n_units else int(units.min())
            raise InputError(units_path, f"unit id {bad} is outside the generator's {n_units} units "
                                         "(units of another k-means?)")  # fmt: skip


@dataclass(frozen=True)
class WindowSampler:
    """Random training windows of ``frames`` frames, an epoch of ``per_epoch`` of them a pure
    function of (seed, epoch)."""

    lengths: tuple[int, ...]  # frames of each segment
    frames: int
    per_epoch: int
    batch_size: int
    seed: int

    @property
    def stride(self) -> int:
        return max(self.lengths) + 1

    def eligible(self) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.lengths) >= self.frames)

    def positions(self) -> int:
        """How many distinct windows there are."""
        lengths = np.asarray(self.lengths)
        return int(np.maximum(lengths - self.frames + 1, 0).sum())

    def batches(self, epoch: int) -> list[list[int]]:
        eligible = self.eligible()
        counts = np.asarray(self.lengths)[eligible] - self.frames + 1
        rng = np.random.default_rng([self.seed, epoch])
        n = (self.per_epoch // self.batch_size) * self.batch_size
        segments = eligible[rng.choice(len(eligible), size=n, p=counts / counts.sum())]
        offsets = (rng.random(n) * (np.asarray(self.lengths)[segments] - self.frames + 1)).astype(np.int64)
        ids = segments.astype(np.int64) * self.stride + offsets
        return [ids[i : i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]

    def decode(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        return [(int(i) // self.stride, int(i) % self.stride) for i in ids]


def fixed_windows(corpus: Corpus, frames: int, count: int, seed: int) -> list[tuple[int, int, int]]:
    """Up to ``count`` distinct validation windows ``(segment, offset, frames)``, the same every
    time: seeded draws over all segments in proportion to their length (a segment shorter than
    ``frames`` is one window, whole)."""
    lengths = np.asarray([s.frames for s in corpus.segments])
    if not len(lengths) or lengths.sum() == 0:
        return []
    rng = np.random.default_rng(seed)
    chosen = set()
    for segment in rng.choice(len(lengths), size=count, p=lengths / lengths.sum()):
        length = int(lengths[segment])
        offset = int(rng.integers(0, length - frames + 1)) if length > frames else 0
        chosen.add((int(segment), offset, min(frames, length)))
    return sorted(chosen)
