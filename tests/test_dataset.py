"""tala.dataset.clips and tala.dataset.build on the demo corpus, whose verse and heading times are known exactly.

Aligned JSONs are made from the demo truth (the aligner's contract, with perfect times and
transcripts), so every check below compares against ground truth: cuts fall in true pauses, the
spoken heading (the aligner's star span) is in no clip, clips hold exactly the samples they claim.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO
from tala.dataset.clips import FLAG_TIGHT_CUT, main as clips_main, plan_segments, write_clips
from tala.audio.convert import convert_file
from tala.dataset.build import SPLITS, assign_splits, build_dataset, main as dataset_main
from tala.demo.text import normalize_text

RATE = 16_000
DEMO = REPO / "resources" / "demo"
LANG_CODES = {"samoan": "smo", "portuguese": "por"}
MIN_S, MAX_S, PAD_S = 2.0, 20.0, 0.15
# Every file tala.dataset.build writes (the workflow's rule declares them; nemo/ and lhotse/ as folders).
OUTPUTS = {"train.jsonl", "valid.jsonl", "test.jsonl", "summary.json", "README.md",
           *(f"nemo/{split}.json" for split in ("train", "valid", "test")),
           *(f"lhotse/{split}_{kind}.jsonl.gz" for split in ("train", "valid", "test")
             for kind in ("recordings", "supervisions"))}


def truth_of(lang: str, rec: str) -> dict:
    return json.loads((DEMO / lang / "truth" / f"{rec}.json").read_text(encoding="utf-8"))


def aligned_from_truth(truth: dict, wav: Path, lang: str) -> dict:
    """What a perfect aligner would write: truth times, greedy = normalized, heading as a star span."""
    code = LANG_CODES[lang]
    verses = [{"number": v["number"], "label": str(v["number"]), "start": v["start"], "end": v["end"],
               "text": v["text"], "normalized": normalize_text(v["text"], code),
               "score": round(-0.1 - 0.01 * i, 3), "cer": 0.0, "greedy": normalize_text(v["text"], code)}
              for i, v in enumerate(truth["verses"])]
    return {"recording": truth["recording"], "audio": str(wav), "method": "ctc", "frame_s": 0.02,
            "duration_s": truth["duration"], "verses": verses, "words": [],
            "star": [{"start": truth["heading"]["start"], "end": truth["heading"]["end"], "after_verse": None}],
            "summary": {}, "settings": {}}


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """{lang: {rec: aligned JSON path}} with the demo audio converted to 16 kHz WAV."""
    base = tmp_path_factory.mktemp("demo_aligned")
    out: dict[str, dict[str, Path]] = {}
    for lang in LANG_CODES:
        for truth_path in sorted((DEMO / lang / "truth").glob("*.json")):
            truth = json.loads(truth_path.read_text(encoding="utf-8"))
            wav = base / lang / "audio" / f"{truth['recording']}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            convert_file(DEMO / lang / truth["audio"], wav)
            aligned = base / lang / "aligned" / f"{truth['recording']}.json"
            aligned.parent.mkdir(parents=True, exist_ok=True)
            aligned.write_text(json.dumps(aligned_from_truth(truth, wav, lang), ensure_ascii=False), encoding="utf-8")
            out.setdefault(lang, {})[truth["recording"]] = aligned
    return out


@pytest.fixture(scope="session")
def samoan_clips(demo, tmp_path_factory) -> tuple[Path, list[Path]]:
    """The Samoan demo cut into clips under <dataset>/clips/<rec>/; returns the dataset folder and JSONLs."""
    dataset = tmp_path_factory.mktemp("samoan") / "dataset"
    jsonls = []
    for rec, aligned in demo["samoan"].items():
        jsonl = dataset.parent / "segments" / f"{rec}.jsonl"
        write_clips(aligned, jsonl, dataset / "clips" / rec)
        jsonls.append(jsonl)
    return dataset, jsonls


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------------------------------------
# Clips
# ---------------------------------------------------------------------------------------------

def test_clips_hold_whole_verses_cut_in_true_pauses(demo, tmp_path):
    for lang, recs in demo.items():
        for rec, aligned in recs.items():
            truth = truth_of(lang, rec)
            records = write_clips(aligned, tmp_path / lang / f"{rec}.jsonl", tmp_path / lang / "clips" / rec)
            assert all(r["kept"] for r in records), (lang, rec)
            # Every verse in exactly one clip, in order, and no verse cut by a clip edge.
            assert [n for r in records for n in r["verses"]] == [v["number"] for v in truth["verses"]]
            speech = [(truth["heading"]["start"], truth["heading"]["end"])] + [(v["start"], v["end"]) for v in truth["verses"]]
            for r in records:
                assert MIN_S <= r["duration"] <= MAX_S, (rec, r["id"], r["duration"])
                inside = [v for v in truth["verses"] if v["number"] in r["verses"]]
                assert r["start"] <= inside[0]["start"] and r["end"] >= inside[-1]["end"]
                assert inside[0]["start"] - r["start"] <= PAD_S + 1e-4
                assert r["end"] - inside[-1]["end"] <= PAD_S + 1e-4
                for a, b in speech:
                    overlaps = a < r["end"] and b > r["start"]
                    assert not overlaps or (r["start"] <= a and b <= r["end"]), (rec, r["id"], a, b)
            # Neighbouring clips meet at most in the middle of the pause between them.
            for one, two in zip(records, records[1:]):
                assert one["end"] <= two["start"]


@pytest.mark.parametrize("pad_s", [PAD_S, 3.0])
def test_no_clip_contains_the_spoken_heading(demo, tmp_path, pad_s):
    for lang, recs in demo.items():
        for rec, aligned in recs.items():
            heading = truth_of(lang, rec)["heading"]
            records = write_clips(aligned, tmp_path / f"{lang}_{rec}.jsonl", tmp_path / lang / rec, pad_s=pad_s)
            for r in records:
                assert r["end"] <= heading["start"] or r["start"] >= heading["end"], (rec, r["id"])
                # ... nor the first half of the pause after it.
                first = truth_of(lang, rec)["verses"][0]
                assert r["start"] >= (heading["end"] + first["start"]) / 2 - 1 / RATE


def test_clips_have_exactly_the_samples_they_claim(samoan_clips, demo):
    dataset, jsonls = samoan_clips
    for jsonl in jsonls:
        records = read_jsonl(jsonl)
        source = json.loads(demo["samoan"][records[0]["recording"]].read_text())["audio"]
        full, _ = sf.read(source, dtype="int16")
        for r in records:
            info = sf.info(str(dataset / r["audio"]))
            first, last = round(r["start"] * RATE), round(r["end"] * RATE)
            assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
            assert info.frames == last - first == round(r["duration"] * RATE)
            clip, _ = sf.read(str(dataset / r["audio"]), dtype="int16")
            np.testing.assert_array_equal(clip, full[first:last])
            assert re.fullmatch(rf"clips/{r['recording']}/{r['recording']}_\d{{4}}_{r['verses'][0]}-{r['verses'][-1]}\.wav",
                                r["audio"])


def test_clips_leave_no_temporary_files_and_replace_old_clips(demo, tmp_path):
    aligned = demo["samoan"]["JHN_001"]
    clips = tmp_path / "dataset" / "clips" / "JHN_001"
    clips.mkdir(parents=True)
    (clips / "stale.wav").write_bytes(b"old")
    write_clips(aligned, tmp_path / "JHN_001.jsonl", clips)
    assert not (clips / "stale.wav").exists()
    assert sorted(p.name for p in (tmp_path / "dataset" / "clips").iterdir()) == ["JHN_001"]
    assert len(list(clips.glob("*.wav"))) == sum(r["kept"] for r in read_jsonl(tmp_path / "JHN_001.jsonl"))


def test_a_rejected_chapter_gets_no_clips_and_an_empty_segment_file(tmp_path, capsys):
    aligned = tmp_path / "JHN_001.json"
    aligned.write_text(json.dumps({"recording": "JHN_001", "status": "rejected", "stage": "align",
                                   "file": "text/JHN_001.docx", "reason": "text does not match the audio"}))
    clips = tmp_path / "dataset" / "clips" / "JHN_001"
    clips.mkdir(parents=True)
    (clips / "stale.wav").write_bytes(b"old")
    assert write_clips(aligned, tmp_path / "JHN_001.jsonl", clips) == []
    assert clips.is_dir() and not list(clips.iterdir())
    assert (tmp_path / "JHN_001.jsonl").read_text() == ""
    assert "rejected chapter (text does not match the audio)" in capsys.readouterr().err


def _synthetic(verses: list[tuple[float, float]], **extra) -> dict:
    return {"recording": "SYN_001", "duration_s": 200.0, "star": [], "words": [],
            "verses": [{"number": i + 1, "label": str(i + 1), "start": s, "end": e, "text": f"Verse {i + 1} text.",
                        "normalized": f"verse {i + 1} text", "greedy": f"verse {i + 1} text", "score": -0.2,
                        "cer": 0.0} for i, (s, e) in enumerate(verses)], **extra}


def test_grouping_cuts_only_in_pauses_of_min_pause():
    # Verses 1-2 are 0.1 s apart (not a pause); 2-3 and 3-4 are 1 s apart.
    aligned = _synthetic([(1.0, 9.0), (9.1, 15.0), (16.0, 22.0), (23.0, 29.0)])
    segments = plan_segments(aligned, duration_s=40.0, min_pause_s=0.15)
    groups = [[aligned["verses"][i]["number"] for i in s.verse_indices] for s in segments]
    assert groups == [[1, 2], [3, 4]]
    # With pauses required to be longer than every gap, 28 s of speech has no pause: it is cut once,
    # in its widest gap (1 s after verse 2, not 0.1 s after verse 1), and both clips say so.
    segments = plan_segments(aligned, duration_s=40.0, min_pause_s=2.0)
    assert [[aligned["verses"][i]["number"] for i in s.verse_indices] for s in segments] == [[1, 2], [3, 4]]
    assert all(s.kept and s.flags == (FLAG_TIGHT_CUT,) and s.duration <= MAX_S for s in segments)
    assert segments[0].end == 15.15 and segments[1].start == 15.85  # padded as usual


def test_long_verse_is_cut_at_a_pause_between_words():
    words = [{"word": w, "verse": 1, "start": s, "end": e, "score": -0.3} for w, s, e in
             [("in", 1.0, 6.0), ("the", 6.05, 12.0), ("beginning", 12.6, 18.0), ("god", 18.05, 26.0)]]
    aligned = _synthetic([(1.0, 26.0), (27.0, 30.0)], words=words)
    aligned["verses"][0].update(text="In the beginning, God.", normalized="in the beginning god",
                                greedy="in the beginning god")
    segments = plan_segments(aligned, duration_s=40.0)
    assert [(s.text, s.kept) for s in segments] == [("In the", True), ("beginning, God.", True),
                                                    ("Verse 2 text.", True)]
    assert 12.0 < segments[0].end <= 12.3 and 12.3 <= segments[1].start < 12.6
    assert [s.partial for s in segments] == [(0,), (0,), ()]


def test_short_lonely_and_unscored_verses_are_dropped_with_reasons():
    aligned = _synthetic([(1.0, 2.0), (5.0, 9.0), (10.0, 14.0), (15.0, 19.0)])
    aligned["star"] = [{"start": 2.5, "end": 4.5, "after_verse": 1}]
    aligned["verses"][2]["score"] = None
    segments = plan_segments(aligned, duration_s=40.0)
    by_verse = {tuple(i + 1 for i in s.verse_indices): s for s in segments}
    assert set(by_verse) == {(1,), (2,), (3,), (4,)}  # nothing joined across the star or verse 3
    assert by_verse[(1,)].reason_kind == "too-short" and not by_verse[(1,)].kept
    assert by_verse[(3,)].reason_kind == "unaligned" and "verse 3" in by_verse[(3,)].reason
    assert by_verse[(2,)].kept and by_verse[(4,)].kept
    assert by_verse[(2,)].start >= 4.5 and by_verse[(1,)].end <= 2.5  # not padded into the star span


def _worded_verse(start: float, durations: list[float], gaps: list[float], number: int = 1) -> tuple[dict, list[dict]]:
    """A verse of len(durations) words ("w1".."wN", text "W1, w2 ... wN.") read back to back with
    ``gaps`` between them, and its aligned words."""
    words, t = [], start
    for k, d in enumerate(durations):
        words.append({"word": f"w{k + 1}", "verse": number, "start": round(t, 6), "end": round(t + d, 6),
                      "score": -0.2})
        t += d + (gaps[k] if k < len(gaps) else 0.0)
    normalized = " ".join(w["word"] for w in words)
    text = "W1, " + " ".join(f"w{k + 1}" for k in range(1, len(words))) + "."
    verse = {"number": number, "label": str(number), "start": words[0]["start"], "end": words[-1]["end"],
             "text": text, "normalized": normalized, "greedy": normalized, "score": -0.2, "cer": 0.0}
    return verse, words


def test_long_verse_without_pauses_is_cut_in_its_widest_word_gaps():
    # 10 words of 4 s, no pause of min-pause-s 0.15: gaps of 0.02 s but 0.12 s after w3 and w6,
    # 0.08 s after w8. At most 4 words fit 20 s, so it takes 3 clips; the widest gaps give 3+3+4.
    gaps = [0.02, 0.02, 0.12, 0.02, 0.02, 0.12, 0.02, 0.08, 0.02]
    verse, words = _worded_verse(1.0, [4.0] * 10, gaps)
    aligned = {**_synthetic([]), "verses": [verse], "words": words}
    segments = plan_segments(aligned, duration_s=60.0)
    assert [(s.text, s.normalized) for s in segments] == [("W1, w2 w3", "w1 w2 w3"), ("w4 w5 w6", "w4 w5 w6"),
                                                          ("w7 w8 w9 w10.", "w7 w8 w9 w10")]
    assert [s.partial for s in segments] == [(0,), (0,), (0,)]
    assert all(s.kept and s.verse_indices == (0,) and s.duration <= MAX_S for s in segments)
    assert all(s.flags == (FLAG_TIGHT_CUT,) for s in segments)
    for one, two, (before, after) in zip(segments, segments[1:], [(words[2], words[3]), (words[5], words[6])]):
        middle = (before["end"] + after["start"]) / 2  # 0.06 s from each word: less than the padding
        assert one.end == pytest.approx(middle, abs=1 / RATE) and two.start == one.end
    # each clip's words keep their aligned times, from the clip's own start
    for segment, first in zip(segments, (0, 3, 6)):
        n = len(segment.normalized.split())
        assert len(segment.word_times) == n
        for (start, end), word in zip(segment.word_times, words[first:first + n]):
            assert start == pytest.approx(word["start"] - segment.start, abs=1e-3)
            assert end == pytest.approx(word["end"] - segment.start, abs=1e-3)


def test_word_times_are_the_normalized_words_or_none():
    """Two whole verses in one clip: their words' times from the clip's start; a verse whose
    aligned words are not its normalized words (or with none) gives the clip no word times."""
    one, words_one = _worded_verse(1.0, [1.0, 1.5, 2.0], [0.1, 0.1])
    two, words_two = _worded_verse(6.0, [2.0, 1.0], [0.2], number=2)
    aligned = {**_synthetic([]), "verses": [one, two], "words": words_one + words_two}
    (segment,) = plan_segments(aligned, duration_s=20.0, min_pause_s=2.0)
    assert segment.normalized == "w1 w2 w3 w1 w2" and segment.start == pytest.approx(0.85)
    assert segment.word_times == ((0.15, 1.15), (1.25, 2.75), (2.85, 4.85), (5.15, 7.15), (7.35, 8.35))
    for bad in (words_one + words_two[:1], words_one):  # a word missing; a verse without words
        (segment,) = plan_segments({**aligned, "words": bad}, duration_s=20.0, min_pause_s=2.0)
        assert segment.kept and segment.word_times is None


@pytest.mark.parametrize("case", ["no words", "one long word", "words not matching the text"])
def test_verse_that_cannot_be_cut_is_dropped_over_max_and_its_neighbour_kept(case):
    verse, words = _worded_verse(1.0, [3.0, 21.0, 3.0], [0.05, 0.05])  # 27.1 s
    neighbour = {"number": 2, "label": "2", "start": 28.15, "end": 33.0, "text": "Next verse.",
                 "normalized": "next verse", "greedy": "next verse", "score": -0.2, "cer": 0.0}
    if case == "no words":
        words = []
    elif case == "words not matching the text":
        words = words + [{"word": "extra", "verse": 1, "start": 27.2, "end": 27.5}]  # 4 words, 3 tokens
    aligned = {**_synthetic([]), "verses": [verse, neighbour], "words": words}
    segments = plan_segments(aligned, duration_s=60.0)
    assert [s.verse_indices for s in segments] == [(0,), (1,)]  # not joined across the 0.05 s gap
    over, kept = segments
    assert not over.kept and over.reason_kind == "over-max" and over.partial == ()
    assert over.reason.startswith("over max-s: 27.10 s of speech > max-s 20 s, and ")
    assert {"no words": "no times for its words", "one long word": '"w2" alone is 21.00 s',
            "words not matching the text": "do not match its text"}[case] in over.reason
    assert kept.kept and kept.duration <= MAX_S


@pytest.mark.parametrize("seed", range(12))
def test_no_kept_clip_is_longer_than_max_s_and_no_text_is_lost(seed):
    rng = np.random.default_rng(seed)
    max_s, pad_s = float(rng.choice([8.0, 12.5, 20.0])), float(rng.choice([0.0, 0.15, 0.4]))
    verses, words, t = [], [], 0.5
    for number in range(1, int(rng.integers(3, 9)) + 1):
        n_words = int(rng.integers(1, 40))
        durations = list(rng.uniform(0.1, 1.5 if rng.random() < 0.8 else 9.0, n_words))
        gaps = list(rng.choice([0.0, 0.01, 0.04, 0.1, 0.3], n_words - 1, p=[0.2, 0.3, 0.3, 0.15, 0.05]))
        verse, verse_words = _worded_verse(t, durations, gaps, number)
        verses.append(verse)
        words += verse_words if rng.random() < 0.85 else []
        t = verse["end"] + float(rng.choice([0.0, 0.05, 0.2, 1.0]))
    aligned = {**_synthetic([]), "verses": verses, "words": words}
    segments = plan_segments(aligned, duration_s=t + 1.0, max_s=max_s, pad_s=pad_s, min_s=1.0)
    for s in segments:
        samples = round(s.end * RATE) - round(s.start * RATE)
        if s.kept:
            assert samples <= max_s * RATE and s.speech_end - s.speech_start <= max_s, (s, max_s)
        else:
            assert s.reason_kind in {"too-short", "over-max"}
            assert s.reason_kind == "too-short" or s.speech_end - s.speech_start > max_s
    assert " ".join(s.text for s in segments) == " ".join(v["text"] for v in verses)
    for one, two in zip(segments, segments[1:]):
        assert one.end <= two.start + 1e-9


def _write_synthetic(tmp_path: Path, aligned: dict, seconds: float) -> Path:
    """A noise WAV of ``seconds`` and its aligned JSON (the aligner's contract) under tmp_path."""
    wav = tmp_path / "audio" / f"{aligned['recording']}.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).integers(-3000, 3000, int(seconds * RATE)).astype(np.int16)
    sf.write(str(wav), noise, RATE, subtype="PCM_16")
    path = tmp_path / "aligned" / f"{aligned['recording']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**aligned, "audio": str(wav), "duration_s": seconds}), encoding="utf-8")
    return path


def test_dataset_counts_verses_cut_between_words_and_over_max_drops(tmp_path):
    long_verse, words = _worded_verse(1.0, [3.0] * 10, [0.02] * 4 + [0.1] + [0.02] * 4)  # 30.28 s
    unworded = {**_worded_verse(32.0, [22.0], [], 2)[0], "text": "No words.", "normalized": "no words",
                "greedy": "no words"}
    normal = {**_worded_verse(55.0, [5.0], [], 3)[0], "text": "Short one.", "normalized": "short one",
              "greedy": "short one"}
    aligned = _write_synthetic(tmp_path, {**_synthetic([]), "verses": [long_verse, unworded, normal],
                                          "words": words}, 62.0)
    dataset = tmp_path / "dataset"
    records = write_clips(aligned, tmp_path / "segments" / "SYN_001.jsonl", dataset / "clips" / "SYN_001")
    assert [(r["verses"], r["kept"], r["partial_verses"]) for r in records] == [
        ([1], True, [1]), ([1], True, [1]), ([2], False, []), ([3], True, [])]
    for r in records[:2] + records[3:]:
        assert sf.info(str(dataset / r["audio"])).frames <= MAX_S * RATE
    summary = build_dataset([tmp_path / "segments" / "SYN_001.jsonl"], dataset, "samoan")
    assert summary["split_long_verses"] == {"verses": 1, "pieces": 2}
    assert summary["dropped"]["by_reason"] == {"over-max": 1}
    assert summary["flagged"] == {FLAG_TIGHT_CUT: [records[0]["id"], records[1]["id"]]}
    card = (dataset / "README.md").read_text()
    assert "Verses too long for one clip, cut between words: 1 (2 clips hold a part of one" in card
    assert "- **over-max**: 1 (longer than the maximum clip length and not cuttable between words" in card
    assert "over max-s: 22.00 s of speech > max-s 20 s" in card


def test_high_cer_segment_is_dropped_and_reported(demo, tmp_path):
    aligned = json.loads(demo["samoan"]["GEN_001"].read_text())
    aligned["verses"][4]["greedy"] = "ua fai mai e le tagata se isi mea e ese lava"
    bad = tmp_path / "GEN_001.json"
    bad.write_text(json.dumps(aligned, ensure_ascii=False))
    dataset = tmp_path / "dataset"
    jsonls = []
    for rec, path in demo["samoan"].items():
        jsonls.append(tmp_path / "segments" / f"{rec}.jsonl")
        write_clips(bad if rec == "GEN_001" else path, jsonls[-1], dataset / "clips" / rec)
    records = read_jsonl(jsonls[0])
    dropped = [r for r in records if not r["kept"]]
    assert len(dropped) == 1 and 5 in dropped[0]["verses"] and dropped[0]["audio"] is None
    assert re.fullmatch(r"cer \d\.\d\d > 0\.3", dropped[0]["reason"])
    assert not any(dataset.glob(f"clips/GEN_001/{dropped[0]['id']}*"))

    problems = [{"recording": "MAT_005", "stage": "read_text", "reason": "no DOCX for MAT 5"}]
    summary = build_dataset(jsonls, dataset, "samoan", problems=problems)
    assert summary["dropped"]["by_reason"] == {"cer": 1}
    assert summary["dropped"]["by_recording"] == {"GEN_001": {"cer": 1}}
    assert json.loads((dataset / "summary.json").read_text())["problems"] == problems
    card = (dataset / "README.md").read_text()
    assert dropped[0]["id"] in card and dropped[0]["reason"] in card
    assert "| MAT_005 | read_text | no DOCX for MAT 5 |" in card
    ids = {row["id"] for split in SPLITS for row in read_jsonl(dataset / f"{split}.jsonl")}
    assert dropped[0]["id"] not in ids and len(ids) == sum(r["kept"] for j in jsonls for r in read_jsonl(j))


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------

def test_split_by_recording_is_deterministic(samoan_clips, tmp_path):
    dataset, jsonls = samoan_clips
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run
        build_dataset(list(reversed(jsonls)) if run == "b" else jsonls, out, "samoan", root=dataset)
        outputs.append({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert outputs[0] == outputs[1]
    assert set(outputs[0]) == OUTPUTS  # the clips live in root
    for name in OUTPUTS:
        if name.endswith(".gz"):  # no time stamp, no file name in the gzip header
            assert outputs[0][name][3:8] == bytes(5)
    rows = {split: read_jsonl(tmp_path / "a" / f"{split}.jsonl") for split in SPLITS}
    recordings = {split: {r["recording"] for r in rows[split]} for split in SPLITS}
    assert all(recordings[s] for s in SPLITS)  # 4 recordings: each split gets one
    assert not (recordings["train"] & recordings["valid"] or recordings["train"] & recordings["test"]
                or recordings["valid"] & recordings["test"])
    for row in rows["train"]:
        assert (tmp_path / "a" / row["audio"]).is_file()  # relative to the out-dir; the clips live in root
        assert row["language"] == "samoan" and set(row) >= {"audio", "text", "duration", "recording", "start",
                                                            "end", "score", "cer", "verses", "word_times"}
        assert row["word_times"] is None, "this fixture's perfect aligner gives verse times only"


def test_assign_splits_follows_ratios():
    equal = {f"R{i:02d}": 60.0 for i in range(10)}
    counts = sorted(list(assign_splits(equal, (0.8, 0.1, 0.1), 7).values()).count(k) for k in range(3))
    assert counts == [1, 1, 8]
    rng = np.random.default_rng(0)
    many = {f"R{i:03d}": float(rng.uniform(60, 600)) for i in range(60)}  # the greedy path
    assignment = assign_splits(many, (0.8, 0.1, 0.1), 1)
    total = sum(many.values())
    for k, ratio in enumerate((0.8, 0.1, 0.1)):
        share = sum(d for r, d in many.items() if assignment[r] == k)
        assert abs(share - ratio * total) <= max(many.values())
    assert assign_splits(many, (0.8, 0.1, 0.1), 1) == assignment
    assert set(assign_splits({"A": 1.0, "B": 2.0}, (0.8, 0.1, 0.1), 1).values()) <= {0, 1, 2}
    assert set(assign_splits({f"R{i}": 1.0 for i in range(5)}, (0.5, 0.5, 0.0), 1).values()) == {0, 1}


def test_dataset_loads_with_hf_datasets_as_the_card_says(samoan_clips, tmp_path, monkeypatch):
    dataset, jsonls = samoan_clips
    build_dataset(jsonls, dataset, "samoan")
    card = (dataset / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    assert 'load_dataset("json", data_files={"train": "train.jsonl"' in snippet
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.chdir(tmp_path)  # the snippet's os.chdir must take it to the dataset
    namespace: dict = {}
    exec(snippet.replace("path/to/this/folder", str(dataset)), namespace)  # noqa: S102 - the card's own code
    assert Path.cwd() == dataset.resolve()
    ds = namespace["ds"]
    for split in SPLITS:
        assert len(ds[split]) == len(read_jsonl(dataset / f"{split}.jsonl"))
        example = ds[split][0]
        assert example["audio"]["sampling_rate"] == RATE
        assert abs(len(example["audio"]["array"]) - example["duration"] * RATE) <= 1
        assert example["text"] and example["language"] == "samoan"


def test_nemo_manifests_point_at_the_clips(samoan_clips):
    dataset, jsonls = samoan_clips
    build_dataset(jsonls, dataset, "samoan")
    for split in SPLITS:
        for line in read_jsonl(dataset / "nemo" / f"{split}.json"):
            assert set(line) == {"audio_filepath", "duration", "text"}
            assert sf.info(str(dataset / "nemo" / line["audio_filepath"])).duration == pytest.approx(line["duration"])


def test_lhotse_manifests_load_as_the_card_says(samoan_clips, tmp_path, monkeypatch):
    lhotse = pytest.importorskip("lhotse")
    dataset, jsonls = samoan_clips
    build_dataset(jsonls, dataset, "samoan")
    monkeypatch.chdir(tmp_path)  # the snippet's os.chdir must take it to the dataset
    card = (dataset / "README.md").read_text()
    snippet = re.findall(r"```python\n(.*?)```", card, re.S)[1]
    assert "from lhotse import" in snippet and len(snippet.strip().splitlines()) <= 7
    namespace: dict = {}
    exec(snippet.replace("path/to/this/folder", str(dataset)), namespace)  # noqa: S102 - the card's own code
    assert Path.cwd() == dataset.resolve()
    for split in SPLITS:
        rows = read_jsonl(dataset / f"{split}.jsonl")
        recordings = lhotse.load_manifest(f"lhotse/{split}_recordings.jsonl.gz")
        supervisions = lhotse.load_manifest(f"lhotse/{split}_supervisions.jsonl.gz")
        assert isinstance(recordings, lhotse.RecordingSet) and isinstance(supervisions, lhotse.SupervisionSet)
        cuts = lhotse.CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
        assert [c.recording_id for c in cuts] == [row["id"] for row in rows]
        for cut, row in zip(cuts, rows):
            clip, _ = sf.read(row["audio"], dtype="float32")
            np.testing.assert_array_equal(cut.load_audio()[0], clip)
            (supervision,) = cut.supervisions
            assert (supervision.text, supervision.language, supervision.start) == (row["text"], "samoan", 0.0)
            assert supervision.duration == cut.duration == pytest.approx(row["duration"], abs=1e-6)
            assert supervision.custom["verses"] == row["verses"]
    # Written as lhotse writes them (lhotse is not needed to write them).
    recordings = lhotse.load_manifest("lhotse/train_recordings.jsonl.gz")
    assert [r.to_dict() for r in recordings] == [json.loads(line) for line in
                                                  gzip.open("lhotse/train_recordings.jsonl.gz", "rt")]
    # From elsewhere, as the card says: with the folder as a prefix.
    os.chdir(tmp_path)
    clip, _ = sf.read(str(dataset / recordings[0].sources[0].source), dtype="float32")
    np.testing.assert_array_equal(recordings.with_path_prefix(str(dataset))[0].load_audio()[0], clip)


def test_lhotse_supervisions_carry_the_word_times_as_their_word_alignment():
    lhotse = pytest.importorskip("lhotse")
    from tala.dataset.build import lhotse_supervision

    row = {"id": "GEN_001_0000_1-1", "duration": 2.5, "text": "O le lagi.", "normalized": "o le lagi",
           "language": "samoan", "recording": "GEN_001", "verses": [1], "score": -0.1, "cer": 0.0,
           "word_times": [[0.15, 0.3], [0.35, 0.6], [0.7, 1.25]]}
    supervision = lhotse.SupervisionSegment.from_dict(json.loads(json.dumps(lhotse_supervision(row))))
    assert [(a.symbol, a.start, a.duration) for a in supervision.alignment["word"]] == [
        ("o", 0.15, 0.15), ("le", 0.35, 0.25), ("lagi", 0.7, 0.55)]
    assert lhotse.SupervisionSegment.from_dict(lhotse_supervision({**row, "word_times": None})).alignment is None


def test_manifest_folders_are_replaced_whole(samoan_clips, tmp_path):
    dataset, jsonls = samoan_clips
    out = tmp_path / "out"
    for folder in ("nemo", "lhotse"):
        (out / folder).mkdir(parents=True)
        (out / folder / "stale.json").write_text("{}")
    build_dataset(jsonls, out, "samoan", root=dataset)
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == OUTPUTS
    assert not list(out.glob(".*"))


def test_problems_are_listed_in_the_summary_and_the_card_before_what_was_dropped(samoan_clips, tmp_path):
    dataset, jsonls = samoan_clips
    problems = [{"recording": "MAT_005", "stage": "read_text", "reason": "no DOCX"},
                {"recording": "ACT_002", "stage": "inspect", "reason": "clipped | distorted audio",
                 "severity": "excluded", "file": "audio/ACT_002.mp3"},  # as tala.report.problems writes them
                {"recording": "ACT_002", "stage": "align", "reason": "CER 0.41 > 0.2"}]
    problems_file = tmp_path / "problems.json"
    problems_file.write_text(json.dumps([*problems, problems[0], {**problems[2], "other": 1}]))
    assert dataset_main(["--language", "samoan", "--segments", *map(str, jsonls), "--out-dir", str(tmp_path / "out"),
                         "--root", str(dataset), "--problems", str(problems_file)]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["problems"] == [problems[2], problems[1], problems[0]] and "missing_text" not in summary
    card = (tmp_path / "out" / "README.md").read_text()
    table = "| recording | stage | reason |\n|---|---|---|\n| ACT_002 | align | CER 0.41 > 0.2 |\n" \
            "| ACT_002 | inspect | clipped \\| distorted audio |\n| MAT_005 | read_text | no DOCX |\n"
    assert table in card
    assert card.index("## Splits") < card.index("## Problems") < card.index("## Dropped")
    build_dataset(jsonls, tmp_path / "out", "samoan", root=dataset)
    assert "## Problems\n\nNone.\n" in (tmp_path / "out" / "README.md").read_text()


def test_every_chapter_failed_still_gives_the_dataset_files_and_says_why(tmp_path):
    empty = tmp_path / "segments" / "GEN_001.jsonl"  # its alignment was rejected
    empty.parent.mkdir()
    empty.write_text("")
    problems = tmp_path / "problems.json"
    problems.write_text(json.dumps([{"recording": "GEN_001", "stage": "align", "reason": "CER 0.6 > 0.2"},
                                    {"recording": "RUT_001", "stage": "inspect", "reason": "silent audio"}]))
    for segments in ([], [str(empty)]):
        out = tmp_path / f"out{len(segments)}"
        assert dataset_main(["--language", "samoan", "--segments", *segments, "--out-dir", str(out),
                             "--problems", str(problems)]) == 0
        assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == OUTPUTS
        assert all(read_jsonl(out / f"{split}.jsonl") == [] for split in SPLITS)
        assert gzip.decompress((out / "lhotse" / "train_recordings.jsonl.gz").read_bytes()) == b""
        summary = json.loads((out / "summary.json").read_text())
        assert summary["total"]["segments"] == 0
        assert [p["recording"] for p in summary["problems"]] == ["GEN_001", "RUT_001"]
        assert summary["recordings_without_kept_segments"] == (["GEN_001"] if segments else [])
        card = (out / "README.md").read_text()
        assert "The dataset is empty" in card and "| RUT_001 | inspect | silent audio |" in card


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------

def test_aligned_json_without_verses_is_a_one_line_error(tmp_path, capsys):
    aligned = tmp_path / "EMPTY_001.json"
    aligned.write_text(json.dumps({"recording": "EMPTY_001", "audio": "x.wav", "verses": [], "star": []}))
    from tala.errors import run_cli
    assert run_cli(clips_main, [str(aligned), str(tmp_path / "o.jsonl"), str(tmp_path / "clips" / "E")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {aligned}: no verses in the aligned JSON (nothing to cut into clips)"
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "clips").exists()


def test_missing_audio_is_a_one_line_error(demo, tmp_path, capsys):
    aligned = json.loads(demo["samoan"]["RUT_001"].read_text())
    aligned["audio"] = str(tmp_path / "gone" / "RUT_001.wav")
    path = tmp_path / "RUT_001.json"
    path.write_text(json.dumps(aligned, ensure_ascii=False))
    from tala.errors import run_cli
    assert run_cli(clips_main, [str(path), str(tmp_path / "o.jsonl"), str(tmp_path / "clips" / "R")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {aligned['audio']}: no such file (the audio of {path})"
    assert not (tmp_path / "o.jsonl").exists()


def test_wrong_audio_is_an_error(demo, tmp_path, capsys):
    aligned = json.loads(demo["samoan"]["RUT_001"].read_text())
    aligned["audio"] = json.loads(demo["samoan"]["PSA_121"].read_text())["audio"]  # 48 s, not 61 s
    path = tmp_path / "RUT_001.json"
    path.write_text(json.dumps(aligned, ensure_ascii=False))
    from tala.errors import run_cli
    assert run_cli(clips_main, [str(path), str(tmp_path / "o.jsonl"), str(tmp_path / "clips" / "R")]) == 1
    assert "but" in capsys.readouterr().err and not (tmp_path / "o.jsonl").exists()


def test_dataset_cli_names_a_missing_segments_file(tmp_path, capsys):
    from tala.errors import run_cli
    missing = tmp_path / "nope.jsonl"
    assert run_cli(dataset_main, ["--language", "samoan", "--segments", str(missing), "--out-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {missing}: no such file"


def test_cli_end_to_end(demo, tmp_path):
    import subprocess
    import sys
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    aligned = demo["portuguese"]["PSA_121"]
    subprocess.run([sys.executable, "-m", "tala.dataset.clips", str(aligned), str(tmp_path / "seg" / "PSA_121.jsonl"),
                    str(tmp_path / "ds" / "clips" / "PSA_121"), "--text", "normalized"], check=True, env=env)
    subprocess.run([sys.executable, "-m", "tala.dataset.build", "--language", "portuguese", "--segments",
                    str(tmp_path / "seg" / "PSA_121.jsonl"), "--out-dir", str(tmp_path / "ds")], check=True, env=env)
    rows = read_jsonl(tmp_path / "ds" / "train.jsonl")
    assert rows and all(r["text"] == r["normalized"] for r in rows)
    assert read_jsonl(tmp_path / "ds" / "valid.jsonl") == []  # one recording: all of it in train


@pytest.mark.parametrize("content, reason", [
    ("{not json", "not valid JSON"),
    ('{"recording": "GEN_001"}', 'expected a JSON list of {"recording", "stage", "reason"} objects'),
    ('[{"recording": "GEN_001", "stage": "align"}]',
     "item 1: expected an object with string 'recording', 'stage' and 'reason'"),
    ('[{"recording": "A", "stage": "align", "reason": "x"}, "B"]', "item 2: expected an object"),
])
def test_malformed_problems_file_is_a_one_line_error(tmp_path, capsys, content, reason):
    from tala.errors import run_cli
    problems = tmp_path / "problems.json"
    problems.write_text(content)
    out = tmp_path / "out"
    assert run_cli(dataset_main, ["--language", "samoan", "--out-dir", str(out), "--problems", str(problems)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {problems}: {reason}") and "\n" not in err
    assert not out.exists()
