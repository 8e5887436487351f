"""Speech for the demo, from espeak-ng: one utterance at a time, trimmed and tapered, and stored the
way the demo corpus stores its chapters (WAV, MP3, AAC in MP4).

Every demo recipe synthesizes through these helpers: the corpus chapters (``tala.demo.corpus``)
and the training speech of the demo models (``tala.demo.training_speech``), so that a model trained
on synthesized speech hears what the demo chapters sound like.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tala.demo.text import OKINA
from tala.fileio import atomic_path

MASTER_RATE_HZ = 22_050  # espeak-ng's native output rate; truth times are master sample indices
MP3_RATE_HZ = 44_100
MP4_RATE_HZ = 48_000
TRIM_THRESHOLD_DBFS = -60.0
# espeak-ng stops its last phoneme within ~5 ms, a click that lossy codecs smear into the pause;
# a speaker's voice dies away, so each trimmed utterance gets a short raised-cosine taper.
FADE_IN_S = 0.002
FADE_OUT_S = 0.030
RIGHT_CHANNEL_GAIN_DB = (-1.5, -0.5)  # stereo files: a slightly quieter right channel
# The variants with an echo also breathe (f3: ``breath``): their dry speech can trail its last vowel
# by up to 30 ms of aspiration noise at about -55 dBFS, which is not speech; their end is found here.
ECHO_VOICE_END_DBFS = -50.0

# espeak-ng reads a word-initial okina after another word as an opening quote and inserts a
# ~0.15 s pause; inside a word (fa'aigoa) it correctly speaks a glottal stop, so keep those.
_WORD_INITIAL_OKINA = re.compile(rf"(?<!\w){OKINA}")
_ECHO_LINE = re.compile(r"^\s*echo\s+(\d+)\s+(\d+)", re.MULTILINE)
_ESPEAK_DATA = re.compile(r"Data at:\s*(\S+)")
_VERSION_PATTERNS = {"espeak-ng": (r"text-to-speech:\s*(\S+)", "--version"),
                     "ffmpeg": (r"ffmpeg version\s+(\S+)", "-version")}  # fmt: skip

Synthesizer = Callable[[str, str, int, "int | None"], np.ndarray]


class ToolMissingError(RuntimeError):
    """espeak-ng or ffmpeg is not on PATH."""


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissingError(
            f"{name} not found on PATH; the demo corpus generator needs espeak-ng and ffmpeg "
            f"(Debian/Ubuntu: apt-get install espeak-ng ffmpeg; macOS: brew install espeak-ng ffmpeg)"
        )
    return path


def tool_version(tool: str) -> str:
    """espeak-ng's or ffmpeg's version as it reports it (``"unknown"`` if it says none)."""
    pattern, flag = _VERSION_PATTERNS[tool]
    done = subprocess.run([require_tool(tool), flag], capture_output=True, text=True)
    found = re.search(pattern, done.stdout)
    return found.group(1) if found else "unknown"


# --------------------------------------------------------------------------- synthesis


def espeak_text(text: str) -> str:
    """The text as sent to espeak-ng: word-initial okinas dropped (see ``_WORD_INITIAL_OKINA``)."""
    return _WORD_INITIAL_OKINA.sub("", text)


def synthesize(text: str, voice: str, speed: int, pitch: int | None = None) -> np.ndarray:
    """Speak ``text`` with espeak-ng; mono float32 at MASTER_RATE_HZ (silence edges untrimmed).

    ``speed`` is espeak's words per minute (-s, default 175), ``pitch`` its 0-99 pitch (-p).
    """
    espeak = require_tool("espeak-ng")
    with tempfile.TemporaryDirectory(prefix="tala-espeak-") as tmp:
        text_path, wav_path = Path(tmp) / "text.txt", Path(tmp) / "speech.wav"
        text_path.write_text(espeak_text(text), encoding="utf-8")
        cmd = [espeak, "-v", voice, "-s", str(speed), "-b", "1", "-f", str(text_path), "-w", str(wav_path)]
        if pitch is not None:
            cmd[1:1] = ["-p", str(pitch)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not wav_path.exists():
            raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {done.stderr.strip()}")
        samples, rate = sf.read(wav_path, dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    if rate != MASTER_RATE_HZ:
        samples = soxr.resample(samples, rate, MASTER_RATE_HZ).astype(np.float32)
    if samples.size == 0 or not np.any(samples):
        raise RuntimeError(f"espeak-ng produced no audio for {text!r} (voice {voice!r})")
    return samples


def trim_silence(samples: np.ndarray, threshold_dbfs: float = TRIM_THRESHOLD_DBFS,
                 end_threshold_dbfs: float | None = None) -> tuple[np.ndarray, int, int]:
    """Cut leading and trailing samples whose magnitude stays below ``threshold_dbfs``
    (trailing ones below ``end_threshold_dbfs`` when given).

    Returns the kept samples and their ``[start, end)`` indices in the input: ``start`` is the
    first sample above the threshold, ``end`` one past the last.
    """
    threshold = 10.0 ** (threshold_dbfs / 20.0)
    loud = np.flatnonzero(np.abs(samples) > threshold)
    if loud.size == 0:
        raise ValueError(f"no sample above {threshold_dbfs} dBFS: nothing to keep")
    start, end = int(loud[0]), int(loud[-1]) + 1
    if end_threshold_dbfs is not None:
        loud_end = np.flatnonzero(np.abs(samples[start:]) > 10.0 ** (end_threshold_dbfs / 20.0))
        if loud_end.size == 0:
            raise ValueError(f"no sample above {end_threshold_dbfs} dBFS: nothing to keep")
        end = start + int(loud_end[-1]) + 1
    return samples[start:end], start, end


def _rising_cosine(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 1) / (n + 1))).astype(np.float32)


def taper_edges(samples: np.ndarray, fade_in_s: float = FADE_IN_S, fade_out_s: float = FADE_OUT_S) -> np.ndarray:
    """Raised-cosine fade-in and fade-out at the edges; the length (and so the span) is kept."""
    out = samples.astype(np.float32, copy=True)
    n_in = min(int(round(fade_in_s * MASTER_RATE_HZ)), len(out) // 2)
    n_out = min(int(round(fade_out_s * MASTER_RATE_HZ)), len(out) // 2)
    if n_in:
        out[:n_in] *= _rising_cosine(n_in)
    if n_out:
        out[len(out) - n_out :] *= _rising_cosine(n_out)[::-1]
    return out


@cache
def voice_echo(voice: str) -> tuple[int, int] | None:
    """The echo of an espeak-ng voice variant (``haw+f3``): ``(delay_ms, amp)`` from the variant's
    ``echo`` line in espeak-ng's data (``voices/!v/<variant>``), or None (plain voices, no echo line).

    espeak-ng adds ``amp``/256 of its own output ``delay_ms`` earlier (fed back, so echoes of echoes
    follow) and keeps generating for one delay period after the speech, so an echoing variant's
    utterance ends in ~``delay_ms`` of echo alone, 28 dB (f3: ``echo 120 10``) below the speech."""
    if "+" not in voice:
        return None
    variant = voice.split("+", 1)[1]
    done = subprocess.run([require_tool("espeak-ng"), "--version"], capture_output=True, text=True)
    found = _ESPEAK_DATA.search(done.stdout)
    path = Path(found.group(1)) / "voices" / "!v" / variant if found else None
    if path is None or not path.is_file():
        raise RuntimeError(f"cannot find espeak-ng's voice variant {variant!r} (looked for {path})")
    echo = _ECHO_LINE.search(path.read_text(encoding="utf-8", errors="replace"))
    if echo is None or int(echo.group(1)) == 0 or int(echo.group(2)) == 0:
        return None
    return int(echo.group(1)), min(int(echo.group(2)), 100)


def remove_echo(samples: np.ndarray, delay_ms: int, amp: int) -> np.ndarray:
    """Undo espeak-ng's echo: its output is ``y[n] = x[n] + amp/256 * y[n - d]``, so the dry speech is
    ``x[n] = y[n] - amp/256 * y[n - d]`` (exact up to 16-bit rounding)."""
    delay = delay_ms * MASTER_RATE_HZ // 1000  # espeak-ng: (delay * samplerate) / 1000 samples
    dry = samples.astype(np.float32, copy=True)
    dry[delay:] -= np.float32(amp / 256.0) * samples[: len(samples) - delay]
    return dry


def speak_trimmed(text: str, voice: str, speed: int, pitch: int | None = None,
                  synth: Synthesizer = synthesize) -> np.ndarray:
    """One utterance as the demo places it: synthesized alone, silence trimmed, edges tapered.

    For a voice variant with an echo (``voice_echo``) the edges are found on the dry speech
    (``remove_echo``), its end at ECHO_VOICE_END_DBFS: the kept samples, echo included, end where
    the speech ends, not ~0.1 s later where the echo of its last syllable dies away."""
    samples = synth(text, voice, speed, pitch)
    echo = voice_echo(voice)
    if echo is None:
        return taper_edges(trim_silence(samples)[0])
    _, start, end = trim_silence(remove_echo(samples, *echo), end_threshold_dbfs=ECHO_VOICE_END_DBFS)
    return taper_edges(samples[start:end])


def level_with_noise_floor(speech: np.ndarray, peak_dbfs: float, noise_rms_dbfs: float,
                           rng: np.random.Generator) -> np.ndarray:
    """Peak-normalize to ``peak_dbfs`` and add white noise at ``noise_rms_dbfs`` RMS, so that
    silence is never digital zero, as in real recordings; float32."""
    master = speech * np.float32(10.0 ** (peak_dbfs / 20.0) / float(np.max(np.abs(speech))))
    noise = rng.standard_normal(len(master)) * 10.0 ** (noise_rms_dbfs / 20.0)
    return (master + noise).astype(np.float32)


# --------------------------------------------------------------------------- audio files


@dataclass(frozen=True)
class AudioFormat:
    """How a chapter is stored: ``ext`` is mp3 (44.1 kHz stereo), mp4 (AAC, 48 kHz stereo) or
    wav (22.05 kHz mono PCM16); ``bitrate`` is for the lossy ones."""

    ext: str
    bitrate: str | None = None


def _ffmpeg_encode(signal: np.ndarray, rate: int, codec_args: list[str], muxer: str, path: Path) -> None:
    ffmpeg = require_tool("ffmpeg")
    channels = 1 if signal.ndim == 1 else signal.shape[1]
    cmd = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "f32le", "-ar", str(rate), "-ac", str(channels), "-i", "pipe:0",
        "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact",
        *codec_args, "-f", muxer, str(path),
    ]  # fmt: skip
    done = subprocess.run(cmd, input=np.ascontiguousarray(signal, "<f4").tobytes(), capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed writing {path}: {done.stderr.decode(errors='replace').strip()}")


def stereo_from_master(master: np.ndarray, rate: int, right_gain_db: float) -> np.ndarray:
    """Resample the master to ``rate`` and make two channels (right slightly quieter)."""
    mono = soxr.resample(master, MASTER_RATE_HZ, rate).astype(np.float32)
    return np.stack([mono, mono * np.float32(10.0 ** (right_gain_db / 20.0))], axis=1)


def write_audio(master: np.ndarray, fmt: AudioFormat, path: Path, rng: np.random.Generator) -> dict:
    """Write the master as a user would have it (without metadata, with ffmpeg's bitexact flags);
    returns the format facts for the truth JSON. ``rng`` draws the right channel's gain."""
    if fmt.ext == "wav":
        with atomic_path(path) as tmp:
            sf.write(tmp, master, MASTER_RATE_HZ, format="WAV", subtype="PCM_16")
        return {"container": "wav", "codec": "pcm_s16le", "sample_rate": MASTER_RATE_HZ, "channels": 1}
    right_gain_db = float(rng.uniform(*RIGHT_CHANNEL_GAIN_DB))
    if fmt.ext == "mp3":
        stereo = stereo_from_master(master, MP3_RATE_HZ, right_gain_db)
        with atomic_path(path) as tmp:
            _ffmpeg_encode(stereo, MP3_RATE_HZ, ["-c:a", "libmp3lame", "-b:a", fmt.bitrate], "mp3", tmp)
        return {"container": "mp3", "codec": "mp3", "sample_rate": MP3_RATE_HZ, "channels": 2,
                "bitrate": fmt.bitrate, "right_gain_db": round(right_gain_db, 3)}  # fmt: skip
    if fmt.ext == "mp4":
        stereo = stereo_from_master(master, MP4_RATE_HZ, right_gain_db)
        with atomic_path(path) as tmp:
            _ffmpeg_encode(stereo, MP4_RATE_HZ, ["-c:a", "aac", "-b:a", fmt.bitrate], "mp4", tmp)
        return {"container": "mp4", "codec": "aac", "sample_rate": MP4_RATE_HZ, "channels": 2,
                "bitrate": fmt.bitrate, "right_gain_db": round(right_gain_db, 3)}  # fmt: skip
    raise ValueError(f"unknown audio format {fmt!r}")
