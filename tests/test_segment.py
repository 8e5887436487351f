"""tala.audio.segment on synthesized audio: pause edges within 10 ms, span rules, silent and tiny files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO
from tala.audio.segment import TSV_HEADER, SpeechSpan, find_pauses, find_spans, nonsilent_ranges, segment_file
from tala.audio_io import frame_levels_db, read_frame_levels_db, stream_frame_levels_db

RATE = 16_000
EDGE_TOLERANCE_S = 0.010
NOISE_FLOOR_DB = -60.0


def _tone(seconds: float, amplitude: float = 0.3, freq: float = 220.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def _assemble(pieces: list[tuple[str, float]], rate: int = RATE, seed: int = 0,
              gap_db: dict[int, float] | None = None) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Tones ("tone", s) and gaps ("gap", s) over a low noise floor; returns audio and tone times.

    ``gap_db`` raises the noise in the i-th gap to that level, for gaps of different depth.
    """
    rng = np.random.default_rng(seed)
    parts, tones, t, gap_index = [], [], 0.0, 0
    for kind, seconds in pieces:
        n = round(seconds * rate)
        if kind == "tone":
            parts.append(_tone(seconds, rate=rate))
            tones.append((t, t + n / rate))
        else:
            level = (gap_db or {}).get(gap_index, -200.0)
            parts.append(rng.normal(0, 10 ** (level / 20), n))
            gap_index += 1
        t += n / rate
    audio = np.concatenate(parts)
    audio += rng.normal(0, 10 ** (NOISE_FLOOR_DB / 20), audio.shape)
    return audio.astype(np.float32), tones


def _spans_of(audio: np.ndarray, rate: int = RATE, **rules) -> list[SpeechSpan]:
    levels = frame_levels_db(audio, rate)
    return find_spans(levels, 1 / 1000, duration_s=len(audio) / rate, **rules)


def _assert_edges(spans: list[SpeechSpan], expected: list[tuple[float, float]]) -> None:
    np.testing.assert_allclose([(s.start, s.end) for s in spans], expected, atol=EDGE_TOLERANCE_S)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "scripts"))
    return subprocess.run([sys.executable, "-m", "tala.audio.segment", *args], capture_output=True,
                          text=True, env=env)


def test_pauses_of_half_a_second_or_more_are_found_within_10_ms():
    audio, tones = _assemble([("gap", 0.7), ("tone", 2.5), ("gap", 0.3), ("tone", 2.5), ("gap", 0.6),
                              ("tone", 2.5), ("gap", 1.2), ("tone", 2.5), ("gap", 0.8)])
    levels = frame_levels_db(audio, RATE)
    pauses = find_pauses(levels, 0.001) / 1000
    # Leading silence, the 0.6 s and 1.2 s gaps, trailing silence; the 0.3 s gap is no pause.
    expected = [(0.0, tones[0][0]), (tones[1][1], tones[2][0]), (tones[2][1], tones[3][0]),
                (tones[3][1], len(audio) / RATE)]
    assert len(pauses) == len(expected)
    np.testing.assert_allclose(pauses, expected, atol=EDGE_TOLERANCE_S)

    raw = nonsilent_ranges(levels, 0.001) / 1000
    np.testing.assert_allclose(raw, [(tones[0][0], tones[1][1]), tones[2], tones[3]], atol=EDGE_TOLERANCE_S)


def test_spans_report_edges_and_rms_level():
    audio, tones = _assemble([("gap", 1.0), ("tone", 3.0), ("gap", 1.0), ("tone", 4.0), ("gap", 1.0)])
    spans = _spans_of(audio)
    _assert_edges(spans, tones)
    # A sine of amplitude 0.3 has an RMS of 0.3 / sqrt(2): -13.5 dBFS.
    assert all(s.level_db == pytest.approx(-13.5, abs=0.1) for s in spans)


def test_short_span_merges_across_the_shorter_pause():
    audio, tones = _assemble([("tone", 3.0), ("gap", 1.5), ("tone", 1.0), ("gap", 0.6), ("tone", 3.0),
                              ("gap", 2.0), ("tone", 3.0)])
    spans = _spans_of(audio, min_span_s=2.0, max_span_s=120.0)
    # The 1 s span joins its right neighbour (0.6 s away), not the left one (1.5 s away).
    _assert_edges(spans, [tones[0], (tones[1][0], tones[2][1]), tones[3]])


def test_merge_never_exceeds_max_span():
    audio, tones = _assemble([("tone", 3.0), ("gap", 0.6), ("tone", 1.0), ("gap", 0.9), ("tone", 3.0)])
    spans = _spans_of(audio, min_span_s=2.0, max_span_s=4.5)
    # Joining the 1 s span to the nearer neighbour would give 4.6 s, to the other one 4.9 s: both
    # over 4.5 s, so it stays alone and short rather than break max_span_s.
    _assert_edges(spans, tones)
    spans = _spans_of(audio, min_span_s=2.0, max_span_s=5.0)
    _assert_edges(spans, [(tones[0][0], tones[1][1]), tones[2]])
    assert all(s.duration <= 5.0 for s in spans)


def test_long_span_is_cut_at_its_deepest_pause():
    # Three 3 s tones with 0.3 s gaps (too short to be pauses): one span of 9.6 s. The second
    # gap is quieter (-75 dBFS noise) than the first (-45 dBFS), so that is where it is cut.
    audio, tones = _assemble([("tone", 3.0), ("gap", 0.3), ("tone", 3.0), ("gap", 0.3), ("tone", 3.0)],
                             gap_db={0: -45.0, 1: -75.0})
    assert len(_spans_of(audio, max_span_s=120.0)) == 1
    spans = _spans_of(audio, min_span_s=2.0, max_span_s=8.0)
    _assert_edges(spans, [(tones[0][0], tones[1][1]), tones[2]])


def test_long_span_is_cut_repeatedly_until_every_piece_fits():
    pieces = []
    for _ in range(12):
        pieces += [("tone", 2.7), ("gap", 0.3)]
    audio, tones = _assemble(pieces[:-1])
    spans = _spans_of(audio, min_span_s=2.0, max_span_s=10.0)
    assert all(2.0 <= s.duration <= 10.0 for s in spans)
    # Every cut falls in a gap (all equally deep), and with ties the middle one is chosen, so
    # 35.7 s becomes 4 pieces, not a string of minimum-length ones.
    assert len(spans) == 4
    edges = [e for s in spans for e in (s.start, s.end)]
    tone_edges = [e for t in tones for e in t]
    assert all(min(abs(e - t) for t in tone_edges) <= EDGE_TOLERANCE_S for e in edges)


def test_edges_extend_over_soft_onsets_and_tails():
    """A soft "f" before a word and a fading tail (a few dB under the threshold) stay in the span."""
    rng = np.random.default_rng(5)
    soft = lambda seconds, db: rng.normal(0, 10 ** (db / 20), round(seconds * RATE))  # noqa: E731
    audio = np.concatenate([np.zeros(RATE), soft(0.04, -44), _tone(2.0), soft(0.03, -46), np.zeros(RATE)])
    audio = (audio + rng.normal(0, 10 ** (NOISE_FLOOR_DB / 20), audio.shape)).astype(np.float32)
    raw = nonsilent_ranges(frame_levels_db(audio, RATE), 0.001) / 1000
    np.testing.assert_allclose(raw, [(1.04, 3.04)], atol=EDGE_TOLERANCE_S)  # the tone alone
    _assert_edges(_spans_of(audio), [(1.0, 3.07)])
    _assert_edges(_spans_of(audio, extend_max_s=0), [(1.04, 3.04)])


def test_edge_extension_is_capped_over_a_noisy_floor():
    rng = np.random.default_rng(6)
    floor = lambda seconds: rng.normal(0, 10 ** (-45 / 20), round(seconds * RATE))  # noqa: E731
    audio = np.concatenate([floor(1.0), _tone(2.5), floor(1.0), _tone(2.5), floor(1.0)]).astype(np.float32)
    _assert_edges(_spans_of(audio), [(0.9, 3.6), (4.4, 7.1)])  # 0.1 s into the noise, no more


def test_reading_a_file_holds_a_block_not_the_recording(tmp_path):
    import tracemalloc

    rng = np.random.default_rng(7)
    audio = rng.normal(0, 0.1, 180 * RATE).astype(np.float32)
    sf.write(tmp_path / "long.wav", audio, RATE, subtype="PCM_16")
    tracemalloc.start()
    levels = read_frame_levels_db(tmp_path / "long.wav", block_s=2.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(levels.levels_db) == 180_000 - 9
    # 180 s as float32 is 11.5 MB; what stays is one float32 level per ms (0.7 MB) and a block.
    assert peak < audio.nbytes / 4


def test_spans_never_overlap_or_exceed_max_on_random_levels():
    rng = np.random.default_rng(8)
    for _ in range(200):
        runs = [np.full(rng.integers(1, 3000), rng.choice([-70.0, -45.0, -30.0, -10.0]))
                for _ in range(rng.integers(1, 30))]
        levels = (np.concatenate(runs) + rng.normal(0, 2, sum(map(len, runs)))).astype(np.float32)
        min_span = rng.uniform(0, 5)
        max_span = min_span + rng.uniform(0.3, 20)
        duration = (len(levels) + 9) / 1000
        spans = find_spans(levels, 0.001, -40.0, rng.uniform(0.05, 1.0), min_span, max_span, duration_s=duration)
        assert all(0 <= s.start < s.end <= duration and s.duration <= max_span + 1e-9 for s in spans)
        assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))


def test_streamed_levels_do_not_depend_on_block_size():
    audio, _ = _assemble([("tone", 1.0), ("gap", 0.7), ("tone", 1.3)], seed=3)
    whole = frame_levels_db(audio, RATE)
    for block in (1, 17, 160, 1000, 4801):
        blocks = (audio[i:i + block] for i in range(0, len(audio), block))
        np.testing.assert_allclose(stream_frame_levels_db(blocks, RATE).levels_db, whole, atol=1e-3)


def test_stereo_44k_file_is_read_at_its_own_rate(tmp_path):
    rate = 44_100
    audio, tones = _assemble([("gap", 0.8), ("tone", 2.5), ("gap", 0.9), ("tone", 2.5), ("gap", 0.5)],
                             rate=rate)
    sf.write(tmp_path / "stereo.wav", np.stack([audio, audio], axis=1), rate, subtype="PCM_16")
    levels = read_frame_levels_db(tmp_path / "stereo.wav")
    assert levels.sample_rate == rate and levels.duration_s == pytest.approx(len(audio) / rate)
    spans = find_spans(levels.levels_db, levels.hop_s, frame_s=levels.frame_s, duration_s=levels.duration_s)
    _assert_edges(spans, tones)


def test_cli_writes_tsv(tmp_path):
    audio, tones = _assemble([("gap", 0.5), ("tone", 2.5), ("gap", 0.9), ("tone", 3.25), ("gap", 0.5)])
    sf.write(tmp_path / "in put.wav", audio, RATE, subtype="PCM_16")
    proc = _cli(str(tmp_path / "in put.wav"), str(tmp_path / "out" / "spans.tsv"), "--threshold-db", "-40",
                "--min-silence-s", "0.5", "--min-span-s", "2", "--max-span-s", "120")
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "out" / "spans.tsv").read_text().splitlines()
    assert lines[0] == TSV_HEADER == "start\tend\tlevel_db"
    rows = [line.split("\t") for line in lines[1:]]
    np.testing.assert_allclose([(float(a), float(b)) for a, b, _ in rows], tones, atol=EDGE_TOLERANCE_S)
    assert all(len(a.split(".")[1]) == 3 and len(b.split(".")[1]) == 3 and len(c.split(".")[1]) == 1
               for a, b, c in rows)
    assert "2 spans" in proc.stderr


@pytest.mark.parametrize("samples, kind", [(RATE * 3, "noise"), (50, "loud"), (RATE // 10, "zeros")],
                         ids=["silent", "shorter_than_a_frame", "tenth_of_a_second_of_digital_silence"])
def test_silent_or_tiny_recording_gives_header_only_tsv_and_warning(tmp_path, samples, kind):
    rng = np.random.default_rng(0)
    audio = {"noise": lambda: rng.normal(0, 10 ** (NOISE_FLOOR_DB / 20), samples),
             "loud": lambda: 0.5 * np.ones(samples), "zeros": lambda: np.zeros(samples)}[kind]()
    sf.write(tmp_path / "quiet.wav", audio.astype(np.float32), RATE, subtype="PCM_16")
    proc = _cli(str(tmp_path / "quiet.wav"), str(tmp_path / "quiet.tsv"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "quiet.tsv").read_text() == TSV_HEADER + "\n"
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and str(tmp_path / "quiet.wav") in warnings[0]
    assert segment_file(tmp_path / "quiet.wav", tmp_path / "again.tsv") == []


def test_cli_reports_bad_input_in_one_line(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    proc = _cli(str(tmp_path / "empty.wav"), str(tmp_path / "x.tsv"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'empty.wav'}: empty file (0 bytes)"]
    assert not (tmp_path / "x.tsv").exists()


def test_cli_rejects_inconsistent_limits(tmp_path):
    proc = _cli(str(tmp_path / "a.wav"), str(tmp_path / "x.tsv"), "--min-span-s", "10", "--max-span-s", "5")
    assert proc.returncode == 2 and "--min-span-s" in proc.stderr


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_pause_between_spoken_phrases(tmp_path):
    """Real (synthesized) speech: a pause inserted between two phrases is where the spans split."""
    phrases = []
    for i, text in enumerate(["In the beginning was the word.", "And the word was with God."]):
        wav = tmp_path / f"p{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
        speech, rate = sf.read(wav, dtype="float32")
        loud = np.flatnonzero(np.abs(speech) > 10 ** (-40 / 20))
        phrases.append(speech[loud[0]:loud[-1] + 1])
    gap = np.zeros(round(0.8 * rate), dtype=np.float32)
    audio = np.concatenate([gap, phrases[0], gap, phrases[1], gap])
    spans = _spans_of(audio, rate, min_span_s=0.5)
    first_end = (len(gap) + len(phrases[0])) / rate
    second_start = first_end + len(gap) / rate
    assert len(spans) == 2
    # The phrases were trimmed at their first and last sample above -40 dBFS; a 10 ms frame's RMS
    # drops below that a little inside, where a word fades out (never outside, into the gap).
    fade_s = 0.05
    assert len(gap) / rate - EDGE_TOLERANCE_S <= spans[0].start <= len(gap) / rate + fade_s
    assert first_end - fade_s <= spans[0].end <= first_end + EDGE_TOLERANCE_S
    assert second_start - EDGE_TOLERANCE_S <= spans[1].start <= second_start + fade_s
