"""The up-front inspection of raw recordings and texts (tala.inspect.inputs) and the problems table
built from it and from the aligner's rejections (tala.report.problems)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from docx import Document

from conftest import DEMO
from tala.errors import run_cli
from tala.inspect.inputs import RecordingFiles, inspect_language, inspect_recording
from tala.inspect.inputs import main as inspect_main
from tala.report.problems import collect_problems, problems_html, problems_tsv
from tala.report.problems import main as problems_main

SAMOAN = DEMO / "samoan"


@pytest.fixture
def raw(tmp_path) -> Path:
    """A language folder as users have them: good chapters and every kind of bad file."""
    audio, text = tmp_path / "audio", tmp_path / "text"
    audio.mkdir()
    text.mkdir()
    shutil.copy(SAMOAN / "audio" / "JHN_001.mp3", audio / "JHN_001.mp3")
    shutil.copy(SAMOAN / "text" / "JHN_001.docx", text / "JHN_001.docx")
    shutil.copy(SAMOAN / "audio" / "GEN_001.mp4", audio / "GEN_001.mp4")  # its text is missing
    full = (SAMOAN / "audio" / "RUT_001.mp3").read_bytes()
    (audio / "RUT_001.mp3").write_bytes(full[: len(full) // 2])
    shutil.copy(SAMOAN / "text" / "RUT_001.docx", text / "RUT_001.docx")
    (audio / "EMPTY.mp3").write_bytes(b"")
    (audio / "NOTES.mp3").write_text("These are my notes, not audio.\n")
    shutil.copy(SAMOAN / "audio" / "PSA_121.wav", audio / "PSA_121.wav")
    (text / "PSA_121.docx").write_text("not a word document")
    shutil.copy(SAMOAN / "audio" / "JHN_001.mp3", audio / "NOVERSES.mp3")
    document = Document()
    document.add_paragraph("A preface with no verse numbers at all.")
    document.save(text / "NOVERSES.docx")
    return tmp_path


def files(raw: Path) -> list[RecordingFiles]:
    return [RecordingFiles(path.stem, str(path), str(raw / "text" / f"{path.stem}.docx"))
            for path in sorted((raw / "audio").iterdir())]


def test_each_recording_gets_its_status_and_one_reason(raw):
    records = {r["recording"]: r for r in inspect_language(files(raw))}
    assert {rec: r["status"] for rec, r in records.items()} == {
        "EMPTY": "excluded", "NOTES": "excluded", "RUT_001": "excluded",
        "GEN_001": "audio-only", "PSA_121": "audio-only", "NOVERSES": "audio-only",
        "JHN_001": "ok"}  # fmt: skip
    assert records["JHN_001"]["problems"] == [] and records["JHN_001"]["verses"] == 10
    assert records["JHN_001"]["duration_s"] > 30
    reasons = {rec: r["problems"][0]["reason"] for rec, r in records.items() if r["problems"]}
    assert reasons["EMPTY"].startswith("empty file (0 bytes)")
    assert reasons["NOTES"].startswith("not an audio file")
    assert reasons["RUT_001"].startswith("truncated or corrupt MP3")
    assert reasons["GEN_001"].startswith("no official text")
    assert "not a readable DOCX" in reasons["PSA_121"]
    assert "no verses found" in reasons["NOVERSES"]
    for rec, record in records.items():
        for problem in record["problems"]:
            assert Path(problem["file"]).stem == rec, "each problem names the file to fix"
            assert "\n" not in problem["reason"]


def test_audio_only_language_expects_no_text(raw):
    record = inspect_recording(RecordingFiles("JHN_001", str(raw / "audio" / "JHN_001.mp3"), None))
    assert record["status"] == "ok" and record["problems"] == []


def test_processes_give_the_same_records_as_one(raw):
    assert inspect_language(files(raw), jobs=2) == inspect_language(files(raw), jobs=1)


def test_cli_writes_the_inspection_and_names_each_problem(raw, capsys):
    out = raw / "inspection.json"
    argv = ["--language", "samoan", "--out", str(out), "--jobs", "1"]
    for f in files(raw):
        argv += ["--recording", f.recording, f.audio, f.text]
    assert run_cli(inspect_main, argv) == 0
    err = capsys.readouterr().err.splitlines()
    assert f"excluded: {raw / 'audio' / 'EMPTY.mp3'}: empty file (0 bytes): not processed" in err
    assert err[-1] == "inspect: samoan: 7 recordings: 1 ok, 3 audio-only, 3 excluded, 0 text warnings"
    data = json.loads(out.read_text())
    assert [r["recording"] for r in data["recordings"]] == sorted(f.recording for f in files(raw))
    before = out.read_bytes()
    assert run_cli(inspect_main, argv) == 0
    assert out.read_bytes() == before, "the same inputs give the same bytes"


def test_problems_table_lists_the_worst_first(raw, tmp_path):
    inspection = tmp_path / "inspection.json"
    inspection.write_text(json.dumps({"recordings": inspect_language(files(raw))}))
    aligned = tmp_path / "JHN_001.json"
    aligned.write_text(json.dumps({"recording": "JHN_001", "status": "rejected", "stage": "align",
                                   "file": "text/JHN_001.docx", "reason": "text does not match the audio"}))
    accepted = tmp_path / "OK.json"
    accepted.write_text(json.dumps({"recording": "OK", "status": "ok", "verses": [{"number": 1}]}))
    problems, recordings = collect_problems(inspection, [aligned, accepted])
    assert recordings == 7
    assert [(p["recording"], p["severity"]) for p in problems] == [
        ("EMPTY", "excluded"), ("NOTES", "excluded"), ("RUT_001", "excluded"), ("JHN_001", "rejected"),
        ("GEN_001", "audio-only"), ("NOVERSES", "audio-only"), ("PSA_121", "audio-only")]
    tsv = problems_tsv(problems).splitlines()
    assert tsv[0] == "recording\tstage\tseverity\tfile\treason" and len(tsv) == 8
    page = problems_html("samoan", problems, recordings)
    assert "3 excluded, 1 rejected, 3 audio-only, 0 warning(s)" in page and "EMPTY.mp3" in page


def test_problems_cli_with_no_problems(raw, tmp_path, capsys):
    inspection = tmp_path / "inspection.json"
    good = [f for f in files(raw) if f.recording == "JHN_001"]
    inspection.write_text(json.dumps({"recordings": inspect_language(good)}))
    out = tmp_path / "problems.json"
    assert run_cli(problems_main, ["--language", "samoan", "--inspection", str(inspection), "--json", str(out),
                                   "--html", str(tmp_path / "p.html")]) == 0
    assert json.loads(out.read_text()) == []
    assert "no problems" in (tmp_path / "p.html").read_text()
    assert capsys.readouterr().err.strip() == "problems: samoan: 0 over 1 recordings"


def test_problems_cli_names_a_bad_inspection_file(tmp_path, capsys):
    bad = tmp_path / "inspection.json"
    bad.write_text("{}")
    assert run_cli(problems_main, ["--language", "x", "--inspection", str(bad), "--json", str(tmp_path / "p.json")]) == 1
    assert capsys.readouterr().err.startswith(f"error: {bad}: no 'recordings' list")
