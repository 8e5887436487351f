"""The CTC text toolkit every step shares: the vocabulary, greedy decoding (with times) and scoring.

One vocabulary type (:class:`CtcVocabulary`) with its readers: from a model folder's ``vocab.json``
(flat, or MMS's nested one with a vocabulary per language) and from the transcription step's JSON
(whose columns the stored emissions follow). One greedy decoder: argmax per frame, runs of one token
merged, the blank and special tokens (``<s>``, ``</s>``, ``<unk>``) dropped, the word delimiter
(``|``) as a space; :func:`greedy_spans` keeps each token's frames for timed output. One scorer:
character and word error rates with jiwer on text normalized by :func:`normalize_for_scoring`, per
pair (:func:`cer`) and pooled over a set (:func:`error_rates`), so that the dataset's clip scores,
a trainer's validation CER and the evaluation of every model count errors the same way.

Pure functions of arrays and strings: numpy, jiwer (rapidfuzz); torch tensors are accepted where
noted and never imported here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from tala.errors import InputError

WORD_DELIMITER = "|"
BLANK = "<pad>"  # MMS / wav2vec2 CTC: the pad token is the blank
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
VOCAB_FILE = "vocab.json"


# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

def _is_special(token: str) -> bool:
    return len(token) > 2 and token.startswith("<") and token.endswith(">")


@dataclass(frozen=True)
class CtcVocabulary:
    """A CTC model's outputs: the token of each output id, the blank, the word delimiter.

    ``ignore_ids``: tokens that produce no text (``<s>``, ``</s>``, ``<unk>``, any ``<…>``); they
    break runs like the blank does. By default every ``<…>`` token but the blank.
    """

    tokens: list[str]  # by output id
    blank_id: int
    word_delimiter: str | None = WORD_DELIMITER
    ignore_ids: frozenset[int] = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.ignore_ids is None:
            special = frozenset(i for i, t in enumerate(self.tokens) if _is_special(t) and i != self.blank_id)
            object.__setattr__(self, "ignore_ids", special)

    @classmethod
    def from_token_ids(cls, vocab: Mapping[str, int], blank: str = BLANK,
                       word_delimiter: str | None = WORD_DELIMITER) -> "CtcVocabulary":
        """From a ``{token: id}`` mapping (a tokenizer's vocab) whose ids are ``0 … n-1``."""
        by_id = {int(i): t for t, i in vocab.items()}
        if sorted(by_id) != list(range(len(by_id))):
            raise ValueError(f"token ids are not 0..{len(by_id) - 1}")
        if blank not in vocab:
            raise ValueError(f"no blank token {blank!r} in the vocabulary")
        return cls([by_id[i] for i in range(len(by_id))], int(vocab[blank]),
                   word_delimiter if word_delimiter in vocab else None)

    @cached_property
    def ids(self) -> dict[str, int]:
        """Token -> output id."""
        return {token: i for i, token in enumerate(self.tokens)}

    @property
    def delimiter_id(self) -> int | None:
        return self.ids.get(self.word_delimiter) if self.word_delimiter is not None else None

    @cached_property
    def letters(self) -> set[str]:
        """The characters the model can emit (:func:`letters_of`): what a text must be spelled with."""
        return letters_of(self.tokens, self.word_delimiter)

    @cached_property
    def _text_of_id(self) -> list[str]:
        """What each id writes: the delimiter and blank-space tokens a space, non-text tokens nothing."""
        out = []
        for i, token in enumerate(self.tokens):
            if i == self.blank_id or i in self.ignore_ids:
                out.append("")
            elif token == self.word_delimiter or token.isspace():
                out.append(" ")
            else:
                out.append(token)
        return out

    def text_of(self, token_id: int) -> str:
        return self._text_of_id[int(token_id)]

    def record(self) -> dict:
        """The fields the transcription step's JSON stores (read back by :meth:`from_record`)."""
        return {"vocabulary": self.tokens, "blank_id": self.blank_id, "word_delimiter": self.word_delimiter}

    @classmethod
    def from_record(cls, data: Mapping, path: str | Path) -> "CtcVocabulary":
        """The vocabulary of the transcription step's JSON ``data`` (read from ``path``), which its
        emissions' columns follow. InputError naming ``path`` when the fields are missing or bad."""
        try:
            tokens = data["vocabulary"]
            blank_id = int(data["blank_id"])
            delimiter = data["word_delimiter"]
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(path, f"not a transcribe result: missing or bad {err}") from None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise InputError(path, 'no "vocabulary" list of tokens (is it the transcription step\'s output?)')
        if not 0 <= blank_id < len(tokens):
            raise InputError(path, f"blank_id {blank_id} is not an id of the {len(tokens)}-token vocabulary")
        if delimiter not in tokens:
            raise InputError(path, f"the vocabulary has no word delimiter ({delimiter!r})")
        return cls(list(tokens), blank_id, delimiter)


def letters_of(tokens: Sequence[str], word_delimiter: str | None = WORD_DELIMITER) -> set[str]:
    """The characters a CTC model can emit: its single-character tokens but the word delimiter
    (special tokens such as ``<pad>`` and ``<unk>`` are longer)."""
    return {token for token in tokens if len(token) == 1 and token != word_delimiter}


def read_model_vocabulary(folder: str | Path, language: str | None = None, blank: str = BLANK,
                          word_delimiter: str = WORD_DELIMITER) -> CtcVocabulary:
    """The vocabulary of a CTC model folder's ``vocab.json``: flat ``{token: id}``, or MMS's
    ``{language: {token: id}}`` (``language`` picks one; an adapter's language). InputError naming
    the file when it is missing, unreadable, or lacks the language."""
    path = Path(folder) / VOCAB_FILE if Path(folder).is_dir() else Path(folder)
    if not path.is_file():
        raise InputError(path, "file not found (a CTC model folder has its vocabulary in vocab.json)")
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"unreadable vocabulary: {err}") from None
    if not isinstance(vocab, dict) or not vocab:
        raise InputError(path, "not a vocabulary: expected a JSON object of tokens and ids")
    if all(isinstance(v, dict) for v in vocab.values()):
        if language is None or language not in vocab:
            which = "no language given" if language is None else f"no vocabulary for {language!r}"
            raise InputError(path, f"{which}; it has {', '.join(sorted(vocab)[:20])}")
        vocab = vocab[language]
    try:
        return CtcVocabulary.from_token_ids(vocab, blank, word_delimiter)
    except (ValueError, TypeError) as err:
        raise InputError(path, f"not a CTC vocabulary: {err}") from None


# ---------------------------------------------------------------------------------------------
# Greedy decoding
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenSpan:
    """A run of frames labelled with one non-blank token by the greedy path: ``[start, end)``."""

    token_id: int
    start: int
    end: int


def greedy_labels(log_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The best token of each frame and its log-probability (float32)."""
    log_probs = np.asarray(log_probs)
    if len(log_probs) == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    ids = np.argmax(log_probs, axis=1).astype(np.int32)
    best = np.take_along_axis(log_probs, ids[:, None].astype(np.intp), axis=1)[:, 0].astype(np.float32)
    return ids, best


def collapse(ids: np.ndarray, vocabulary: CtcVocabulary) -> list[TokenSpan]:
    """CTC's greedy rule on per-frame labels: merge runs of one token, drop blanks.

    A repeated letter needs a blank (or another token) between its runs, so "l l" with a blank
    in between is two tokens and "ll" without is one. Tokens in ``ignore_ids`` (``<s>``, ``</s>``,
    ``<unk>``) break runs like a blank does but produce no span.
    """
    ids = np.asarray(ids)
    if len(ids) == 0:
        return []
    boundaries = np.flatnonzero(np.diff(ids)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(ids)]])
    skip = set(vocabulary.ignore_ids) | {vocabulary.blank_id}
    return [TokenSpan(int(ids[s]), int(s), int(e)) for s, e in zip(starts, ends) if int(ids[s]) not in skip]


def spans_text(spans: Sequence[TokenSpan], vocabulary: CtcVocabulary) -> str:
    """The transcript: tokens joined, the word delimiter as a space, spaces collapsed."""
    return " ".join("".join(vocabulary.text_of(s.token_id) for s in spans).split())


def greedy_spans(log_probs, vocabulary: CtcVocabulary) -> list[TokenSpan]:
    """The greedy path's token spans of ``(frames, tokens)`` scores (numpy, or a torch tensor)."""
    return collapse(_argmax(log_probs), vocabulary)


def greedy_text(log_probs, vocabulary: CtcVocabulary) -> str:
    """The greedy transcript of ``(frames, tokens)`` scores (log-probabilities or logits)."""
    return spans_text(greedy_spans(log_probs, vocabulary), vocabulary)


def greedy_batch(logits, lengths: Sequence[int], vocabulary: CtcVocabulary) -> list[str]:
    """Greedy transcripts of a padded batch ``(batch, frames, tokens)``, each cut to its length."""
    best = _argmax(logits)
    return [spans_text(collapse(row[: int(n)], vocabulary), vocabulary) for row, n in zip(best, lengths)]


@dataclass(frozen=True)
class Word:
    """A word of the greedy transcript: seconds, and a confidence in [0, 1] (see :func:`greedy_words`)."""

    word: str
    start: float
    end: float
    score: float


def greedy_words(spans: Sequence[TokenSpan], vocabulary: CtcVocabulary, frame_s: float,
                 frame_log_probs: np.ndarray) -> list[Word]:
    """Words with times and scores from the greedy token spans.

    ``start`` is the first frame of the word's first token times ``frame_s``. ``end`` is where the
    word delimiter that follows the word begins, or, without one, the end of the word's last token.
    CTC models emit a letter as a spike near its onset, so the last token ends too early: on the
    demo speech by 20-50 ms, and by ~220 ms after a long final vowel ("pō"); the delimiter ``|``
    that the model emits once the word is over falls within 20 ms of the true end there.
    ``score`` is the exponential of the mean greedy log-probability over the frames of the word's
    tokens (blank frames between them do not count): the geometric mean of the per-frame
    confidences, 1.0 for a word the model is sure of.
    """
    words: list[Word] = []
    current: list[TokenSpan] = []

    def close(end_frame: int | None) -> None:
        if not current:
            return
        text = "".join(vocabulary.text_of(s.token_id) for s in current).strip()
        if text:
            frames = np.concatenate([frame_log_probs[s.start:s.end] for s in current])
            score = float(np.exp(np.mean(frames, dtype=np.float64))) if len(frames) else 0.0
            end = current[-1].end if end_frame is None else end_frame
            words.append(Word(text, round(current[0].start * frame_s, 6), round(end * frame_s, 6), round(score, 4)))
        current.clear()

    for span in spans:
        if vocabulary.text_of(span.token_id) == " ":
            close(span.start)
        else:
            current.append(span)
    close(None)
    return words


def timed_chars(spans: Sequence[TokenSpan], vocabulary: CtcVocabulary, frame_s: float,
                offset_s: float = 0.0) -> list[tuple[str, float]]:
    """``(character, onset in seconds)`` per decoded token; the delimiter as ``" "``."""
    out = []
    for s in spans:
        text = vocabulary.text_of(s.token_id)
        if text:
            out.append((text, offset_s + s.start * frame_s))
    return out


def _argmax(scores) -> np.ndarray:
    if hasattr(scores, "argmax") and not isinstance(scores, np.ndarray):  # a torch tensor
        return scores.argmax(dim=-1).cpu().numpy()
    return np.argmax(np.asarray(scores, np.float32), axis=-1)


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------

def normalize_for_scoring(text: str) -> str:
    """How references and hypotheses are compared: words separated by single spaces, no edge spaces.

    Both sides are already spelled with the model's letters (the dataset's text is normalized by
    read_text against the vocabulary, and a greedy transcript can write nothing else)."""
    return " ".join(text.split())


def char_edits(reference: str, hypothesis: str) -> int:
    """Levenshtein distance in characters (spaces count), as jiwer's CER counts it."""
    from rapidfuzz.distance import Levenshtein

    return int(Levenshtein.distance(reference, hypothesis))


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate of one pair (edits / reference characters, spaces included);
    0 for two empty strings, 1.0 for output against an empty reference."""
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return char_edits(reference, hypothesis) / len(reference)


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict:
    """Pooled CER and WER (jiwer) over pairs of normalized text, with the counts behind them.

    Empty references are left out of the pooled rates (jiwer cannot divide by them) and counted
    in ``empty_references``."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    pairs = [(normalize_for_scoring(r), normalize_for_scoring(h)) for r, h in zip(references, hypotheses)]
    kept = [(r, h) for r, h in pairs if r]
    out = {"pairs": len(pairs), "empty_references": len(pairs) - len(kept)}
    if not kept:
        return {**out, "cer": None, "wer": None, "char_edits": 0, "ref_chars": 0, "word_edits": 0, "ref_words": 0}
    refs, hyps = [r for r, _ in kept], [h for _, h in kept]
    chars = jiwer.process_characters(refs, hyps)
    words = jiwer.process_words(refs, hyps)
    char_edits_ = chars.substitutions + chars.deletions + chars.insertions
    word_edits = words.substitutions + words.deletions + words.insertions
    return {**out, "cer": float(chars.cer), "wer": float(words.wer),
            "char_edits": int(char_edits_), "ref_chars": int(chars.hits + chars.substitutions + chars.deletions),
            "word_edits": int(word_edits), "ref_words": int(words.hits + words.substitutions + words.deletions)}
