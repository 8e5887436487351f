"""tala.clips and tala.dataset on the demo corpus, whose verse and heading times are known exactly.

Aligned JSONs are made from the demo truth (the aligner's contract, with perfect times and
transcripts), so every check below compares against ground truth: cuts fall in true pauses, the
spoken heading (the aligner's star span) is in no clip, clips hold exactly the samples they claim.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO
from tala.clips import FLAG_OVER_MAX, main as clips_main, plan_segments, write_clips
from tala.convert import convert_file
from tala.dataset import SPLITS, assign_splits, build_dataset, main as dataset_main
from tala.demo_model import normalize_text

RATE = 16_000
DEMO = REPO / "resources" / "demo"
LANG_CODES = {"samoan": "smo", "portuguese": "por"}
MIN_S, MAX_S, PAD_S = 2.0, 20.0, 0.15


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
    # With pauses required to be longer than every gap, nothing can be cut: one clip, flagged.
    segments = plan_segments(aligned, duration_s=40.0, min_pause_s=2.0)
    assert len(segments) == 1 and segments[0].flags == (FLAG_OVER_MAX,) and segments[0].kept


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
    # No pause between words: kept whole and flagged.
    for w in words:
        w["start"], w["end"] = w["start"], w["end"] + 0.5
    segments = plan_segments(aligned, duration_s=40.0)
    assert segments[0].verse_indices == (0,) and segments[0].flags == (FLAG_OVER_MAX,)


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

    summary = build_dataset(jsonls, dataset, "samoan", missing_text=["MAT_005"])
    assert summary["dropped"]["by_reason"] == {"cer": 1}
    assert summary["dropped"]["by_recording"] == {"GEN_001": {"cer": 1}}
    assert json.loads((dataset / "summary.json").read_text())["missing_text"] == ["MAT_005"]
    card = (dataset / "README.md").read_text()
    assert dropped[0]["id"] in card and dropped[0]["reason"] in card and "MAT_005" in card
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
    assert {"train.jsonl", "valid.jsonl", "test.jsonl", "summary.json", "README.md", "nemo/train.json"} <= set(outputs[0])
    rows = {split: read_jsonl(tmp_path / "a" / f"{split}.jsonl") for split in SPLITS}
    recordings = {split: {r["recording"] for r in rows[split]} for split in SPLITS}
    assert all(recordings[s] for s in SPLITS)  # 4 recordings: each split gets one
    assert not (recordings["train"] & recordings["valid"] or recordings["train"] & recordings["test"]
                or recordings["valid"] & recordings["test"])
    for row in rows["train"]:
        assert (tmp_path / "a" / row["audio"]).is_file()  # relative to the out-dir; the clips live in root
        assert row["language"] == "samoan" and set(row) >= {"audio", "text", "duration", "recording", "start",
                                                            "end", "score", "cer", "verses"}


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
    subprocess.run([sys.executable, "-m", "tala.clips", str(aligned), str(tmp_path / "seg" / "PSA_121.jsonl"),
                    str(tmp_path / "ds" / "clips" / "PSA_121"), "--text", "normalized"], check=True, env=env)
    subprocess.run([sys.executable, "-m", "tala.dataset", "--language", "portuguese", "--segments",
                    str(tmp_path / "seg" / "PSA_121.jsonl"), "--out-dir", str(tmp_path / "ds")], check=True, env=env)
    rows = read_jsonl(tmp_path / "ds" / "train.jsonl")
    assert rows and all(r["text"] == r["normalized"] for r in rows)
    assert read_jsonl(tmp_path / "ds" / "valid.jsonl") == []  # one recording: all of it in train
