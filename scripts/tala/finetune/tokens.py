"""The characters of a split's transcripts that a recognizer's tokenizer cannot write.

A tokenizer without byte fallback (a vocabulary learned from some languages' text, as the demo's
stand-ins have) turns a letter it lacks into ``<unk>``: the decoder learns ``<unk>`` for that
sound, and ``<unk>`` decodes to nothing, so the tuned model can never write the letter. Byte-level
tokenizers (SmolLM2's, Qwen's) and SentencePiece with byte fallback write every character and have
nothing to report. The Moonshine and speech-LLM trainers name such characters once per split and
record them in ``training.json``; the clips stay in (the rest of their words are worth learning),
and ``evaluate_asr`` counts what cannot be written as errors and says the CER the model cannot go
below (``unwritable``, ``floor_cer``). The text step's normalization (``tala.align.read_text``) is
where a letter can be mapped to one the model has.
"""

from __future__ import annotations

import sys
from collections import Counter


def unwritable_characters(tokenizer, texts) -> tuple[Counter, int]:
    """The characters of ``texts`` the tokenizer turns into its unknown token (with their counts),
    and how many of the texts hold one; nothing for a tokenizer without an unknown token."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    if unknown is None:
        return Counter(), 0
    written: dict[str, bool] = {}

    def writes(ch: str) -> bool:
        if ch not in written:
            written[ch] = unknown not in tokenizer(ch, add_special_tokens=False).input_ids
        return written[ch]

    counts, holding = Counter(), 0
    for text in texts:
        found = Counter(ch for ch in text if not ch.isspace() and not writes(ch))
        counts.update(found)
        holding += bool(found)
    return counts, holding


def listed_characters(counts, limit: int = 12) -> str:
    """``'ŋ' x2, 'q' x1``: characters with their counts, the most frequent first (ties by character),
    at most ``limit`` of them and how many more."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    more = f" and {len(ranked) - limit} more" if len(ranked) > limit else ""
    return ", ".join(f"{ch!r} x{n}" for ch, n in ranked[:limit]) + more


def report_unwritable(tokenizer, model: str, splits: dict[str, tuple[list, list]], log=None) -> dict:
    """For each split ``name: (examples, manifests)`` that has examples, one line on ``log``
    (stderr) when its transcripts (``.text``) hold characters the tokenizer of ``model`` cannot
    write, naming the manifests, the characters and their clips; what ``training.json`` records of
    it, by split (``clips``, ``characters`` with counts)."""
    found = {}
    for name, (examples, manifests) in splits.items():
        if not examples:
            continue
        counts, holding = unwritable_characters(tokenizer, (e.text for e in examples))
        if counts:
            print(f"{', '.join(map(str, manifests))}: {holding} of {len(examples)} clips hold characters the "
                  f"tokenizer of {model} cannot write ({listed_characters(counts)}): they are learned and read as "
                  "<unk>, which writes nothing; map them to letters it has in the text step, or start from a model "
                  "whose tokenizer has byte fallback", file=log or sys.stderr)  # fmt: skip
        found[name] = {"clips": holding, "characters": dict(counts.most_common())}
    return found
