"""Generate the bundled demo corpus: synthesized Bible chapters with exact verse times.

Each chapter is built verse by verse with espeak-ng: every verse is synthesized on its own, its
leading and trailing silence is trimmed (and the edges tapered by a few ms), and the verses are
joined with seeded pauses after a spoken heading that is *not* part of the verse text. Because we
place every verse ourselves, the verse start and end times are known to the sample of the
22.05 kHz master; they are written as ground truth beside the audio, which is stored the way real
users have it (stereo MP3, AAC in MP4, mono WAV), and beside the official text as a
publisher-style DOCX.

Layout written under ``--out`` (default ``resources/demo``)::

    <lang>/audio/<rec>.<mp3|mp4|wav>
    <lang>/text/<rec>.docx
    <lang>/truth/<rec>.json

Every written audio file is decoded back and checked against the master (lag within 1 ms,
length within a few ms); every DOCX is read back and its verse texts compared with the truth.
Any mismatch stops the run.

The texts are in ``tala.demo.chapters``, the DOCX writer in ``tala.demo.docx_chapter``, the
synthesis and encoding (shared with the demo models' training speech) in ``tala.demo.speech``.

    PYTHONPATH=scripts python -m tala.demo.corpus --out resources/demo
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tala.demo.chapters import CORPUS_LANGUAGES, ChapterSource, LanguageSource, verse_text
from tala.demo.docx_chapter import chapter_docx, read_docx_verses
from tala.demo.speech import (
    MASTER_RATE_HZ,
    MP3_RATE_HZ,
    MP4_RATE_HZ,
    Synthesizer,
    ToolMissingError,
    level_with_noise_floor,
    require_tool,
    speak_trimmed,
    synthesize,
    tool_version,
    write_audio,
)
from tala.fileio import atomic_path, write_json_atomic

AAC_FRAME_SAMPLES = 1024  # ffmpeg 5.x keeps the encoder's padding of the last AAC frame on decode
VERIFY_RATE_HZ = 16_000  # the rate the workflow converts to; MP4 is checked there, as the brief says

PEAK_DBFS = -3.0
NOISE_RMS_DBFS = -65.0
LEAD_IN_S = (0.5, 1.0)
AFTER_HEADING_PAUSE_S = (0.8, 1.6)
VERSE_PAUSE_S = (0.3, 1.5)
TRAILING_SILENCE_S = (1.0, 2.0)
SPEED_JITTER_WPM = 12  # espeak -s is words per minute; each chapter gets base +- jitter

MAX_LAG_S = 0.001
MAX_LENGTH_DIFF_S = 0.005
MIN_CHAPTER_S, MAX_CHAPTER_S = 45.0, 120.0
DEFAULT_SEED = 20_240_601


class VerificationError(RuntimeError):
    """A written file does not match what was generated."""


# --------------------------------------------------------------------------- chapter audio


@dataclass(frozen=True)
class Span:
    """Sample indices ``[start, end)`` in the master."""

    start: int
    end: int


@dataclass(frozen=True)
class Chapter:
    master: np.ndarray  # mono float32 at MASTER_RATE_HZ, speech peak at PEAK_DBFS, noise floor
    heading: Span
    verses: tuple[Span, ...]


def _pause_samples(rng: np.random.Generator, bounds_s: tuple[float, float]) -> int:
    return int(round(rng.uniform(*bounds_s) * MASTER_RATE_HZ))


def assemble_chapter(heading: np.ndarray, verses: Sequence[np.ndarray], rng: np.random.Generator) -> Chapter:
    """Join trimmed heading and verse audio with seeded pauses, normalize, add the noise floor.

    Pauses between verses are uniform in VERSE_PAUSE_S; the noise floor is white noise at
    NOISE_RMS_DBFS so that silence is never digital zero, as in real recordings.
    """
    pieces: list[np.ndarray] = []
    cursor = 0

    def put_silence(n: int) -> None:
        nonlocal cursor
        pieces.append(np.zeros(n, np.float32))
        cursor += n

    def put_speech(speech: np.ndarray) -> Span:
        nonlocal cursor
        span = Span(cursor, cursor + len(speech))
        pieces.append(speech.astype(np.float32))
        cursor += len(speech)
        return span

    put_silence(_pause_samples(rng, LEAD_IN_S))
    heading_span = put_speech(heading)
    put_silence(_pause_samples(rng, AFTER_HEADING_PAUSE_S))
    verse_spans = []
    for i, verse in enumerate(verses):
        if i > 0:
            put_silence(_pause_samples(rng, VERSE_PAUSE_S))
        verse_spans.append(put_speech(verse))
    put_silence(_pause_samples(rng, TRAILING_SILENCE_S))

    master = level_with_noise_floor(np.concatenate(pieces), PEAK_DBFS, NOISE_RMS_DBFS, rng)
    return Chapter(master, heading_span, tuple(verse_spans))


def build_chapter(
    heading_text: str,
    verse_texts: Sequence[str],
    voice: str,
    speed: int,
    rng: np.random.Generator,
    pitch: int | None = None,
    synth: Synthesizer = synthesize,
) -> Chapter:
    """Synthesize heading and verses one by one, trim and taper each, and assemble the chapter."""
    heading = speak_trimmed(heading_text, voice, speed, pitch, synth)
    verses = [speak_trimmed(text, voice, speed, pitch, synth) for text in verse_texts]
    return assemble_chapter(heading, verses, rng)


def chapter_rng(seed: int, lang: str, rec: str) -> np.random.Generator:
    """One independent, stable stream per chapter (crc32, since ``hash()`` is salted per run)."""
    return np.random.default_rng([seed, zlib.crc32(f"{lang}/{rec}".encode())])


# --------------------------------------------------------------------------- verification


def probe_audio(path: Path) -> dict:
    """Codec, rate, channels and duration of the first audio stream, as ffprobe reports them."""
    ffprobe = require_tool("ffprobe")
    done = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "a:0", "-of", "json",
         "-show_entries", "stream=codec_name,sample_rate,channels,duration", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"ffprobe failed on {path}: {done.stderr.strip()}")
    stream = json.loads(done.stdout)["streams"][0]
    return {
        "codec": stream["codec_name"],
        "sample_rate": int(stream["sample_rate"]),
        "channels": int(stream["channels"]),
        "duration": float(stream["duration"]),
    }


def decode_mono(path: Path, rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode to mono float32: soundfile for WAV/MP3, ffmpeg for anything else (MP4/AAC)."""
    if path.suffix.lower() in (".wav", ".mp3") and rate is None:
        samples, file_rate = sf.read(path, dtype="float32", always_2d=True)
        return samples.mean(axis=1), file_rate
    ffmpeg = require_tool("ffmpeg")
    rate = rate or probe_audio(path)["sample_rate"]
    done = subprocess.run(
        [ffmpeg, "-v", "error", "-nostdin", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(rate), "-"],
        capture_output=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg could not decode {path}: {done.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(done.stdout, dtype="<f4").copy(), rate


def measure_lag(signal: np.ndarray, reference: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Lag (samples; positive: ``signal`` is late) maximizing the cross-correlation within
    ``max_lag``, and the normalized correlation at that lag."""
    n = min(len(signal), len(reference))
    a = signal[:n].astype(np.float64)
    b = reference[:n].astype(np.float64)
    size = 1 << (2 * n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    window = np.concatenate([corr[size - max_lag :], corr[: max_lag + 1]])
    lag = int(np.argmax(window)) - max_lag
    return lag, float(window[lag + max_lag] / (np.linalg.norm(a) * np.linalg.norm(b)))


def verify_audio(path: Path, master: np.ndarray, fmt: str) -> dict:
    """Decode ``path`` back and compare with the master; raise VerificationError on mismatch."""
    if fmt == "mp4":
        facts = probe_audio(path)
        if (facts["codec"], facts["sample_rate"], facts["channels"]) != ("aac", MP4_RATE_HZ, 2):
            raise VerificationError(f"{path}: unexpected stream {facts}")
        master_s = len(master) / MASTER_RATE_HZ
        if abs(facts["duration"] - master_s) > MAX_LENGTH_DIFF_S:
            raise VerificationError(f"{path}: container duration {facts['duration']} s, master {master_s} s")
        decoded, rate = decode_mono(path, VERIFY_RATE_HZ)
        # ffmpeg 5.x honours the MP4 edit list at the start but keeps the last frame's padding.
        tail_allowance = int(np.ceil(AAC_FRAME_SAMPLES * rate / MP4_RATE_HZ))
    else:
        info = sf.info(path)
        expected = (MP3_RATE_HZ, 2) if fmt == "mp3" else (MASTER_RATE_HZ, 1)
        if (info.samplerate, info.channels) != expected:
            raise VerificationError(f"{path}: {info.samplerate} Hz x {info.channels} ch, expected {expected}")
        decoded, rate = decode_mono(path)
        tail_allowance = 0
    reference = master if rate == MASTER_RATE_HZ else soxr.resample(master, MASTER_RATE_HZ, rate)
    lag, corr = measure_lag(decoded, reference, max_lag=int(0.25 * rate))
    length_diff = len(decoded) - len(reference)
    tolerance = int(MAX_LENGTH_DIFF_S * rate)
    result = {
        "file": str(path), "decoded_rate": rate, "lag_samples": lag, "lag_ms": 1000.0 * lag / rate,
        "correlation": corr, "length_diff_ms": 1000.0 * length_diff / rate,
    }  # fmt: skip
    if abs(lag) > MAX_LAG_S * rate:
        raise VerificationError(f"{path}: decoded audio is offset by {result['lag_ms']:.3f} ms")
    if corr < 0.95:
        raise VerificationError(f"{path}: decoded audio correlates only {corr:.3f} with the master")
    if not -tolerance <= length_diff <= tolerance + tail_allowance:
        raise VerificationError(f"{path}: decoded length differs by {result['length_diff_ms']:.2f} ms")
    return result


# --------------------------------------------------------------------------- driver


def tool_versions() -> dict[str, str]:
    """espeak-ng decides the timings, ffmpeg the encoded bytes: both are recorded in the truth."""
    return {tool: tool_version(tool) for tool in ("espeak-ng", "ffmpeg")}


def seconds(sample_index: int) -> float:
    return round(sample_index / MASTER_RATE_HZ, 6)


def truth_record(
    lang: LanguageSource,
    source: ChapterSource,
    chapter: Chapter,
    speed: int,
    audio: dict,
    seed: int,
    tools: dict[str, str],
) -> dict:
    """The ground truth: times are master sample indices / MASTER_RATE_HZ, ``end`` exclusive."""
    fmt = lang.formats[source.rec]
    return {
        "recording": source.rec,
        "language": lang.lang,
        "audio": f"audio/{source.rec}.{fmt.ext}",
        "text": f"text/{source.rec}.docx",
        "audio_format": audio,
        "duration": seconds(len(chapter.master)),
        "sample_rate_master": MASTER_RATE_HZ,
        "voice": lang.voice,
        "speed": speed,
        "seed": seed,
        "generator": "tala.demo.corpus",
        "tool_versions": tools,
        "heading": {
            "start": seconds(chapter.heading.start),
            "end": seconds(chapter.heading.end),
            "text": source.spoken_heading,
        },
        "verses": [
            {"number": number, "text": verse_text(text), "start": seconds(span.start), "end": seconds(span.end)}
            for number, (text, span) in enumerate(zip(source.verses, chapter.verses), start=1)
        ],
    }


def generate_language(lang: LanguageSource, out: Path, seed: int, verify: bool = True) -> list[dict]:
    tools = tool_versions()
    reports = []
    for source in lang.chapters:
        rng = chapter_rng(seed, lang.lang, source.rec)
        jitter_wpm = int(rng.integers(-SPEED_JITTER_WPM, SPEED_JITTER_WPM + 1))
        speed = lang.base_speed_wpm + source.speed_offset_wpm + jitter_wpm
        chapter = build_chapter(source.spoken_heading, [verse_text(v) for v in source.verses], lang.voice, speed, rng)
        duration_s = len(chapter.master) / MASTER_RATE_HZ
        if not MIN_CHAPTER_S <= duration_s <= MAX_CHAPTER_S:
            raise VerificationError(f"{lang.lang}/{source.rec}: {duration_s:.1f} s is outside 45-120 s")

        fmt = lang.formats[source.rec]
        audio_path = out / lang.lang / "audio" / f"{source.rec}.{fmt.ext}"
        audio = write_audio(chapter.master, fmt, audio_path, rng)
        docx_path = out / lang.lang / "text" / f"{source.rec}.docx"
        with atomic_path(docx_path) as tmp:
            tmp.write_bytes(chapter_docx(source))
        truth = truth_record(lang, source, chapter, speed, audio, seed, tools)
        write_json_atomic(out / lang.lang / "truth" / f"{source.rec}.json", truth)

        report = {"lang": lang.lang, "rec": source.rec, "duration_s": round(duration_s, 3), "speed": speed}
        if verify:
            report.update(verify_audio(audio_path, chapter.master, fmt.ext))
            expected = {v["number"]: v["text"] for v in truth["verses"]}
            if read_docx_verses(docx_path) != expected:
                raise VerificationError(f"{docx_path}: verse texts differ from the truth")
        reports.append(report)
        line = f"{lang.lang}/{source.rec}.{fmt.ext}: {duration_s:6.2f} s, speed {speed}, {len(source.verses)} verses"
        if verify:
            line += (
                f", decoded lag {report['lag_ms']:+.3f} ms, length {report['length_diff_ms']:+.2f} ms,"
                f" correlation {report['correlation']:.4f}"
            )
        print(line, flush=True)
    return reports


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tala.demo.corpus",
        description="Synthesize the bundled demo corpus (audio, DOCX texts, ground-truth verse times) "
        "with espeak-ng and ffmpeg, and verify every written file.",
    )
    parser.add_argument("--out", type=Path, default=Path("resources/demo"), help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--lang", action="append", choices=sorted(CORPUS_LANGUAGES),
        help="only this language (repeatable; default: all)",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip decoding the written files back")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        for tool in ("espeak-ng", "ffmpeg", "ffprobe"):
            require_tool(tool)
        for name in args.lang or sorted(CORPUS_LANGUAGES):
            generate_language(CORPUS_LANGUAGES[name], args.out, args.seed, verify=not args.no_verify)
    except (ToolMissingError, VerificationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
