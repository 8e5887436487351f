"""Training clips cut between words into parts of at most ``part_seconds`` (the LoRA recognizers'
``part_seconds``), so that a model that reads long clips in parts (``evaluate_asr --part-seconds``:
cut at their quietest points) also learns from parts of that length.

A clip longer than ``part_seconds`` is cut at the widest gap between two consecutive words (the
manifest's ``word_times``: a tala dataset gives them for its ``normalized`` words) whose middle lies
in the middle third of the clip, and each side again, as ``evaluate_asr``'s ``quiet_parts`` cuts
its audio; the cut falls in the middle of the gap, the text between the words. A clip without word
times, or with no gap in its middle third, is trained whole. On the demo's Samoan and Portuguese
(8 and 9 training clips of 5-19 s), the speech-LLM stand-in fine-tuned on parts of at most 8 s and
read so scored valid CER 8.9 and 11.7 %, test CER 13.6 and 9.3 % (the start: valid 10.3 and
14.0 %, test 16.9 and 10.3 %); fine-tuned on the whole clips, valid 10.3 (the start kept) and 10.4 %,
test 16.9 and 11.9 %.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from tala.finetune.train_ctc import Example

PART_MARK = " (part "  # a part's ``where``: its clip's, then this and its number (from 1) and ")"


def cut_between_words(example: Example, part_seconds: float | None) -> list[Example]:
    """``example`` as parts of at most ``part_seconds`` cut between its words (each part's text its
    words, its ``word_times`` and ``span`` from its own start); ``[example]`` when it is no longer,
    has no word times, or cannot be cut."""
    times, words = example.word_times, example.text.split()
    if not part_seconds or example.duration <= part_seconds or times is None or len(words) < 2:
        return [example]

    def parts(lo: int, hi: int, t0: float, t1: float) -> list[tuple[int, int, float, float]]:
        """Words [lo, hi) over seconds t0..t1 of the example, cut until each part fits."""
        if t1 - t0 <= part_seconds or hi - lo < 2:
            return [(lo, hi, t0, t1)]
        third, best = (t1 - t0) / 3, None
        for k in range(lo + 1, hi):
            gap, middle = times[k][0] - times[k - 1][1], (times[k - 1][1] + times[k][0]) / 2
            if gap >= 0 and t0 + third <= middle <= t1 - third and (best is None or gap > best[0]):
                best = (gap, k, middle)
        if best is None:
            return [(lo, hi, t0, t1)]
        _, k, middle = best
        return parts(lo, k, t0, middle) + parts(k, hi, middle, t1)

    cuts = parts(0, len(words), 0.0, example.duration)
    if len(cuts) == 1:
        return [example]
    base = example.span[0] if example.span else 0.0
    return [replace(example, text=" ".join(words[lo:hi]), duration=round(t1 - t0, 6),
                    word_times=tuple((round(a - t0, 6), round(b - t0, 6)) for a, b in times[lo:hi]),
                    span=(round(base + t0, 6), round(base + t1, 6)), where=f"{example.where}{PART_MARK}{n + 1})")
            for n, (lo, hi, t0, t1) in enumerate(cuts)]  # fmt: skip


def training_parts(examples: list[Example], part_seconds: float | None, log=sys.stderr) -> list[Example]:
    """Every example longer than ``part_seconds`` cut between its words (:func:`cut_between_words`),
    in order; one line says how many were cut and how many could not be."""
    if not part_seconds:
        return examples
    out, cut, whole = [], 0, 0
    for example in examples:
        pieces = cut_between_words(example, part_seconds)
        out += pieces
        if example.duration > part_seconds:
            cut, whole = (cut + 1, whole) if len(pieces) > 1 else (cut, whole + 1)
    if cut or whole:
        without = f"; {whole} longer ones trained whole (no word times, or no gap between words to cut)" \
            if whole else ""
        print(f"part_seconds {part_seconds:g}: {cut} training clips cut between words into parts of at most"
              f" {part_seconds:g} s where a gap allows ({len(out)} examples from {len(examples)}){without}",
              file=log)
    return out


def left_out_clips(examples: list[Example], kept: list[Example]) -> int:
    """How many clips were not learned whole: ``examples`` are the clips or the parts cut from them
    (:func:`training_parts`), ``kept`` those learned; a clip counts once however many of its parts
    were left out."""
    learned = {id(e) for e in kept}
    return len({e.where.split(PART_MARK, 1)[0] for e in examples if id(e) not in learned})
