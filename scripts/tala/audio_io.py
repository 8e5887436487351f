"""Reading audio of any common format as float blocks, with one clear error for each kind of bad file.

Shared by the steps that read audio (convert reads anything, segment reads the converted WAV).
Decoding goes through well-kept libraries only: libsndfile (via soundfile) for WAV/FLAC/Ogg/MP3,
and the ffmpeg command line for MP4/M4A/AAC and whatever libsndfile cannot open. The format is
sniffed from the file's first bytes; the extension only decides whether we accept the file at all.

MP3 gets a frame scan of its own before decoding (:func:`scan_mp3`), because neither decoder reports
a truncated MP3: libsndfile's mpg123 pads it to the length in its Xing header and ffmpeg stops quietly.
"""

from __future__ import annotations

import json
import mmap
import queue
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import soundfile as sf

from tala.errors import InputError

SAMPLE_RATE = 16_000
"""The rate of all audio passed between steps (16 kHz mono PCM16 WAV)."""

SUPPORTED_SUFFIXES = (".mp3", ".mp4", ".m4a", ".aac", ".wav", ".flac", ".ogg", ".oga", ".opus")

BLOCK_S = 20.0
"""Decode block length: 20 s of 48 kHz stereo float is 7.7 MB, and per-block overhead is negligible."""

# A decoded stream this much shorter than its container declares is reported as truncated. Exact
# formats (WAV, FLAC, MP3 via the frame scan) never come near it; AAC priming and padding is ~50 ms.
TRUNCATION_TOLERANCE_S = 0.5

# AAC's end padding is at most one frame (1024 or 2048 samples); Opus pads less.
END_PADDING_MAX_S = 0.1

# ffprobe estimates the duration of these containers from the bitrate, so it is no reference.
_ESTIMATED_DURATION_FORMATS = {"aac", "mp3"}


@dataclass(frozen=True)
class AudioInfo:
    """What a file declares about its audio, before decoding it."""

    path: str
    format: str  # human-readable, e.g. "MP3 (MPEG-1 Layer III)", "WAV (PCM_16)", "AAC in mov,mp4,m4a,..."
    sample_rate: int
    channels: int
    frames: int | None  # declared samples per channel; None where the container does not say
    decoder: str  # "libsndfile" or "ffmpeg"
    stream_index: int = 0  # which stream ffmpeg decodes

    @property
    def duration_s(self) -> float | None:
        return None if self.frames is None else self.frames / self.sample_rate

    def describe(self) -> str:
        duration = "unknown duration" if self.duration_s is None else f"{self.duration_s:.2f} s"
        return (f"{self.format}, {self.sample_rate} Hz, {self.channels} ch, {duration} "
                f"(decoded by {self.decoder})")


# ---------------------------------------------------------------------------------------------
# MP3 frame scan
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mp3Scan:
    """The result of walking an MP3's frame headers from the first to the last."""

    version: str  # "1", "2" or "2.5"
    layer: int
    sample_rate: int
    channels: int
    samples_per_frame: int
    audio_frames: int  # complete frames found, not counting a Xing/Info/VBRI tag frame
    declared_frames: int | None  # from the Xing/Info or VBRI tag; None for plain CBR files
    missing_bytes: int  # > 0 when the last frame runs past the end of the file
    junk_bytes: int  # bytes skipped to resynchronise between frames (not an error: mpg123 does it too)

    @property
    def found_s(self) -> float:
        return self.audio_frames * self.samples_per_frame / self.sample_rate

    @property
    def declared_s(self) -> float | None:
        if self.declared_frames is None:
            return None
        return self.declared_frames * self.samples_per_frame / self.sample_rate


_MPEG_VERSIONS = {0: "2.5", 2: "2", 3: "1"}  # header bits 20-19; 1 is reserved
_LAYERS = {1: 3, 2: 2, 3: 1}  # header bits 18-17; 0 is reserved
_BITRATES_KBPS = {
    ("1", 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    ("1", 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    ("1", 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    ("2", 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    ("2", 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_BITRATES_KBPS[("2", 3)] = _BITRATES_KBPS[("2", 2)]
for _layer in (1, 2, 3):
    _BITRATES_KBPS[("2.5", _layer)] = _BITRATES_KBPS[("2", _layer)]
_SAMPLE_RATES = {"1": (44100, 48000, 32000), "2": (22050, 24000, 16000), "2.5": (11025, 12000, 8000)}

# Bits that stay the same in every frame of one stream: sync, version, layer and sample rate.
# Requiring them to match is what keeps the scan from "finding" frames in cover art or junk.
_STREAM_MASK = 0xFFFE0C00


def _parse_mp3_header(header: int) -> tuple[int, int, int, str, int, int] | None:
    """(frame bytes, samples per frame, sample rate, version, layer, channels), or None if not a header."""
    if header >> 21 != 0x7FF:
        return None
    version = _MPEG_VERSIONS.get((header >> 19) & 3)
    layer = _LAYERS.get((header >> 17) & 3)
    bitrate_index = (header >> 12) & 0xF
    rate_index = (header >> 10) & 3
    # Free-format (bitrate index 0) streams exist in theory only; 15 is forbidden.
    if version is None or layer is None or bitrate_index in (0, 15) or rate_index == 3:
        return None
    bitrate = _BITRATES_KBPS[(version, layer)][bitrate_index] * 1000
    rate = _SAMPLE_RATES[version][rate_index]
    padding = (header >> 9) & 1
    channels = 1 if (header >> 6) & 3 == 3 else 2
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4, 384, rate, version, layer, channels
    if layer == 2 or version == "1":
        return 144 * bitrate // rate + padding, 1152, rate, version, layer, channels
    return 72 * bitrate // rate + padding, 576, rate, version, layer, channels


def _id3v2_size(data: mmap.mmap | bytes, pos: int) -> int:
    """Length of an ID3v2 tag starting at ``pos`` (0 if there is none)."""
    if data[pos:pos + 3] != b"ID3" or len(data) < pos + 10:
        return 0
    size_bytes = data[pos + 6:pos + 10]
    if any(b & 0x80 for b in size_bytes):
        return 0
    size = (size_bytes[0] << 21) | (size_bytes[1] << 14) | (size_bytes[2] << 7) | size_bytes[3]
    has_footer = data[pos + 5] & 0x10
    return 10 + size + (10 if has_footer else 0)


def _vbr_tag_frames(data: mmap.mmap, pos: int, version: str, channels: int) -> tuple[bool, int | None]:
    """Whether the frame at ``pos`` is a Xing/Info/VBRI tag frame, and the frame count it declares."""
    side_info = (32 if channels == 2 else 17) if version == "1" else (17 if channels == 2 else 9)
    xing = pos + 4 + side_info
    if data[xing:xing + 4] in (b"Xing", b"Info"):
        flags = int.from_bytes(data[xing + 4:xing + 8], "big")
        frames = int.from_bytes(data[xing + 8:xing + 12], "big") if flags & 1 else None
        return True, frames
    vbri = pos + 4 + 32
    if data[vbri:vbri + 4] == b"VBRI":
        return True, int.from_bytes(data[vbri + 14:vbri + 18], "big")
    return False, None


def _find_first_frame(data: mmap.mmap, pos: int) -> tuple[int, int] | None:
    """The first offset >= pos holding two consecutive frames of one stream, and its header."""
    end = len(data)
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 4 > end:
            return None
        header = int.from_bytes(data[pos:pos + 4], "big")
        parsed = _parse_mp3_header(header)
        if parsed is not None:
            nxt = pos + parsed[0]
            if nxt + 4 <= end:
                follower = int.from_bytes(data[nxt:nxt + 4], "big")
                if follower & _STREAM_MASK == header & _STREAM_MASK and _parse_mp3_header(follower):
                    return pos, header
            elif nxt <= end:  # a single-frame file
                return pos, header
        pos += 1


def _trailing_tag_start(data: mmap.mmap) -> int:
    """Where the tags appended after the audio begin (ID3v1, APEv2, Lyrics3), i.e. the audio's end."""
    end = len(data)
    if end >= 128 and data[end - 128:end - 125] == b"TAG":
        end -= 128
    if end >= 32 and data[end - 32:end - 24] == b"APETAGEX":
        ape_size = int.from_bytes(data[end - 20:end - 16], "little")
        has_header = data[end - 9] & 0x80  # flags byte 3, bit 31 of the flags word
        end -= ape_size + (32 if has_header else 0)
    return max(end, 0)


def scan_mp3(path: str | Path) -> Mp3Scan | None:
    """Walk every MPEG audio frame header; None if the file holds no MPEG audio stream.

    A Python loop over frames (~40 per second of audio) costs ~30 ms per 10 minutes: far less than
    decoding, and the only way to learn what the decoders do not tell (see the module docstring).
    """
    path = Path(path)
    with path.open("rb") as handle:
        if path.stat().st_size < 4:
            return None
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            pos = 0
            while size := _id3v2_size(data, pos):
                pos += size
            first = _find_first_frame(data, pos)
            if first is None:
                return None
            pos, header = first
            length, samples, rate, version, layer, channels = _parse_mp3_header(header)
            stream_bits = header & _STREAM_MASK
            is_tag, declared = _vbr_tag_frames(data, pos, version, channels) if layer == 3 else (False, None)
            audio_end = _trailing_tag_start(data)
            frames = 0 if is_tag else 1
            pos += length
            junk = missing = 0
            lengths: dict[int, int] = {}  # header >> 9 -> frame length: most files use a handful
            while pos + 4 <= audio_end:
                header = int.from_bytes(data[pos:pos + 4], "big")
                if header & _STREAM_MASK == stream_bits:
                    key = header >> 9
                    length = lengths.get(key)
                    if length is None:
                        parsed = _parse_mp3_header(header)
                        length = lengths[key] = parsed[0] if parsed else 0
                    if length:
                        if pos + length > audio_end:
                            missing = pos + length - audio_end
                            break
                        frames += 1
                        pos += length
                        continue
                resync = _find_first_frame(data, pos + 1)
                if resync is None or resync[0] >= audio_end:
                    break
                junk += resync[0] - pos
                pos = resync[0]
            else:
                # Fewer than 4 bytes left: a cut-off header if it starts like one, else padding.
                if 0 < audio_end - pos < 4 and data[pos] == 0xFF:
                    missing = 1
    return Mp3Scan(version, layer, rate, channels, samples, frames, declared, missing, junk)


def check_mp3_complete(path: str | Path, scan: Mp3Scan) -> None:
    """Raise InputError if the scan shows a truncated MP3."""
    if scan.missing_bytes:
        declared = f" of {scan.declared_s:.1f} s declared" if scan.declared_s else ""
        raise InputError(path, f"truncated or corrupt MP3: decoded {scan.found_s:.1f} s{declared}, "
                               f"last frame cut off ({scan.missing_bytes} bytes missing)")
    # One frame of slack: encoders disagree on whether the count includes the tag frame itself.
    if scan.declared_frames is not None and scan.audio_frames + 1 < scan.declared_frames:
        raise InputError(path, f"truncated or corrupt MP3: decoded {scan.found_s:.1f} s "
                               f"of {scan.declared_s:.1f} s declared")


# ---------------------------------------------------------------------------------------------
# Probing and decoding
# ---------------------------------------------------------------------------------------------

def wav_declared_data_bytes(path: str | Path) -> tuple[int, int] | None:
    """(bytes the RIFF "data" chunk declares, bytes actually there), or None if not knowable.

    libsndfile quietly shortens a WAV whose data chunk runs past the end of the file, so this is
    how a truncated WAV is told from a short one. Streaming writers that leave the size at 0 or
    0xFFFFFFFF ("unknown") are not judged.
    """
    with Path(path).open("rb") as handle:
        head = handle.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        size = Path(path).stat().st_size
        pos = 12
        while pos + 8 <= size:
            handle.seek(pos)
            chunk = handle.read(8)
            chunk_size = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                if chunk_size in (0, 0xFFFFFFFF):
                    return None
                return chunk_size, size - pos - 8
            pos += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes
    return None


def _sniff(path: Path) -> str | None:
    """The container family from the first bytes: "wav", "flac", "ogg", "mp3", "mp4" or None."""
    with path.open("rb") as handle:
        head = handle.read(12)
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] in (b"WAVE", b"AVI "):
        return "wav" if head[8:12] == b"WAVE" else None
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "wav"  # libsndfile reads AIFF like WAV
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def check_input_file(path: str | Path, suffixes: tuple[str, ...] = SUPPORTED_SUFFIXES) -> Path:
    """The checks every audio input gets before any decoder sees it."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if not path.is_file():
        raise InputError(path, "not a regular file")
    if path.suffix.lower() not in suffixes:
        raise InputError(path, f"unsupported file type {path.suffix or '(no extension)'!r} "
                               f"(expected one of {', '.join(suffixes)})")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file (0 bytes)")
    return path


def _ffmpeg_input(path: Path) -> str:
    # "file:" keeps ffmpeg from reading a name like "http:x" or "concat:a|b" as a protocol.
    return "file:" + str(path)


def _ffmpeg_messages(stderr: str, path: Path) -> list[str]:
    """ffmpeg's error lines without the "[mov,mp4 @ 0x55...]" and file name prefixes."""
    lines = (re.sub(r"^\[[^\]]* @ 0x[0-9a-f]+\] ", "", line.strip()) for line in stderr.splitlines())
    return [line.replace(_ffmpeg_input(path) + ": ", "") for line in lines if line]


def _ffprobe(path: Path, kind: str | None) -> AudioInfo:
    command = ["ffprobe", "-v", "error", "-show_entries",
               "stream=index,codec_type,codec_name,sample_rate,channels,duration:format=format_name,duration",
               "-of", "json", _ffmpeg_input(path)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise RuntimeError("ffprobe not found on PATH: install ffmpeg to read this file") from None
    if result.returncode != 0:
        detail = "; ".join(_ffmpeg_messages(result.stderr, path)) or f"exit status {result.returncode}"
        if kind is not None:
            raise InputError(path, f"truncated or corrupt {kind.upper()} file: ffprobe: {detail}")
        with path.open("rb") as handle:
            head = handle.read(16)
        # ffprobe's own words for a non-media file ("Invalid argument") would only confuse.
        raise InputError(path, f"not an audio file: no known audio header (starts with {head!r})")
    probe = json.loads(result.stdout)
    streams = probe.get("streams", [])
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    if not audio:
        found = ", ".join(sorted({s.get("codec_type", "unknown") for s in streams})) or "none"
        raise InputError(path, f"no audio stream (streams found: {found})")
    stream = audio[0]
    container = probe.get("format", {}).get("format_name", "unknown")
    rate = int(stream.get("sample_rate") or 0)
    channels = int(stream.get("channels") or 0)
    if rate <= 0 or channels <= 0:
        raise InputError(path, f"audio stream without sample rate or channels ({stream.get('codec_name')})")
    duration = stream.get("duration") or probe.get("format", {}).get("duration")
    frames = None
    if duration is not None and container not in _ESTIMATED_DURATION_FORMATS:
        frames = round(float(duration) * rate)
    return AudioInfo(str(path), f"{stream.get('codec_name', '?').upper()} in {container}", rate, channels,
                     frames, "ffmpeg", int(stream["index"]))


def _libsndfile_info(path: Path) -> AudioInfo | None:
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        return None
    return AudioInfo(str(path), f"{info.format} ({info.subtype})", info.samplerate, info.channels,
                     info.frames, "libsndfile")


def probe_audio(path: str | Path) -> AudioInfo:
    """Check ``path`` and describe its audio; raise InputError for anything we cannot decode fully.

    For MP3 this walks the frames and rejects truncated files here, before decoding starts.
    """
    path = check_input_file(path)
    kind = _sniff(path)
    if kind == "mp3":
        scan = scan_mp3(path)
        if scan is not None:
            check_mp3_complete(path, scan)
            layer = {1: "I", 2: "II", 3: "III"}[scan.layer]
            fmt = f"MP3 (MPEG-{scan.version} Layer {layer})"
            if scan.declared_frames is not None and scan.audio_frames > scan.declared_frames + 1:
                # libsndfile (mpg123) trusts the Xing count and silently drops the rest, as in
                # MP3s joined with `cat`; ffmpeg decodes every frame.
                print(f"warning: {path}: {scan.found_s:.1f} s of MP3 frames but the header declares "
                      f"{scan.declared_s:.1f} s (joined files?); decoding all frames with ffmpeg",
                      file=sys.stderr)
                info = _ffprobe(path, kind)
                return AudioInfo(info.path, fmt, info.sample_rate, info.channels, None, "ffmpeg",
                                 info.stream_index)
            info = _libsndfile_info(path)
            if info is not None:
                return AudioInfo(info.path, fmt, info.sample_rate, info.channels, info.frames, info.decoder)
    elif kind in ("wav", "flac", "ogg"):
        info = _libsndfile_info(path)
        if info is not None:
            data = wav_declared_data_bytes(path) if kind == "wav" else None
            if data is not None and data[1] < data[0]:
                declared_s = info.duration_s * data[0] / max(data[1], 1)
                raise InputError(path, f"truncated or corrupt WAV: decoded {info.duration_s:.1f} s "
                                       f"of {declared_s:.1f} s declared")
            return info
    # MP4/AAC, and anything libsndfile turned down (Opus in old builds, odd WAV codecs).
    return _ffprobe(path, kind)


def _blocks_libsndfile(info: AudioInfo, block_frames: int) -> Generator[np.ndarray, None, list[str]]:
    try:
        with sf.SoundFile(info.path) as handle:
            while True:
                # Not SoundFile.blocks(): it trusts the declared length and yields stale buffer
                # contents past a short read.
                block = handle.read(block_frames, dtype="float32", always_2d=True)
                if len(block):
                    yield block
                if len(block) < block_frames:
                    return []
    except (sf.LibsndfileError, RuntimeError) as err:  # e.g. "flac decoder lost sync"
        reason = str(err).replace(f"Error opening {info.path!r}: ", "").removeprefix("Error : ")
        raise InputError(info.path, f"truncated or corrupt {info.format.split()[0]}: libsndfile: "
                                    f"{reason}") from None


def _blocks_ffmpeg(info: AudioInfo, block_frames: int) -> Generator[np.ndarray, None, list[str]]:
    """Decode with the ffmpeg CLI; returns (as StopIteration value) ffmpeg's non-fatal messages."""
    path = Path(info.path)
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-i", _ffmpeg_input(path),
               "-map", f"0:{info.stream_index}", "-vn", "-sn", "-dn",
               # Asking for the probed layout pins the stream's shape even where a decoder would
               # change it midway (HE-AAC's SBR doubling the rate, a channel-count switch).
               "-ac", str(info.channels), "-ar", str(info.sample_rate),
               "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    frame_bytes = 4 * info.channels
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        except FileNotFoundError:
            raise RuntimeError("ffmpeg not found on PATH: install ffmpeg to read this file") from None
        try:
            carry = b""
            while chunk := process.stdout.read(block_frames * frame_bytes):
                chunk = carry + chunk
                usable = len(chunk) - len(chunk) % frame_bytes
                carry = chunk[usable:]
                if usable:
                    yield np.frombuffer(chunk[:usable], dtype="<f4").reshape(-1, info.channels)
            returncode = process.wait()
        finally:
            if process.poll() is None:  # the consumer stopped early
                process.kill()
                process.wait()
            process.stdout.close()
        errors.seek(0)
        messages = _ffmpeg_messages(errors.read().decode("utf-8", "replace"), path)
    if returncode != 0:
        detail = "; ".join(messages[-2:]) or f"exit status {returncode}"
        raise InputError(path, f"cannot decode: ffmpeg: {detail}")
    return messages


def decode_blocks(path: str | Path, block_frames: int | None = None,
                  info: AudioInfo | None = None) -> Iterator[np.ndarray]:
    """Yield the audio of ``path`` as float32 arrays of shape (frames, channels), in file order.

    ``block_frames`` defaults to :data:`BLOCK_S` seconds. Raises InputError for bad files, and at
    the end for a stream much shorter than its container declares (truncated).
    """
    if info is None:
        info = probe_audio(path)
    if block_frames is None:
        block_frames = max(1, round(BLOCK_S * info.sample_rate))
    reader = _blocks_libsndfile if info.decoder == "libsndfile" else _blocks_ffmpeg
    decoded = 0
    # AAC (and Opus) decoders emit the encoder's end padding, up to a frame past the duration the
    # container declares; that tail is held back and dropped, so the output ends where the
    # recording does. A declared duration that is plainly wrong (far more audio follows) is
    # ignored and everything decoded is kept.
    overhang: list[np.ndarray] = []
    overhang_frames = 0
    limit = info.frames if info.decoder == "ffmpeg" else None
    max_padding = round(END_PADDING_MAX_S * info.sample_rate)
    blocks = reader(info, block_frames)
    try:
        while True:
            try:
                block = next(blocks)
            except StopIteration as done:
                messages = done.value
                break
            if limit is not None and decoded + len(block) > limit:
                keep = max(0, limit - decoded)
                if keep:
                    yield block[:keep]
                decoded += keep
                overhang.append(block[keep:])
                overhang_frames += len(block) - keep
                if overhang_frames > max_padding:
                    limit = None
                    yield from overhang
                    decoded += overhang_frames
                    overhang, overhang_frames = [], 0
                continue
            decoded += len(block)
            yield block
    finally:
        blocks.close()  # a consumer that stops early must not leave an ffmpeg process behind
    if info.frames is not None and decoded < info.frames - TRUNCATION_TOLERANCE_S * info.sample_rate:
        raise InputError(info.path, f"truncated or corrupt {info.format.split()[0]}: decoded "
                                    f"{decoded / info.sample_rate:.1f} s of {info.duration_s:.1f} s declared")
    if messages:
        # ffmpeg says "error" also about frames it skipped and recovered from; it matters only
        # when the stream came out short, which was checked above.
        print(f"warning: {info.path}: ffmpeg: {messages[0]} ({len(messages)} message(s))", file=sys.stderr)


def downmix(block: np.ndarray) -> np.ndarray:
    """Mono as the plain average of the channels (an L-only signal comes out at half amplitude)."""
    if block.ndim == 1:
        return block
    if block.shape[1] == 1:
        return block[:, 0]
    if block.shape[1] == 2:
        return (block[:, 0] + block[:, 1]) * np.float32(0.5)  # twice as fast as mean(axis=1)
    return block.mean(axis=1, dtype=np.float32)


_T = TypeVar("_T")


def prefetch(items: Iterable[_T], depth: int = 2) -> Iterator[_T]:
    """Iterate ``items`` in a background thread, at most ``depth`` items ahead of the consumer.

    Decoding runs in C code that releases the GIL (libsndfile, a pipe read), so it overlaps with
    resampling and writing: ~25% less wall time for an MP3. Order is kept, so output is unchanged;
    an exception in the producer is raised in the consumer.
    """
    channel: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                channel.put(message, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as err:  # handed to the consumer, which re-raises it
            put((False, err))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # e.g. kills an ffmpeg process when the consumer stopped early

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            more, item = channel.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        thread.join()

# ---------------------------------------------------------------------------------------------
# Frame levels (dBFS), streamed: what segment finds pauses with and align refines verse edges with
# ---------------------------------------------------------------------------------------------

LEVEL_FRAME_S = 0.010  # short enough to see a 10 ms gap, long enough to average over a 100 Hz period
LEVEL_HOP_S = 0.001
LEVEL_FLOOR_DB = -120.0  # the level of digital silence, instead of -inf
LEVEL_BLOCK_S = 30.0


@dataclass(frozen=True)
class FrameLevels:
    """Frame levels of a recording: frame k covers [k * hop_s, k * hop_s + frame_s)."""

    levels_db: np.ndarray  # float32, one per hop
    hop_s: float
    frame_s: float
    duration_s: float
    sample_rate: int


def _hop_and_frame_samples(rate: int, frame_s: float, hop_s: float) -> tuple[int, int]:
    hop = max(1, round(hop_s * rate))
    frame_hops = max(1, round(frame_s / hop_s))
    return hop, frame_hops


def stream_frame_levels_db(blocks: Iterable[np.ndarray], rate: int, frame_s: float = LEVEL_FRAME_S,
                           hop_s: float = LEVEL_HOP_S) -> FrameLevels:
    """Frame levels (dBFS) of mono sample blocks of any lengths, carrying state across blocks.

    Each block is reduced to mean squares per hop, and frames are sums of ``frame_hops``
    consecutive hops, so a frame's level is exact and the result does not depend on block sizes.
    The hop is a whole number of samples; at 44.1 kHz a 1 ms hop is 44 samples (0.998 ms), and
    ``hop_s``/``frame_s`` of the result are the exact values used.
    """
    hop, frame_hops = _hop_and_frame_samples(rate, frame_s, hop_s)
    leftover = np.zeros(0, dtype=np.float32)  # samples short of a whole hop
    carry = np.zeros(0, dtype=np.float64)  # the last frame_hops - 1 hop energies
    levels: list[np.ndarray] = []
    total = 0
    for block in blocks:
        total += len(block)
        block = np.asarray(block, dtype=np.float32)
        samples = np.concatenate([leftover, block]) if len(leftover) else block
        whole = len(samples) - len(samples) % hop
        leftover = samples[whole:]
        by_hop = samples[:whole].reshape(-1, hop)
        # einsum sums the squares in float32 (error ~1e-7, nothing in dB) 25x faster than
        # squaring in float64; running sums over many hops below are float64.
        hop_energy = np.einsum("ij,ij->i", by_hop, by_hop).astype(np.float64)
        energy = np.concatenate([carry, hop_energy])
        if len(energy) >= frame_hops:
            cumulative = np.concatenate([[0.0], np.cumsum(energy)])
            frame_power = (cumulative[frame_hops:] - cumulative[:-frame_hops]) / (frame_hops * hop)
            levels.append(power_to_db(frame_power))
        carry = energy[max(0, len(energy) - (frame_hops - 1)):]
    levels_db = np.concatenate(levels) if levels else np.zeros(0, dtype=np.float32)
    return FrameLevels(levels_db, hop / rate, frame_hops * hop / rate, total / rate, rate)


def frame_levels_db(samples: np.ndarray, rate: int, frame_s: float = LEVEL_FRAME_S,
                    hop_s: float = LEVEL_HOP_S) -> np.ndarray:
    """RMS level in dBFS of each ``frame_s`` frame, one frame every ``hop_s`` (whole frames only)."""
    return stream_frame_levels_db([samples], rate, frame_s, hop_s).levels_db


def read_frame_levels_db(path: str | Path, frame_s: float = LEVEL_FRAME_S, hop_s: float = LEVEL_HOP_S,
                         block_s: float = LEVEL_BLOCK_S) -> FrameLevels:
    """Frame levels of an audio file at its own rate (channels averaged), read ``block_s`` at a time."""
    info = probe_audio(path)
    blocks = (downmix(block) for block in
              decode_blocks(path, max(1, round(block_s * info.sample_rate)), info))
    return stream_frame_levels_db(blocks, info.sample_rate, frame_s, hop_s)


def power_to_db(power: np.ndarray) -> np.ndarray:
    floor = 10.0 ** (LEVEL_FLOOR_DB / 10.0)
    return (10.0 * np.log10(np.maximum(power, floor))).astype(np.float32)
