"""F0 on the units' frame grid, for the vocoder's pitch input (step ``extract_pitch``).

    python -m tala.vocoder.pitch WAV UNITS.json OUT.npy [--f0-min 50 --f0-max 500]

The tracker is Praat's autocorrelation method (Boersma 1993) through ``praat-parselmouth``: a
well-kept C++ core with a voicing decision of its own (pYIN's HMM is ~100x slower on a CPU, YIN has
no voicing decision, pyworld ships no wheels for every Python), ~700x real time on one core and
within 0.1 Hz on a synthesized glide. Praat's pitch is computed every 10 ms over each speech
segment of the units file (with 50 ms of context on both sides); unit frame ``j`` of a segment
covers ``[start + j·20 ms, start + (j+1)·20 ms)`` and gets the pitch at its centre: linear
interpolation between voiced Praat frames, unvoiced (0) when the nearest Praat frame is unvoiced.

Output: float32 Hz per unit frame, the segments' frames concatenated in the units file's order
(``len == units["frames"]``), 0 for unvoiced. One segment at a time: memory does not grow with the
recording.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from tala.errors import InputError, run_cli
from tala.fileio import atomic_path, read_json_object

SAMPLE_RATE = 16_000
FRAME_S = 0.02  # the units' frame
PRAAT_STEP_S = 0.01
CONTEXT_S = 0.05
F0_MIN, F0_MAX = 50.0, 500.0


def _praat_pitch(audio: np.ndarray, sample_rate: int, start_time: float, f0_min: float,
                 f0_max: float) -> tuple[np.ndarray, np.ndarray]:
    """(times in s, Hz with 0 for unvoiced) of Praat's autocorrelation pitch."""
    import parselmouth

    if len(audio) < int(3 / f0_min * sample_rate) + 1:  # Praat needs three periods of the floor
        return np.zeros(0), np.zeros(0)
    sound = parselmouth.Sound(np.asarray(audio, dtype=np.float64), sampling_frequency=sample_rate,
                              start_time=start_time)  # fmt: skip
    pitch = sound.to_pitch_ac(time_step=PRAAT_STEP_S, pitch_floor=f0_min, pitch_ceiling=f0_max)
    return np.asarray(pitch.xs()), np.nan_to_num(pitch.selected_array["frequency"])


def sample_pitch(times: np.ndarray, f0: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The pitch at ``centres``: unvoiced where the nearest tracker frame is, else linear
    interpolation between the voiced tracker frames."""
    out = np.zeros(len(centres), dtype=np.float32)
    voiced = f0 > 0
    if not voiced.any() or not len(centres):
        return out
    nearest = np.clip(np.searchsorted(times, centres), 1, len(times) - 1)
    nearest = np.where(np.abs(times[nearest - 1] - centres) <= np.abs(times[nearest] - centres), nearest - 1,
                       nearest)  # fmt: skip
    keep = voiced[nearest]
    out[keep] = np.interp(centres[keep], times[voiced], f0[voiced])
    return out


def track_f0(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, frame_s: float = FRAME_S, f0_min: float = F0_MIN,
             f0_max: float = F0_MAX) -> np.ndarray:
    """F0 (Hz, 0 unvoiced) of frames ``[i·frame_s, (i+1)·frame_s)`` of one clip, at their centres."""
    n = int(round(len(audio) / (frame_s * sample_rate)))
    times, f0 = _praat_pitch(audio, sample_rate, 0.0, f0_min, f0_max)
    return sample_pitch(times, f0, (np.arange(n) + 0.5) * frame_s)


def segment_pitch(wav: sf.SoundFile, start: float, frames: int, f0_min: float = F0_MIN,
                  f0_max: float = F0_MAX) -> np.ndarray:
    """The pitch of ``frames`` unit frames from ``start`` (s) of an open 16 kHz WAV."""
    rate = wav.samplerate
    first = max(0, int(round((start - CONTEXT_S) * rate)))
    last = min(wav.frames, int(round((start + frames * FRAME_S + CONTEXT_S) * rate)))
    wav.seek(first)
    audio = wav.read(max(0, last - first), dtype="float32", always_2d=True).mean(axis=1)
    times, f0 = _praat_pitch(audio, rate, first / rate, f0_min, f0_max)
    return sample_pitch(times, f0, start + (np.arange(frames) + 0.5) * FRAME_S)


def recording_pitch(wav_path: str | Path, units: dict, f0_min: float = F0_MIN, f0_max: float = F0_MAX) -> np.ndarray:
    """Pitch per unit frame of every segment of a units file (:mod:`tala.units.quantize`'s)."""
    try:
        wav = sf.SoundFile(str(wav_path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise InputError(wav_path, f"cannot read audio ({err})") from None
    with wav:
        if wav.samplerate != SAMPLE_RATE:
            raise InputError(wav_path, f"{wav.samplerate} Hz audio; the workflow's WAVs are {SAMPLE_RATE} Hz")
        parts = [segment_pitch(wav, float(s["start"]), len(s["units"]), f0_min, f0_max) for s in units["segments"]]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, dtype=np.float32)


def read_units(path: str | Path) -> dict:
    units = read_json_object(path)
    if not isinstance(units.get("segments"), list) or "frame_s" not in units:
        raise InputError(path, "not a units file (no 'segments' and 'frame_s'; written by tala.units.quantize)")
    if abs(float(units["frame_s"]) - FRAME_S) > 1e-9:
        raise InputError(path, f"units at {units['frame_s']} s per frame; the vocoder expects {FRAME_S}")
    return units


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tala.vocoder.pitch", description=__doc__.split("\n\n")[0])
    parser.add_argument("wav", type=Path, help="the recording's 16 kHz WAV")
    parser.add_argument("units", type=Path, help="its units (results/{lang}/units/{rec}.json)")
    parser.add_argument("out", type=Path, help="F0 per unit frame (.npy, float32, Hz, 0 unvoiced)")
    parser.add_argument("--f0-min", type=float, default=F0_MIN)
    parser.add_argument("--f0-max", type=float, default=F0_MAX)
    args = parser.parse_args(argv)
    if not 0 < args.f0_min < args.f0_max:
        parser.error("need 0 < --f0-min < --f0-max")
    f0 = recording_pitch(args.wav, read_units(args.units), args.f0_min, args.f0_max)
    with atomic_path(args.out) as tmp, open(tmp, "wb") as fh:
        np.save(fh, f0)  # a file object: np.save would append ".npy" to the temporary name
    voiced = f0 > 0
    print(f"{args.units.stem}: {len(f0)} frames, {voiced.mean() if len(f0) else 0:.0%} voiced, "
          f"median F0 {np.median(f0[voiced]) if voiced.any() else 0:.0f} Hz", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
