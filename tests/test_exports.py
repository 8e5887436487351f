"""tala.align.exports: verse timings (CSV, WebVTT, Audacity labels) and the proofing table, on the demo truth."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from conftest import REPO
from tala.errors import run_cli
from tala.align.exports import PROOFING_COLUMNS, main, proofing_rows, timings_vtt, vtt_time

DEMO = REPO / "resources" / "demo"


def aligned_from_truth(lang: str, rec: str) -> dict:
    """A perfect aligner's output for a demo recording (no audio needed here)."""
    truth = json.loads((DEMO / lang / "truth" / f"{rec}.json").read_text(encoding="utf-8"))
    verses = [{"number": v["number"], "label": str(v["number"]), "start": v["start"], "end": v["end"],
               "text": v["text"], "normalized": v["text"].lower(), "greedy": v["text"].lower(),
               "score": round(-0.10 - 0.002 * i, 4), "cer": 0.02} for i, v in enumerate(truth["verses"])]
    return {"recording": rec, "audio": f"results/{lang}/audio/{rec}.wav", "duration_s": truth["duration"],
            "verses": verses, "words": [],
            "star": [{"start": truth["heading"]["start"], "end": truth["heading"]["end"], "after_verse": None}]}


def write(tmp_path: Path, aligned: dict) -> Path:
    path = tmp_path / f"{aligned['recording']}.json"
    path.write_text(json.dumps(aligned, ensure_ascii=False), encoding="utf-8")
    return path


def test_csv_vtt_and_labels_parse_and_match_the_verses(tmp_path):
    aligned = aligned_from_truth("portuguese", "GEN_001")
    path = write(tmp_path, aligned)
    out = {kind: tmp_path / f"GEN_001.{ext}" for kind, ext in (("csv", "csv"), ("vtt", "vtt"), ("labels", "txt"))}
    assert run_cli(main, [str(path), "--csv", str(out["csv"]), "--vtt", str(out["vtt"]),
                          "--labels", str(out["labels"])]) == 0
    verses = aligned["verses"]

    rows = list(csv.DictReader(io.StringIO(out["csv"].read_text(encoding="utf-8"))))
    assert list(rows[0]) == ["recording", "verse", "label", "start", "end", "text"]
    assert [r["text"] for r in rows] == [v["text"] for v in verses]
    for row, verse in zip(rows, verses):
        assert row["recording"] == "GEN_001" and int(row["verse"]) == verse["number"]
        assert float(row["start"]) == pytest.approx(verse["start"], abs=5e-4)
        assert float(row["end"]) == pytest.approx(verse["end"], abs=5e-4)

    vtt = out["vtt"].read_text(encoding="utf-8")
    assert vtt.startswith("WEBVTT\n\n")
    cues = re.findall(r"^(.+)\n(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})\n(.+)$", vtt, re.M)
    assert len(cues) == len(verses)

    def seconds(stamp: str) -> float:
        h, m, s = stamp.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    starts = [seconds(c[1]) for c in cues]
    assert starts == sorted(starts)
    for (cue_id, start, end, text), verse in zip(cues, verses):
        assert cue_id == f"GEN_001 {verse['number']}" and text == verse["text"]
        assert seconds(start) == pytest.approx(verse["start"], abs=5e-4) and seconds(end) > seconds(start)

    labels = out["labels"].read_text(encoding="utf-8").splitlines()
    assert len(labels) == len(verses)
    for line, verse in zip(labels, verses):
        start, end, label = line.split("\t")
        assert re.fullmatch(r"\d+\.\d{6}", start) and re.fullmatch(r"\d+\.\d{6}", end)
        assert float(start) == pytest.approx(verse["start"], abs=1e-6)
        assert label.startswith(f"{verse['number']} {' '.join(verse['text'].split()[:3])}")


def test_vtt_times_and_escaping():
    assert vtt_time(3725.0456) == "01:02:05.046"
    assert vtt_time(0) == "00:00:00.000"
    aligned = {"recording": "X_001", "verses": [
        {"number": 1, "label": "1", "start": 1.0, "end": 2.0, "text": "a <b> & c --> d\nnext line"},
        {"number": 2, "label": "2", "start": None, "end": None, "text": "not placed"}]}
    vtt = timings_vtt(aligned)
    assert "a &lt;b&gt; &amp; c" in vtt and vtt.count("-->") == 1 and "next line" in vtt.splitlines()[4]
    assert "not placed" not in vtt


def test_proofing_ranks_a_misread_verse_first(tmp_path):
    recordings = [aligned_from_truth("samoan", rec) for rec in ("GEN_001", "JHN_001", "PSA_121", "RUT_001")]
    misread = recordings[1]["verses"][3]
    misread.update(cer=0.62, greedy="se isi mea e ese lava")
    recordings[2]["verses"][5]["score"] = -1.8  # the worst score: in the bottom 5 %
    recordings[3]["star"].append({"start": 40.0, "end": 42.5, "after_verse": 5})  # unread audio mid-chapter
    paths = [write(tmp_path, a) for a in recordings]
    out = tmp_path / "proofing.tsv"
    assert run_cli(main, ["--proofing", str(out), *map(str, paths)]) == 0

    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# listed: every verse with cer > 0.15")
    rows = list(csv.DictReader(io.StringIO("\n".join(lines[1:])), delimiter="\t"))
    assert list(rows[0]) == list(PROOFING_COLUMNS)
    first = rows[0]
    assert (first["recording"], int(first["verse"])) == ("JHN_001", misread["number"])
    assert first["heard"] == "se isi mea e ese lava" and first["text"] == misread["text"]
    assert float(first["start"]) == pytest.approx(misread["start"], abs=0.01)
    listed = {(r["recording"], int(r["verse"])) for r in rows}
    assert ("PSA_121", 6) in listed
    assert {("RUT_001", 5), ("RUT_001", 6)} <= listed
    assert all("heading" not in r["why"] for r in rows)
    assert [float(r["badness"]) for r in rows] == sorted((float(r["badness"]) for r in rows), reverse=True)
    # The heading before verse 1 is expected; verses with cer 0.02 and ordinary scores are not listed:
    # the misread verse, the 2 lowest scores (5 % of 36, rounded up), the 2 verses by the star span.
    assert ("GEN_001", 3) not in listed and len(rows) == 5


def test_equal_scores_list_no_more_than_the_bottom_fraction():
    aligned = aligned_from_truth("samoan", "JHN_001")  # 10 verses
    for verse in aligned["verses"]:
        verse["score"] = -0.2
    assert [r["verse"] for r in proofing_rows([aligned])] == [1]


def test_proofing_lists_unaligned_verses():
    aligned = aligned_from_truth("portuguese", "JHN_001")
    aligned["verses"][2].update(start=None, end=None, score=None, cer=None)
    rows = proofing_rows([aligned])
    assert rows[0]["verse"] == 3 and rows[0]["why"].startswith("not aligned") and rows[0]["start"] == ""


def test_aligned_json_without_verses_is_a_one_line_error(tmp_path, capsys):
    path = write(tmp_path, {"recording": "EMPTY_001", "verses": []})
    assert run_cli(main, [str(path), "--csv", str(tmp_path / "x.csv")]) == 1
    assert capsys.readouterr().err.strip() == f"error: {path}: no verses in the aligned JSON"
    assert not (tmp_path / "x.csv").exists()
    missing = tmp_path / "missing.json"
    assert run_cli(main, ["--proofing", str(tmp_path / "p.tsv"), str(missing)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {missing}: no such file"


def test_timings_need_exactly_one_recording(tmp_path):
    paths = [str(write(tmp_path, aligned_from_truth("samoan", rec))) for rec in ("GEN_001", "RUT_001")]
    with pytest.raises(SystemExit):
        main([*paths, "--csv", str(tmp_path / "x.csv")])


REJECTED = {"recording": "JHN_001", "status": "rejected", "stage": "align", "file": "text/JHN_001.docx",
            "reason": "text does not match the audio"}


def test_timing_folder_holds_every_accepted_chapter_and_no_rejected_one(tmp_path, capsys):
    paths = [str(write(tmp_path, aligned_from_truth("samoan", rec))) for rec in ("GEN_001", "RUT_001")]
    paths.append(str(write(tmp_path, REJECTED)))
    out = tmp_path / "timing"
    out.mkdir()
    (out / "STALE_001.csv").write_text("old")
    assert run_cli(main, ["--timing-dir", str(out), *paths]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{rec}{suffix}" for rec in ("GEN_001", "RUT_001")
                                                     for suffix in (".csv", ".labels.txt", ".vtt")]
    assert (out / "GEN_001.vtt").read_text() == timings_vtt(aligned_from_truth("samoan", "GEN_001"))
    assert "verse timings of 2 of 3 recordings" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [], "no temporary folder left"


def test_proofing_skips_a_rejected_chapter(tmp_path):
    paths = [str(write(tmp_path, aligned_from_truth("samoan", "GEN_001"))), str(write(tmp_path, REJECTED))]
    out = tmp_path / "proofing.tsv"
    assert run_cli(main, ["--proofing", str(out), *paths]) == 0
    assert "JHN_001" not in out.read_text()
    assert run_cli(main, [paths[1], "--csv", str(tmp_path / "x.csv")]) == 1
