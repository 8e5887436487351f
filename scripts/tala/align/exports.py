"""Verse timings for Bible-audio teams, and a proofing table of verses whose audio disagrees with the text.

    python -m tala.align.exports ALIGNED_JSON [--csv OUT.csv] [--vtt OUT.vtt] [--labels OUT.txt]
    python -m tala.align.exports --timing-dir DIR ALIGNED_JSON [ALIGNED_JSON ...]
    python -m tala.align.exports --proofing OUT.tsv ALIGNED_JSON [ALIGNED_JSON ...]

``--timing-dir`` writes ``{recording}.csv``, ``.vtt`` and ``.labels.txt`` of every aligned
recording of a language into DIR (the whole folder replaced at once). Chapters the aligner
rejected (``"status": "rejected"``) get no timing files and no proofing rows: the problems table
lists them.

Timings of one recording (verses the aligner could not place are left out of the VTT and labels,
and have empty times in the CSV):

- CSV: ``recording,verse,label,start,end,text`` (seconds, 3 decimals; the official text);
- WebVTT: one cue per verse, ``HH:MM:SS.mmm``, the verse label as cue id, the official text;
- Audacity labels: ``start<TAB>end<TAB>label`` (6 decimals), label = verse label and first words;
  import with File > Import > Labels.

The proofing table covers all recordings given (one language): see PROOFING_RULE.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from pathlib import Path
from typing import Any

from tala.errors import InputError, run_cli
from tala.fileio import atomic_dir, read_json_object, write_text_atomic

LABEL_WORDS = 5
PROOF_MAX_CER = 0.15
PROOF_SCORE_QUANTILE = 0.05
LONG_STAR_S = 1.0
# Badness = CER + these: a low score or a long stretch of unread audio next to the verse says as
# much as ~25 % of the characters being wrong, enough to list but not to outrank a misread verse.
LOW_SCORE_PENALTY = 0.25
STAR_PENALTY = 0.25
UNALIGNED_BADNESS = 2.0

PROOFING_RULE = (
    f"listed: every verse with cer > {PROOF_MAX_CER}, or a score among the lowest "
    f"{PROOF_SCORE_QUANTILE:.0%} of all verses' scores (rounded up to whole verses), or next to a star span (audio the text lacks) of "
    f">= {LONG_STAR_S} s after a verse (extra words, or text the reader skipped), or not aligned. "
    f"badness = cer + {LOW_SCORE_PENALTY} if the score is in the bottom {PROOF_SCORE_QUANTILE:.0%} "
    f"+ {STAR_PENALTY} if next to such a star span ({UNALIGNED_BADNESS} if not aligned); sorted worst first."
)
PROOFING_COLUMNS = ("badness", "why", "recording", "verse", "label", "start", "end", "cer", "score",
                    "text", "heard", "audio")


def read_aligned(path: str | Path) -> dict:
    """An aligned JSON with at least one verse, or a rejected chapter's (``"status": "rejected"``);
    InputError naming it otherwise."""
    path = Path(path)
    aligned = read_json_object(path)
    aligned.setdefault("recording", path.stem)
    if is_rejected(aligned):
        return aligned
    if not isinstance(aligned.get("verses"), list) or not aligned["verses"]:
        raise InputError(path, "no verses in the aligned JSON")
    return aligned


def is_rejected(aligned: dict) -> bool:
    return aligned.get("status") == "rejected"


def write_timing_dir(aligned_list: list[dict], out_dir: str | Path) -> int:
    """Every accepted chapter's CSV, WebVTT and label track in ``out_dir``, replaced as a whole
    (a killed job leaves the old folder or the new one, never a mix); returns the chapter count."""
    accepted = [aligned for aligned in aligned_list if not is_rejected(aligned)]
    with atomic_dir(out_dir) as tmp:
        for aligned in accepted:
            rec = aligned["recording"]
            for suffix, render in ((".csv", timings_csv), (".vtt", timings_vtt), (".labels.txt", timings_labels)):
                (tmp / f"{rec}{suffix}").write_text(render(aligned), encoding="utf-8")
    return len(accepted)


def _time(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _timed(verses: list[dict]) -> list[dict]:
    return [v for v in verses if _time(v.get("start")) is not None and _time(v.get("end")) is not None]


def _one_line(text: Any) -> str:
    return " ".join(str(text or "").split())


def _label(verse: dict) -> str:
    return str(verse.get("label", verse.get("number")))


# ---------------------------------------------------------------------------------------------
# Timings
# ---------------------------------------------------------------------------------------------

def timings_csv(aligned: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["recording", "verse", "label", "start", "end", "text"])
    for verse in aligned["verses"]:
        start, end = _time(verse.get("start")), _time(verse.get("end"))
        writer.writerow([aligned["recording"], verse.get("number"), _label(verse),
                         "" if start is None else f"{start:.3f}", "" if end is None else f"{end:.3f}",
                         _one_line(verse.get("text"))])
    return out.getvalue()


def vtt_time(seconds: float) -> str:
    """``HH:MM:SS.mmm``."""
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def _vtt_text(text: Any) -> str:
    # "-->" may not appear in a cue, and & < > start markup.
    text = _one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("--&gt;", "-\u2060-&gt;")


def timings_vtt(aligned: dict) -> str:
    lines = ["WEBVTT", ""]
    for verse in _timed(aligned["verses"]):
        lines += [f"{aligned['recording']} {_label(verse)}".replace("-->", "- ->"),
                  f"{vtt_time(verse['start'])} --> {vtt_time(verse['end'])}",
                  _vtt_text(verse.get("text")), ""]
    return "\n".join(lines)


def timings_labels(aligned: dict, words: int = LABEL_WORDS) -> str:
    lines = []
    for verse in _timed(aligned["verses"]):
        tokens = _one_line(verse.get("text")).split()
        label = " ".join([_label(verse), *tokens[:words]]) + (" …" if len(tokens) > words else "")
        lines.append(f"{verse['start']:.6f}\t{verse['end']:.6f}\t{label}")
    return "".join(line + "\n" for line in lines)


# ---------------------------------------------------------------------------------------------
# Proofing
# ---------------------------------------------------------------------------------------------

def lowest_scores(aligned_list: list[dict], fraction: float = PROOF_SCORE_QUANTILE) -> dict[tuple[int, int], float]:
    """The ``ceil(fraction * n)`` verses with the lowest scores, as (recording index, verse index) ->
    score; ties go to the earlier verse, so equal scores never list more than the fraction."""
    scored = [(score, a, v) for a, aligned in enumerate(aligned_list)
              for v, verse in enumerate(aligned.get("verses", []))  # a rejected chapter has none
              if (score := _time(verse.get("score"))) is not None]
    scored.sort()
    return {(a, v): score for score, a, v in scored[:math.ceil(fraction * len(scored))]}


def _star_neighbours(aligned: dict) -> dict[int, float]:
    """Verse position -> length of the longest star span (>= LONG_STAR_S) right after or before it.

    A star span before the first verse is the usual spoken heading and does not count.
    """
    verses = aligned["verses"]
    position_of = {v.get("number"): i for i, v in enumerate(verses)}
    near: dict[int, float] = {}
    for span in aligned.get("star") or []:
        start, end = _time(span.get("start")), _time(span.get("end"))
        after = span.get("after_verse")
        if start is None or end is None or end - start < LONG_STAR_S or after not in position_of:
            continue
        for position in (position_of[after], position_of[after] + 1):
            if position < len(verses):
                near[position] = max(near.get(position, 0.0), round(end - start, 2))
    return near


def proofing_rows(aligned_list: list[dict]) -> list[dict]:
    """The verses to listen to, worst first (see PROOFING_RULE)."""
    lowest = lowest_scores(aligned_list)
    worst_listed = max(lowest.values(), default=None)
    rows = []
    for a, aligned in enumerate(aligned_list):
        if is_rejected(aligned):
            continue
        near_star = _star_neighbours(aligned)
        for position, verse in enumerate(aligned["verses"]):
            cer, score = _time(verse.get("cer")), _time(verse.get("score"))
            start, end = _time(verse.get("start")), _time(verse.get("end"))
            why, badness = [], cer or 0.0
            if score is None or start is None or end is None:
                why.append("not aligned")
                badness = UNALIGNED_BADNESS
            if cer is not None and cer > PROOF_MAX_CER:
                why.append(f"cer {cer:.2f} > {PROOF_MAX_CER}")
            if (a, position) in lowest:
                why.append(f"score {score:.2f} in the bottom {PROOF_SCORE_QUANTILE:.0%} (<= {worst_listed:.2f})")
                badness += LOW_SCORE_PENALTY
            if position in near_star:
                why.append(f"next to {near_star[position]:.1f} s of unread audio")
                badness += STAR_PENALTY
            if not why:
                continue
            rows.append({
                "badness": round(badness, 4), "why": "; ".join(why), "recording": aligned["recording"],
                "verse": verse.get("number"), "label": _label(verse),
                "start": "" if start is None else f"{start:.2f}", "end": "" if end is None else f"{end:.2f}",
                "cer": "" if cer is None else f"{cer:.3f}", "score": "" if score is None else f"{score:.3f}",
                "text": _one_line(verse.get("text")), "heard": _one_line(verse.get("greedy")),
                "audio": str(aligned.get("audio") or ""),
            })
    rows.sort(key=lambda r: (-r["badness"], r["recording"], r["start"] or "", str(r["verse"])))
    return rows


def proofing_tsv(rows: list[dict]) -> str:
    """The proofing table (:func:`proofing_rows`) as TSV, the rule in a leading ``#`` comment line."""
    out = io.StringIO()
    out.write(f"# {PROOFING_RULE}\n")
    writer = csv.writer(out, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(PROOFING_COLUMNS)
    for row in rows:
        writer.writerow([row[c] for c in PROOFING_COLUMNS])
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tala.align.exports",
        description="Export verse timings of an aligned recording (CSV, WebVTT, Audacity labels), or a "
                    "proofing table of verses whose audio disagrees with the text over many recordings.")
    parser.add_argument("aligned", nargs="+", help="aligned JSON(s) from tala.align.align_transcript")
    parser.add_argument("--csv", help="write recording,verse,label,start,end,text")
    parser.add_argument("--vtt", help="write WebVTT subtitles, one cue per verse")
    parser.add_argument("--labels", help="write an Audacity label track")
    parser.add_argument("--timing-dir", help="write every accepted chapter's CSV, WebVTT and labels into this folder")
    parser.add_argument("--proofing", help="write the proofing TSV over all ALIGNED_JSONs")
    args = parser.parse_args(argv)
    timings = [out for out in (args.csv, args.vtt, args.labels) if out]
    if not timings and not args.proofing and not args.timing_dir:
        parser.error("nothing to write: give --csv, --vtt, --labels, --timing-dir and/or --proofing")
    if timings and len(args.aligned) != 1:
        parser.error("--csv/--vtt/--labels take exactly one ALIGNED_JSON")
    aligned_list = [read_aligned(path) for path in args.aligned]
    if timings and is_rejected(aligned_list[0]):
        raise InputError(args.aligned[0], f"a rejected chapter has no verse times ({aligned_list[0].get('reason')})")
    for out, render in ((args.csv, timings_csv), (args.vtt, timings_vtt), (args.labels, timings_labels)):
        if out:
            write_text_atomic(out, render(aligned_list[0]))
    if args.timing_dir:
        count = write_timing_dir(aligned_list, args.timing_dir)
        print(f"{args.timing_dir}: verse timings of {count} of {len(aligned_list)} recordings", file=sys.stderr)
    if args.proofing:
        rows = proofing_rows(aligned_list)
        write_text_atomic(args.proofing, proofing_tsv(rows))
        print(f"{args.proofing}: {len(rows)} verses to check")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
