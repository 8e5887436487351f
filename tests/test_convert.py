"""tala.audio.convert on real (synthesized) audio: exact length, content, offsets, determinism, bad files."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, require
from tala.audio_io import SAMPLE_RATE, probe_audio, scan_mp3
from tala.audio.convert import convert_file, expected_frames
from tala.errors import InputError

RATES = (8000, 11025, 22050, 32000, 44100, 48000)


def _sine(rate: int, seconds: float, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate) + 1) / rate  # +1: lengths that do not divide evenly
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _noise_bursts(rate: int, seed: int = 0) -> np.ndarray:
    """Silence, then noise bursts: a signal whose cross-correlation has one sharp peak."""
    rng = np.random.default_rng(seed)
    audio = np.zeros(int(3.0 * rate), dtype=np.float32)
    for start_s in (0.5, 1.3, 2.2):
        start = int(start_s * rate)
        audio[start:start + int(0.4 * rate)] = rng.normal(0, 0.2, int(0.4 * rate))
    return audio


def _ffmpeg(*args: str) -> None:
    require("ffmpeg")
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], capture_output=True, text=True)
    if proc.returncode != 0 and "Unknown encoder" in proc.stderr:
        pytest.skip(f"this ffmpeg build lacks an encoder: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr


def _encode(src: Path, dst: Path, *codec: str) -> Path:
    _ffmpeg("-i", str(src), *codec, str(dst))
    return dst


def _peak_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)), n=8 * len(samples)))
    return float(np.argmax(spectrum) * rate / (8 * len(samples)))


def _lag(output: np.ndarray, reference: np.ndarray) -> int:
    """Samples by which ``output`` is late against ``reference`` (FFT cross-correlation)."""
    n = len(output) + len(reference)
    xcorr = np.fft.irfft(np.fft.rfft(output, n) * np.conj(np.fft.rfft(reference, n)), n)
    lag = int(np.argmax(xcorr))
    return lag if lag < n // 2 else lag - n


def _digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "scripts"))
    return subprocess.run([sys.executable, "-m", "tala.audio.convert", *args], capture_output=True,
                          text=True, cwd=cwd, env=env)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", RATES)
def test_any_rate_and_layout_becomes_16k_mono_pcm16_of_exact_length(tmp_path, rate, channels):
    sine = _sine(rate, 1.2345)
    # Stereo: the tone on the left only, silence on the right, so the mix must halve it.
    audio = sine if channels == 1 else np.stack([sine, np.zeros_like(sine)], axis=1)
    src = tmp_path / f"in_{rate}.wav"
    sf.write(src, audio, rate, subtype="FLOAT")

    info = convert_file(src, tmp_path / "out.wav")

    out_info = sf.info(tmp_path / "out.wav")
    assert (out_info.samplerate, out_info.channels, out_info.format, out_info.subtype) == (
        SAMPLE_RATE, 1, "WAV", "PCM_16")
    assert out_info.frames == round(len(sine) * SAMPLE_RATE / rate) == info.frames_out
    assert info.frames_in == len(sine)
    out, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    middle = out[2000:-2000]  # away from the resampler's edge transients
    assert _peak_frequency(middle, SAMPLE_RATE) == pytest.approx(440.0, abs=0.5)
    expected_amplitude = 0.5 if channels == 1 else 0.25
    assert np.sqrt(2 * np.mean(middle ** 2)) == pytest.approx(expected_amplitude, rel=0.01)


def test_conversion_holds_a_block_not_the_recording(tmp_path):
    import tracemalloc

    rate = 48_000
    rng = np.random.default_rng(2)
    audio = rng.normal(0, 0.1, (60 * rate, 2)).astype(np.float32)
    sf.write(tmp_path / "long.wav", audio, rate, subtype="PCM_16")
    tracemalloc.start()
    info = convert_file(tmp_path / "long.wav", tmp_path / "out.wav", block_s=1.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert info.frames_out == 60 * SAMPLE_RATE
    assert peak < audio.nbytes / 4  # 60 s of 48 kHz stereo float32 is 23 MB; 1 s blocks need ~2


def test_expected_frames_rounds_to_nearest_sample():
    assert expected_frames(44100, 44100) == 16000
    assert expected_frames(1, 48000) == 0
    assert expected_frames(2, 48000) == 1  # 0.667 rounds up
    assert expected_frames(12345, 22050) == round(12345 * 16000 / 22050)


def test_16k_mono_pcm16_passes_through_bit_exact(tmp_path):
    rng = np.random.default_rng(1)
    pcm = rng.integers(-32768, 32767, 40_001, dtype=np.int16)
    sf.write(tmp_path / "in.wav", pcm, SAMPLE_RATE, subtype="PCM_16")
    convert_file(tmp_path / "in.wav", tmp_path / "out.wav")
    out, _ = sf.read(tmp_path / "out.wav", dtype="int16")
    np.testing.assert_array_equal(out, pcm)


def test_loud_input_is_clipped_not_wrapped(tmp_path):
    sf.write(tmp_path / "in.wav", np.full(1600, 1.5, dtype=np.float32), SAMPLE_RATE, subtype="FLOAT")
    info = convert_file(tmp_path / "in.wav", tmp_path / "out.wav")
    out, _ = sf.read(tmp_path / "out.wav", dtype="int16")
    assert (out == 32767).all() and info.clipped == 1600


@pytest.mark.parametrize("name, codec", [
    ("lame_vbr.mp3", ("-c:a", "libmp3lame", "-q:a", "4")),
    ("cbr.mp3", ("-c:a", "libmp3lame", "-b:a", "128k")),
    ("aac.m4a", ("-c:a", "aac", "-b:a", "128k")),
    ("aac.mp4", ("-c:a", "aac", "-b:a", "96k")),
    ("mpeg2.mp3", ("-c:a", "libmp3lame", "-ar", "22050")),
    ("vorbis.ogg", ("-c:a", "libvorbis")),
    ("opus.opus", ("-c:a", "libopus")),
])
def test_compressed_input_decodes_without_offset(tmp_path, name, codec):
    """Encoder delay and padding are removed (gapless MP3, MP4 edit lists, Ogg pre-skip): offset
    within 1 ms. (Raw ADTS .aac has nowhere to say how long its priming is: ~23 ms late.)"""
    rate = 44100
    reference = _noise_bursts(rate)
    src = tmp_path / "ref.wav"
    sf.write(src, np.stack([reference, reference], axis=1), rate, subtype="PCM_16")
    encoded = _encode(src, tmp_path / name, *codec)

    convert_file(encoded, tmp_path / "out.wav")

    out, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    # The encoder's end padding (a whole AAC frame, ~21 ms) is dropped too: the length is exact
    # to a few samples.
    assert len(out) == pytest.approx(expected_frames(len(reference), rate), abs=0.002 * SAMPLE_RATE)
    convert_file(src, tmp_path / "ref16.wav")  # the same signal through the lossless path
    reference_16k, _ = sf.read(tmp_path / "ref16.wav", dtype="float32")
    assert abs(_lag(out, reference_16k)) <= SAMPLE_RATE // 1000


def test_output_is_byte_identical_across_runs(tmp_path):
    rate = 44100
    src = tmp_path / "ref.wav"
    sf.write(src, np.stack([_noise_bursts(rate), _sine(rate, 3.0)[: 3 * rate]], axis=1), rate)
    for name, codec in (("in.mp3", ("-c:a", "libmp3lame", "-q:a", "2")), ("in.m4a", ("-c:a", "aac"))):
        encoded = _encode(src, tmp_path / name, *codec)
        convert_file(encoded, tmp_path / "first.wav")
        convert_file(encoded, tmp_path / "second.wav")
        assert (tmp_path / "first.wav").read_bytes() == (tmp_path / "second.wav").read_bytes()


def test_cbr_mp3_without_xing_header_is_not_called_truncated(tmp_path):
    src = tmp_path / "ref.wav"
    sf.write(src, _sine(44100, 5.0), 44100)
    mp3 = _encode(src, tmp_path / "plain.mp3", "-c:a", "libmp3lame", "-b:a", "64k", "-write_xing", "0")
    scan = scan_mp3(mp3)
    assert scan.declared_frames is None and scan.missing_bytes == 0
    info = convert_file(mp3, tmp_path / "out.wav")
    # Without a LAME tag the decoder cannot trim the encoder delay: a little longer, never shorter.
    assert 5.0 <= info.duration_s < 5.1


def test_joined_mp3_files_decode_completely(tmp_path):
    """`cat a.mp3 b.mp3` keeps a's Xing header; libsndfile would stop at its count, ffmpeg does not."""
    src = tmp_path / "ref.wav"
    sf.write(src, _sine(44100, 4.0), 44100)
    one = _encode(src, tmp_path / "one.mp3", "-c:a", "libmp3lame")
    joined = tmp_path / "joined.mp3"
    joined.write_bytes(one.read_bytes() * 2)
    info = convert_file(joined, tmp_path / "out.wav")
    assert info.duration_s == pytest.approx(8.0, abs=0.1)


# --- bad inputs ---------------------------------------------------------------------------------

def _truncated_mp3(tmp_path: Path, *codec: str) -> Path:
    src = tmp_path / "ref.wav"
    sf.write(src, np.stack([_sine(44100, 20.0)] * 2, axis=1), 44100)
    mp3 = _encode(src, tmp_path / "full.mp3", "-c:a", "libmp3lame", *codec)
    data = mp3.read_bytes()
    truncated = tmp_path / "cut.mp3"
    truncated.write_bytes(data[: int(len(data) * 0.4)])
    return truncated


def _bad_input(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """A bad input file of the given kind, and a regular expression its error must match."""
    if kind == "missing":
        return tmp_path / "missing.mp3", "no such file"
    if kind == "empty":
        (tmp_path / "empty.mp3").write_bytes(b"")
        return tmp_path / "empty.mp3", r"empty file \(0 bytes\)"
    if kind == "text":
        (tmp_path / "notes.mp3").write_text("These are my notes, not audio.\n" * 20)
        return tmp_path / "notes.mp3", "not an audio file"
    if kind == "truncated_vbr":
        return _truncated_mp3(tmp_path, "-q:a", "4"), r"truncated or corrupt MP3: decoded \d\.\d s of 20\.0 s declared"
    if kind == "truncated_cbr":
        path = _truncated_mp3(tmp_path, "-b:a", "128k", "-write_xing", "0")
        return path, r"truncated or corrupt MP3: decoded 8\.0 s, last frame cut off"
    if kind == "truncated_m4a":
        src = tmp_path / "ref.wav"
        sf.write(src, _sine(48000, 20.0), 48000)
        m4a = _encode(src, tmp_path / "full.m4a", "-c:a", "aac", "-movflags", "+faststart")
        (tmp_path / "cut.m4a").write_bytes(m4a.read_bytes()[: m4a.stat().st_size // 2])
        return tmp_path / "cut.m4a", r"truncated or corrupt AAC: decoded \d+\.\d s of 20\.0 s declared"
    if kind == "video_only":
        _ffmpeg("-f", "lavfi", "-i", "testsrc=duration=1:size=64x48:rate=10", "-c:v", "mpeg4",
                str(tmp_path / "video.mp4"))
        return tmp_path / "video.mp4", r"no audio stream \(streams found: video\)"
    if kind == "unsupported":
        sf.write(tmp_path / "tone.wav", _sine(16000, 0.5), 16000)
        (tmp_path / "tone.wav").rename(tmp_path / "tone.xyz")
        return tmp_path / "tone.xyz", r"unsupported file type '\.xyz'"
    raise ValueError(kind)


BAD_INPUTS = ["missing", "empty", "text", "truncated_vbr", "truncated_cbr", "truncated_m4a",
              "video_only", "unsupported"]


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_input_raises_input_error_naming_file_and_reason(tmp_path, kind):
    path, reason = _bad_input(kind, tmp_path)
    with pytest.raises(InputError) as caught:
        convert_file(path, tmp_path / "out" / "x.wav")
    assert caught.value.path == str(path)
    assert re.search(reason, caught.value.reason), caught.value.reason
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out" / "x.wav").exists()
    assert not list(tmp_path.rglob("*.part")), "half-written output left behind"


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_cli_reports_bad_input_in_one_line(tmp_path, kind):
    path, reason = _bad_input(kind, tmp_path)
    proc = _cli(str(path), str(tmp_path / "x.wav"))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {path}: ") and re.search(reason, lines[0]), lines[0]
    assert not (tmp_path / "x.wav").exists()


def test_output_onto_input_is_refused(tmp_path):
    sf.write(tmp_path / "a.wav", _sine(16000, 0.5), 16000)
    before = _digest(tmp_path / "a.wav")
    with pytest.raises(InputError, match="never written"):
        convert_file(tmp_path / "a.wav", tmp_path / "a.wav")
    assert _digest(tmp_path / "a.wav") == before


def test_cli_converts_odd_file_name_and_leaves_input_untouched(tmp_path):
    src = tmp_path / "ref.wav"
    sf.write(src, np.stack([_noise_bursts(44100)] * 2, axis=1), 44100)
    odd = tmp_path / "it's a \"test\" $(touch PWNED) `touch PWNED2`.mp3"
    _encode(src, odd, "-c:a", "libmp3lame")
    before = _digest(odd)

    proc = _cli(odd.name, "out dir/it's $(x).wav", cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(f"convert: {odd.name}: MP3 (MPEG-1 Layer III), 44100 Hz, 2 ch, 3.00 s")
    assert "16000 Hz mono PCM16, 3.00 s (48000 samples)" in proc.stderr
    assert sf.info(tmp_path / "out dir" / "it's $(x).wav").frames == 3 * SAMPLE_RATE
    assert _digest(odd) == before
    assert not list(tmp_path.rglob("PWNED*"))


def test_probe_describes_input(tmp_path):
    sf.write(tmp_path / "s.flac", np.zeros((22050, 2), dtype=np.float32), 22050)
    info = probe_audio(tmp_path / "s.flac")
    assert (info.sample_rate, info.channels, info.frames, info.decoder) == (22050, 2, 22050, "libsndfile")
    assert info.format.startswith("FLAC")
