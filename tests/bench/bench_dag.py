"""Benchmark of the workflow's DAG at the scale of a whole Bible: `snakemake -n` on 1,189 chapters x 2 languages.

    PYTHONPATH=scripts .venv/bin/python tests/bench/bench_dag.py [--languages 2] [--keep]

A temporary corpus of placeholder files: one empty `<BOOK>_<chapter>.mp3` per chapter of the
66-book canon (1,189) and its empty `.docx` text, per language (a dry run reads neither), and
the inspection checkpoint's result as if every chapter had passed (`results/{lang}/inspection.json`,
what the DAG is built from after the first minute of a real run; a recording with a text gets
the alignment and dataset jobs, as in common.smk). The demo's local
model stands in for the transcription and units models (no download job for them); the
speech-LLM's hub bases get their download jobs, as in a user's run. Timed, each in its own
`snakemake` process (interpreter start included): the dry run of the full DAG with the default
settings, then with `--profile profiles/slurm-gpu` (the Slurm executor's settings and its groups).
Each is run --repeat times (3 by default: this machine's timings are noisy) and the median is
judged. Goals: < 15 s for the plain dry run, < 20 s with the Slurm profile. Prints a table; exits
0 always. TALA_SNAKEMAKE_PATCHES=off in the environment measures Snakemake without the performance
patches of workflow/rules/common.smk.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
GOAL_PLAIN_S, GOAL_SLURM_S = 15.0, 20.0

# The 66 books of the Protestant canon and their chapter counts (USFM codes): 929 + 260 = 1,189.
BOOKS = {
    "GEN": 50, "EXO": 40, "LEV": 27, "NUM": 36, "DEU": 34, "JOS": 24, "JDG": 21, "RUT": 4,
    "1SA": 31, "2SA": 24, "1KI": 22, "2KI": 25, "1CH": 29, "2CH": 36, "EZR": 10, "NEH": 13,
    "EST": 10, "JOB": 42, "PSA": 150, "PRO": 31, "ECC": 12, "SNG": 8, "ISA": 66, "JER": 52,
    "LAM": 5, "EZK": 48, "DAN": 12, "HOS": 14, "JOL": 3, "AMO": 9, "OBA": 1, "JON": 4,
    "MIC": 7, "NAM": 3, "HAB": 3, "ZEP": 3, "HAG": 2, "ZEC": 14, "MAL": 4,
    "MAT": 28, "MRK": 16, "LUK": 24, "JHN": 21, "ACT": 28, "ROM": 16, "1CO": 16, "2CO": 13,
    "GAL": 6, "EPH": 6, "PHP": 4, "COL": 4, "1TH": 5, "2TH": 3, "1TI": 6, "2TI": 4, "TIT": 3,
    "PHM": 1, "HEB": 13, "JAS": 5, "1PE": 5, "2PE": 3, "1JN": 5, "2JN": 1, "3JN": 1, "JUD": 1,
    "REV": 22,
}  # fmt: skip
CHAPTERS = [f"{book}_{chapter:03d}" for book, count in BOOKS.items() for chapter in range(1, count + 1)]
LANGUAGES = {"samoan": "smo", "portuguese": "por", "tongan": "ton", "fijian": "fij"}


def make_corpus(root: Path, n_languages: int) -> Path:
    languages = {}
    for lang, mms in list(LANGUAGES.items())[:n_languages]:
        audio, text = root / lang / "audio", root / lang / "text"
        audio.mkdir(parents=True)
        text.mkdir(parents=True)
        for rec in CHAPTERS:
            (audio / f"{rec}.mp3").touch()
            (text / f"{rec}.docx").touch()
        languages[lang] = {"audio_dir": str(audio), "text_dir": str(text), "mms_lang": mms}
    config = {
        "run_languages": list(languages),
        "languages": languages,
        "transcribe": {"model": str(REPO / "resources" / "demo" / "model")},
        "units": {"model": str(REPO / "resources" / "demo" / "model"), "layer": 3},
    }
    path = root / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def write_inspections(workdir: Path, config: Path) -> None:
    """The inspection checkpoint's outputs for a corpus where every chapter passed."""
    for lang, cfg in yaml.safe_load(config.read_text())["languages"].items():
        records = [{"recording": path.stem, "audio": str(path), "text": str(Path(cfg["text_dir"]) / f"{path.stem}.docx"),
                    "status": "ok", "problems": []} for path in sorted(Path(cfg["audio_dir"]).iterdir())]
        out = workdir / "results" / lang / "inspection.json"
        out.parent.mkdir(parents=True)
        out.write_text(json.dumps({"language": lang, "recordings": records}))


def dry_run(workdir: Path, config: Path, *extra: str) -> tuple[float, dict[str, int], str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("PYTHONPATH", None)
    args = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(workdir),
            "--configfile", str(config), "-n", "--quiet", "rules", *extra]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    wall_s = time.perf_counter() - started
    out = proc.stdout + proc.stderr
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    if proc.returncode != 0 or "total" not in counts:
        return wall_s, {}, out[-2000:]
    return wall_s, counts, ""


def slurm_submissions(counts: dict[str, int]) -> int:
    """Slurm jobs the slurm-gpu profile submits for this DAG: its groups pack `group-components`
    per-recording chains into one job; other rules (GPU, per-language) are one job each."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm-gpu" / "config.v8+.yaml").read_text())
    groups, sizes = profile.get("groups", {}), profile.get("group-components", {})
    grouped = {}
    for rule, group in groups.items():
        grouped.setdefault(group, []).append(rule)
    total = sum(n for rule, n in counts.items() if rule not in groups and rule not in ("total", "all"))
    for group, rules in grouped.items():
        components = max(counts.get(rule, 0) for rule in rules)
        total += math.ceil(components / sizes.get(group, 1))
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", type=int, default=2, choices=range(1, len(LANGUAGES) + 1))
    parser.add_argument("--keep", action="store_true", help="keep the placeholder corpus and print its folder")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each dry run (the median is judged)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tala-bench-dag-"))
    try:
        config = make_corpus(root, args.languages)
        workdir = root / "work"
        workdir.mkdir()
        write_inspections(workdir, config)
        rows = []
        for name, extra, goal_s in (("snakemake -n", (), GOAL_PLAIN_S),
                                    ("snakemake -n --profile profiles/slurm-gpu",
                                     ("--profile", str(REPO / "profiles" / "slurm-gpu")), GOAL_SLURM_S)):
            runs = [dry_run(workdir, config, *extra) for _ in range(max(1, args.repeat))]
            walls = sorted(wall for wall, _, _ in runs)
            _, job_counts, error = runs[-1]
            rows.append((name, statistics.median(walls), walls, job_counts, error, goal_s))
        counts = rows[0][3]

        n_recordings = len(CHAPTERS) * args.languages
        print(f"DAG of {len(CHAPTERS)} chapters x {args.languages} languages = {n_recordings} recordings"
              f" (placeholders in {root if args.keep else 'a temporary folder'})")  # fmt: skip
        patches = "off" if os.environ.get("TALA_SNAKEMAKE_PATCHES") == "off" else "on"
        print(f"Snakemake performance patches: {patches}; median of {max(1, args.repeat)} runs")
        print(f"{'command':<44} {'median s':>8} {'runs s':>18} {'jobs':>7} {'goal':>8}")
        for name, wall, walls, job_counts, err, goal_s in rows:
            jobs = job_counts.get("total", 0)
            verdict = "ok" if job_counts and wall < goal_s else "MISSED" if job_counts else "FAILED"
            goal = f"< {goal_s:.0f} s"
            runs = " ".join(f"{w:.1f}" for w in walls)
            print(f"{name:<44} {wall:>8.1f} {runs:>18} {jobs:>7} {goal:>8}  {verdict}")
            if err:
                print(re.sub(r"^", "    ", err, flags=re.M))
        if counts:
            print("jobs per rule: " + ", ".join(f"{r} {n}" for r, n in counts.items() if r != "total"))
            print(f"Slurm jobs with the slurm-gpu profile's groups: {slurm_submissions(counts)}"
                  f" (instead of {counts['total'] - counts.get('all', 0)})")  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if all(job_counts for *_, job_counts, _, _ in rows) else 1  # a dry run that failed: 1


if __name__ == "__main__":
    sys.exit(main())
