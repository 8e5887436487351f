"""tala.finetune.parts: training clips cut between their words into parts of at most part_seconds,
and the manifest reader's word times and spans behind it."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf

from tala.errors import InputError
from tala.finetune.parts import cut_between_words, left_out_clips, training_parts
from tala.finetune.train_ctc import Example, load_audio, read_manifest

WORDS = "o le amataga na faia ai e le atua o le lagi"


def _example(tmp_path, gaps_after: dict[int, float], word_s: float = 1.5, gap_s: float = 0.05) -> Example:
    """12 words of ``word_s`` each, ``gap_s`` apart except the wider ``gaps_after`` (word index ->
    seconds), 0.2 s of silence before the first; its WAV holds a ramp, so a span's samples are known."""
    times, t = [], 0.2
    for k in range(12):
        times.append((round(t, 6), round(t + word_s, 6)))
        t += word_s + gaps_after.get(k, gap_s)
    duration = round(times[-1][1] + 0.2, 6)
    wav = tmp_path / "clip.wav"
    sf.write(wav, (np.arange(round(duration * 16_000)) % 1000 / 1000).astype(np.float32), 16_000, subtype="FLOAT")
    return Example(wav, WORDS, duration, "train.jsonl:1", tuple(times))


def test_a_long_clip_is_cut_at_its_widest_gaps_between_words_into_parts_that_fit(tmp_path):
    # 12 words of 1.5 s: 20 s; wide gaps after words 3 (0.4 s, middle at 6.55 s), 5 (0.3 s, 9.95 s) and
    # 8 (0.5 s, 14.95 s). The middle third (6.67-13.33 s) holds the gaps after words 4-7: cut after 5,
    # the widest; the 9.95 s before it (middle third 3.32-6.63 s) after 3, the 10.05 s after it
    # (13.3-16.65 s) after 8.
    example = _example(tmp_path, {3: 0.4, 5: 0.3, 8: 0.5})
    parts = cut_between_words(example, 8.0)
    assert [p.text for p in parts] == ["o le amataga na", "faia ai", "e le atua", "o le lagi"]
    assert [p.span for p in parts] == [(0.0, 6.55), (6.55, 9.95), (9.95, 14.95), (14.95, 20.0)]
    assert all(p.duration <= 8.0 for p in parts) and sum(p.duration for p in parts) == pytest.approx(example.duration)
    assert parts[0].span[0] == 0.0 and parts[-1].span[1] == pytest.approx(example.duration)
    assert all(a.span[1] == b.span[0] for a, b in zip(parts, parts[1:])), "contiguous, nothing lost"
    first_gap = (example.word_times[3][1] + example.word_times[4][0]) / 2
    assert parts[0].span[1] == pytest.approx(first_gap), "cut in the middle of the gap"
    for part in parts:  # each word keeps its time, from its part's start
        assert len(part.word_times) == len(part.text.split())
        assert all(0 <= a < b <= part.duration + 1e-6 for a, b in part.word_times)
    k = WORDS.split().index("faia")
    assert parts[1].word_times[0][0] == pytest.approx(example.word_times[k][0] - parts[1].span[0])
    assert [p.where for p in parts] == [f"train.jsonl:1 (part {n})" for n in (1, 2, 3, 4)]
    samples = load_audio(parts[1])  # the part's own samples of the clip
    start, stop = round(parts[1].span[0] * 16_000), round(parts[1].span[1] * 16_000)
    assert np.allclose(samples, np.arange(start, stop) % 1000 / 1000, atol=1e-6)


def test_clips_that_fit_lack_word_times_or_have_no_gap_to_cut_stay_whole(tmp_path):
    example = _example(tmp_path, {})
    assert cut_between_words(example, 20.0) == [example] and cut_between_words(example, None) == [example]
    untimed = Example(example.audio, example.text, example.duration, example.where)
    assert cut_between_words(untimed, 8.0) == [untimed]
    # words that overlap (no gap anywhere) cannot be cut between
    overlapping = Example(example.audio, example.text, example.duration, example.where,
                          tuple((a, b + 0.1) for a, b in example.word_times))
    assert cut_between_words(overlapping, 8.0) == [overlapping]
    log = io.StringIO()
    out = training_parts([example, untimed, _example(tmp_path, {}, word_s=0.3)], 8.0, log=log)
    assert len(out) > 3 and out[-1].duration < 8.0
    assert log.getvalue() == (f"part_seconds 8: 1 training clips cut between words into parts of at most 8 s where a"
                              f" gap allows ({len(out)} examples from 3); 1 longer ones trained whole (no word times,"
                              " or no gap between words to cut)\n")


def test_a_clip_with_parts_left_out_counts_once_among_the_clips_left_out(tmp_path):
    cut = _example(tmp_path, {3: 0.4, 5: 0.3, 8: 0.5})
    whole = Example(cut.audio, cut.text, cut.duration, "train.jsonl:2")
    parts = training_parts([cut, whole], 8.0, log=io.StringIO())
    assert len(parts) == 5 and left_out_clips(parts, parts) == 0
    assert left_out_clips(parts, [p for p in parts if p.where != "train.jsonl:1 (part 2)"]) == 1
    assert left_out_clips(parts, parts[2:4]) == 2, "two parts of the first clip and the second clip"
    assert left_out_clips(parts, []) == 2


def test_word_times_of_the_normalized_words_are_not_taken_for_another_texts(tmp_path):
    """A tala dataset's word_times are its normalized words'; trained on ``text`` with other words
    they are left out, not an error; times matching neither are one error naming the line."""
    sf.write(tmp_path / "a.wav", np.zeros(16_000, np.float32), 16_000)
    row = {"audio": "a.wav", "text": "Faʻafetai-tele lava.", "normalized": "faʻafetai tele lava", "duration": 1.0,
           "word_times": [[0.1, 0.3], [0.3, 0.5], [0.6, 0.9]]}
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(row) + "\n", encoding="utf-8")
    assert read_manifest(manifest, "normalized")[0].word_times == ((0.1, 0.3), (0.3, 0.5), (0.6, 0.9))
    assert read_manifest(manifest, "text")[0].word_times is None
    manifest.write_text(json.dumps({**row, "word_times": [[0.1, 0.3]]}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r'm\.jsonl:1: "word_times" must be 2 \[start, end\] pairs'):
        read_manifest(manifest, "text")


def test_a_damaged_clip_or_part_is_one_error_naming_it_and_its_line(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wave")
    for span in (None, (0.5, 1.0)):
        with pytest.raises(InputError, match=r"bad\.wav: unreadable audio \(train\.jsonl:3\)"):
            load_audio(Example(bad, "o le", 1.0, "train.jsonl:3", span=span))
