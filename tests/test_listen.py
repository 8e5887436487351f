"""The report's listening page: clips embedded as playable audio next to their text."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, require
from tala.errors import InputError
from tala.report.listen import pick_clips, read_rows

RATE = 16_000


def make_dataset(root: Path, recordings: dict[str, int], seconds: float = 1.5) -> None:
    """A dataset folder as tala.dataset.build writes it: one split per recording, tone clips."""
    (root / "clips").mkdir(parents=True)
    splits = {"train": [], "valid": [], "test": []}
    for k, (rec, count) in enumerate(recordings.items()):
        split = ("train", "valid", "test")[k % 3]
        for i in range(count):
            clip = root / "clips" / f"{rec}_{i:04d}.wav"
            t = np.arange(int(seconds * RATE)) / RATE
            sf.write(str(clip), (0.2 * np.sin(2 * np.pi * (200 + 20 * i) * t)).astype(np.float32), RATE,
                     subtype="PCM_16")
            splits[split].append({"id": f"{rec}_{i:04d}", "audio": f"clips/{clip.name}", "text": f"verse {i} of {rec}",
                                  "duration": seconds, "language": "xx", "recording": rec, "start": 2.0 * i,
                                  "end": 2.0 * i + seconds, "score": -0.1 - 0.01 * ((i * 7) % count),
                                  "cer": 0.01, "verses": [i + 1]})  # fmt: skip
    for split, rows in splits.items():
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_small_datasets_are_shown_whole(tmp_path):
    make_dataset(tmp_path, {"GEN_001": 3, "JHN_001": 2})
    rows = read_rows(tmp_path)
    assert [r["id"] for r in pick_clips(rows, 40)] == [r["id"] for r in sorted(
        rows, key=lambda r: (("train", "valid", "test").index(r["split"]), r["recording"], r["start"]))]


def test_large_datasets_are_sampled_over_every_recording_with_its_worst_clip(tmp_path):
    make_dataset(tmp_path, {"A": 30, "B": 30, "C": 4})
    rows = read_rows(tmp_path)
    picked = pick_clips(rows, 12)
    assert len(picked) == 12
    assert {r["recording"] for r in picked} == {"A", "B", "C"}
    for rec in ("A", "B", "C"):
        worst = min((r for r in rows if r["recording"] == rec), key=lambda r: r["score"])
        assert worst["id"] in {r["id"] for r in picked}
    assert pick_clips(rows, 12) == picked  # deterministic


def test_page_embeds_playable_clips(tmp_path):
    require("ffmpeg")
    make_dataset(tmp_path / "ds", {"GEN_001": 2, "JHN_001": 1, "PSA_121": 1})
    out = tmp_path / "listen.html"
    proc = subprocess.run([sys.executable, "-m", "tala.report.listen", "--language", "xx", "--dataset", str(tmp_path / "ds"),
                           "--html", str(out)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO / "scripts"), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    page = out.read_text(encoding="utf-8")
    sources = re.findall(r'<audio controls preload="none" src="data:audio/mpeg;base64,([^"]+)"', page)
    assert len(sources) == 4
    for source in sources:
        samples, rate = sf.read(io.BytesIO(base64.b64decode(source)))
        assert abs(len(samples) / rate - 1.5) < 0.1  # MP3 decoder delay and padding only
    assert "verse 0 of GEN_001" in page


def test_missing_split_or_clip_is_one_clear_error(tmp_path):
    make_dataset(tmp_path / "ds", {"GEN_001": 1})
    (tmp_path / "ds" / "clips" / "GEN_001_0000.wav").unlink()
    from tala.report.listen import main

    with pytest.raises(InputError, match="clip missing"):
        main(["--language", "xx", "--dataset", str(tmp_path / "ds"), "--html", str(tmp_path / "x.html")])
    (tmp_path / "ds" / "test.jsonl").unlink()
    with pytest.raises(InputError, match="test.jsonl: missing"):
        read_rows(tmp_path / "ds")
