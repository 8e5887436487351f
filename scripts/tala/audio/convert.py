"""Convert a recording (MP3, MP4/M4A/AAC, WAV, FLAC, Ogg/Opus) to 16 kHz mono PCM16 WAV.

    python -m tala.audio.convert IN OUT.wav [--quality HQ|VHQ]

Streams in blocks, so an hour-long file needs a few MB of memory. The output is a pure function of
the input's bytes: no dither, fixed block sizes, and a length of exactly
``round(frames_in * 16000 / rate_in)`` samples, so a rerun reproduces the file byte for byte.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from tala.audio_io import BLOCK_S, SAMPLE_RATE, AudioInfo, decode_blocks, downmix, prefetch, probe_audio
from tala.errors import InputError, run_cli
from tala.fileio import atomic_path

# soxr "HQ" is 20-bit precise (stopband ~ -120 dB): already below PCM16's quantization noise
# (~ -98 dBFS), so "VHQ" (28-bit) changes nothing that survives the int16 output, while costing
# about the same; HQ is also soxr's own default.
RESAMPLE_QUALITY = "HQ"

# Files shorter than this convert in a few seconds: a progress bar would only clutter the log.
PROGRESS_MIN_S = 120.0

# soxr's output lags its input by less than a block; this tail is held back so that the total
# can be trimmed or padded to the exact expected length once the input's length is known.
_HOLDBACK_SAMPLES = 4096


@dataclass(frozen=True)
class ConvertInfo:
    """What one conversion read and wrote."""

    src: str
    dst: str
    input: AudioInfo
    frames_in: int  # decoded samples per channel at the input rate
    frames_out: int  # samples written at SAMPLE_RATE
    clipped: int  # output samples clipped to the int16 range

    @property
    def duration_s(self) -> float:
        return self.frames_out / SAMPLE_RATE


def expected_frames(frames_in: int, rate_in: int, rate_out: int = SAMPLE_RATE) -> int:
    """The output length the converter guarantees: the input's duration to the nearest sample."""
    return round(frames_in * rate_out / rate_in)


def resample_mono(blocks: Iterable[np.ndarray], rate_in: int, rate_out: int = SAMPLE_RATE,
                  quality: str = RESAMPLE_QUALITY) -> Iterator[np.ndarray]:
    """Resample a stream of mono float32 blocks; the total length is ``expected_frames`` exactly."""
    if rate_in == rate_out:
        yield from blocks
        return
    resampler = soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality=quality)
    frames_in = frames_out = 0
    pending = np.zeros(0, dtype=np.float32)
    for block in blocks:
        frames_in += len(block)
        pending = np.concatenate([pending, resampler.resample_chunk(block)])
        if len(pending) > _HOLDBACK_SAMPLES:
            ready, pending = pending[:-_HOLDBACK_SAMPLES], pending[-_HOLDBACK_SAMPLES:]
            frames_out += len(ready)
            yield ready
    tail = np.concatenate([pending, resampler.resample_chunk(np.zeros(0, np.float32), last=True)])
    missing = expected_frames(frames_in, rate_in, rate_out) - frames_out
    if missing < 0:
        raise AssertionError(f"resampler ran {-missing} samples ahead of the expected length")
    # soxr's flushed total is within a sample or two of the exact length; zero-pad or trim that.
    yield np.pad(tail[:missing], (0, max(0, missing - len(tail))))


def float_to_pcm16(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Round (no dither, for determinism) and clip float samples to int16; also the clip count.

    The scale is 32768, the inverse of how libsndfile reads PCM16, so that a 16 kHz mono PCM16
    input comes back bit for bit.
    """
    scaled = samples * np.float32(32768.0)
    np.rint(scaled, out=scaled)
    clipped = int(np.count_nonzero((scaled > 32767.0) | (scaled < -32768.0)))
    np.clip(scaled, -32768.0, 32767.0, out=scaled)
    return scaled.astype(np.int16), clipped


def convert_file(src: str | Path, dst: str | Path, *, quality: str = RESAMPLE_QUALITY,
                 block_s: float = BLOCK_S, progress: bool | None = None,
                 info: AudioInfo | None = None) -> ConvertInfo:
    """Convert ``src`` to a 16 kHz mono PCM16 WAV at ``dst`` (written atomically).

    ``progress``: show a tqdm bar on stderr; by default only for inputs over PROGRESS_MIN_S.
    ``info``: the input's :func:`probe_audio` result, if the caller already has it.
    Raises InputError for a missing, empty, unsupported, truncated or non-audio input.
    """
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise InputError(dst, "output path is the input file (raw inputs are never written)")
    if info is None:
        info = probe_audio(src)
    block_frames = max(1, round(block_s * info.sample_rate))
    if progress is None:
        progress = (info.duration_s or 0.0) >= PROGRESS_MIN_S
    bar = tqdm(total=round(info.duration_s or 0) or None, unit="s", desc=f"convert {src.name}",
               file=sys.stderr, disable=not progress, mininterval=5.0, leave=False)

    frames_in = frames_out = clipped = 0
    decoded = prefetch(decode_blocks(src, block_frames, info))

    def mono_blocks() -> Iterator[np.ndarray]:
        nonlocal frames_in
        for block in decoded:
            frames_in += len(block)
            bar.update(len(block) / info.sample_rate)
            yield downmix(block)

    try:
        with bar, atomic_path(dst) as tmp:
            # The temporary name ends in ".part": soundfile is told the format instead of guessing.
            with sf.SoundFile(tmp, "w", SAMPLE_RATE, 1, "PCM_16", format="WAV") as out:
                for block in resample_mono(mono_blocks(), info.sample_rate, quality=quality):
                    pcm, n_clipped = float_to_pcm16(block)
                    out.write(pcm)
                    frames_out += len(pcm)
                    clipped += n_clipped
            if frames_in == 0:
                raise InputError(src, "no audio samples decoded")
    finally:
        decoded.close()  # stops the decoding thread (and any ffmpeg) if writing failed
    return ConvertInfo(str(src), str(dst), info, frames_in, frames_out, clipped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tala.audio.convert",
        description="Convert an audio file (MP3, MP4/M4A/AAC, WAV, FLAC, Ogg/Opus) to 16 kHz mono "
                    "PCM16 WAV, deterministically.")
    parser.add_argument("input", help="the recording; never modified")
    parser.add_argument("output", help="the WAV to write (atomically)")
    parser.add_argument("--quality", choices=["HQ", "VHQ"], default=RESAMPLE_QUALITY,
                        help="soxr resampling quality (default: %(default)s; VHQ gains nothing "
                             "audible in 16-bit output)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help=f"progress bar on stderr (default: for inputs over {PROGRESS_MIN_S:.0f} s)")
    args = parser.parse_args(argv)

    result = convert_file(args.input, args.output, quality=args.quality, progress=args.progress)
    clipped = f", {result.clipped} samples clipped" if result.clipped else ""
    # One line, once the output is complete: a failed conversion logs only its error line.
    print(f"convert: {args.input}: {result.input.describe()} -> {args.output}: {SAMPLE_RATE} Hz mono "
          f"PCM16, {result.duration_s:.2f} s ({result.frames_out} samples){clipped}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
