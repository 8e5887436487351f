"""tala.ctc_text: the one vocabulary, greedy decoder (text, words, timed characters) and scorer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tala.ctc_text import (CtcVocabulary, cer, char_edits, collapse, error_rates, greedy_batch, greedy_labels,
                           greedy_spans, greedy_text, greedy_words, normalize_for_scoring, read_model_vocabulary,
                           spans_text, timed_chars)
from tala.errors import InputError

FRAME_S = 0.02
TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "|", "a", "l", "o", "f"]
VOCAB = CtcVocabulary(TOKENS, blank_id=0)


def ids_of(labels: str) -> np.ndarray:
    """'_' = blank, ' ' = word delimiter, '?' = <unk>; letters as themselves."""
    table = {"_": 0, " ": 4, "?": 3}
    return np.array([table.get(c, TOKENS.index(c) if c in TOKENS else -1) for c in labels])


def one_hot(ids: np.ndarray, size: int = len(TOKENS)) -> np.ndarray:
    out = np.full((len(ids), size), -10.0, np.float32)
    out[np.arange(len(ids)), ids] = 0.0
    return out


def test_vocabulary_knows_its_special_tokens_and_letters():
    assert VOCAB.ignore_ids == frozenset({1, 2, 3})
    assert VOCAB.delimiter_id == 4 and VOCAB.ids["o"] == 7
    assert VOCAB.letters == {"a", "l", "o", "f"}
    assert [VOCAB.text_of(i) for i in range(len(TOKENS))] == ["", "", "", "", " ", "a", "l", "o", "f"]


def test_collapse_merges_runs_and_needs_a_blank_between_repeats():
    spans = collapse(ids_of("_aall_l__oo"), VOCAB)
    assert [TOKENS[s.token_id] for s in spans] == ["a", "l", "l", "o"]
    assert [(s.start, s.end) for s in spans] == [(1, 3), (3, 5), (6, 7), (9, 11)]
    assert spans_text(spans, VOCAB) == "allo"
    assert collapse(np.zeros(0, int), VOCAB) == []
    # <unk> separates like a blank and is dropped.
    assert [TOKENS[s.token_id] for s in collapse(ids_of("a?a"), VOCAB)] == ["a", "a"]


def test_words_times_and_scores():
    ids = ids_of("__fa_l  _aa_l_o__ |")
    spans = collapse(ids, VOCAB)
    log_probs = np.full(len(ids), np.log(0.5), np.float32)
    log_probs[2] = 0.0  # 'f' is certain
    words = greedy_words(spans, VOCAB, FRAME_S, log_probs)
    assert spans_text(spans, VOCAB) == "fal alo"
    assert [w.word for w in words] == ["fal", "alo"]
    # A word ends where the delimiter after it starts ("fal": frame 6, "alo": frame 17, after two blanks).
    assert words[0].start == pytest.approx(2 * FRAME_S) and words[0].end == pytest.approx(6 * FRAME_S)
    assert words[1].start == pytest.approx(9 * FRAME_S) and words[1].end == pytest.approx(17 * FRAME_S)
    # Without a delimiter after it, at the end of its last token.
    last = greedy_words(collapse(ids_of("_fa__lo__"), VOCAB), VOCAB, FRAME_S, np.zeros(9, np.float32))
    assert [(w.word, w.start, w.end) for w in last] == [("falo", pytest.approx(0.02), pytest.approx(0.14))]
    # Geometric mean over the word's token frames (f, a, l): exp((0 + 2 log .5) / 3).
    assert words[0].score == pytest.approx(0.5 ** (2 / 3), abs=1e-4)
    assert words[1].score == pytest.approx(0.5, abs=1e-4)


def test_greedy_labels_of_log_probs():
    log_probs = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32))
    ids, best = greedy_labels(log_probs.astype(np.float16))
    assert ids.tolist() == [0, 2]
    assert np.allclose(np.exp(best), [0.7, 0.8], atol=1e-3)


def test_one_decoder_for_arrays_tensors_batches_and_times():
    scores = one_hot(ids_of("_ff_a_ll__ _oo_?_"))
    assert greedy_text(scores, VOCAB) == "fal o"
    assert greedy_text(torch.from_numpy(scores), VOCAB) == "fal o"
    batch = torch.from_numpy(np.stack([scores, one_hot(ids_of("_a_l_" + "o" * 12))]))
    # Each row cut to its length: the second row's padding ("o"s) is not decoded.
    assert greedy_batch(batch, [len(scores), 5], VOCAB) == ["fal o", "al"]
    chars = timed_chars(greedy_spans(scores, VOCAB), VOCAB, FRAME_S, offset_s=10.0)
    assert [c for c, _ in chars] == ["f", "a", "l", " ", "o"]
    assert [t for _, t in chars] == pytest.approx([10.02, 10.08, 10.12, 10.2, 10.24])


def test_scoring_counts_characters_and_words_the_jiwer_way():
    assert char_edits("kitten", "sitting") == 3
    assert cer("abcd", "abxd") == 0.25 and cer("", "") == 0.0 and cer("", "a") == 1.0
    assert normalize_for_scoring("  a   b ") == "a b"
    rates = error_rates(["ab cd", "ef", ""], ["ab  cx", "ef", "zz"])
    assert rates["pairs"] == 3 and rates["empty_references"] == 1
    assert rates["char_edits"] == 1 and rates["ref_chars"] == 7 and rates["cer"] == pytest.approx(1 / 7)
    assert rates["word_edits"] == 1 and rates["ref_words"] == 3 and rates["wer"] == pytest.approx(1 / 3)
    assert error_rates([""], ["x"])["cer"] is None
    with pytest.raises(ValueError):
        error_rates(["a"], [])


def test_vocabulary_from_a_transcript_record_round_trips_and_names_the_file_when_bad(tmp_path):
    assert CtcVocabulary.from_record(VOCAB.record(), "asr.json") == VOCAB
    with pytest.raises(InputError, match=r"^asr\.json: not a transcribe result"):
        CtcVocabulary.from_record({"vocabulary": TOKENS}, "asr.json")
    with pytest.raises(InputError, match="no word delimiter"):
        CtcVocabulary.from_record({**VOCAB.record(), "word_delimiter": "#"}, "asr.json")


def test_vocabulary_from_a_model_folder_flat_or_per_language(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(TOKENS)}))
    assert read_model_vocabulary(flat) == VOCAB
    nested = tmp_path / "nested"
    nested.mkdir()
    (nested / "vocab.json").write_text(json.dumps({"smo": {t: i for i, t in enumerate(TOKENS)},
                                                   "por": {"<pad>": 0, "|": 1, "ç": 2}}))
    assert read_model_vocabulary(nested, "smo") == VOCAB
    assert read_model_vocabulary(nested, "por").letters == {"ç"}
    with pytest.raises(InputError, match=r"vocab\.json: no vocabulary for 'tvl'; it has por, smo"):
        read_model_vocabulary(nested, "tvl")
    with pytest.raises(InputError, match="file not found"):
        read_model_vocabulary(tmp_path / "none")
