"""tala.align.align_transcript, tala.align.ctc_align and tala.align.text_align: the Viterbi kernel against brute force, bounded
memory without a different answer, the <star>, bad inputs, and verse times on the demo corpus.

The demo tests transcribe the eight demo chapters with the shipped demo model (a few seconds each)
and score the verse boundaries against the corpus' exact ground truth.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO, DEMO_LANGUAGES as LANGUAGES, demo_truth_ids, normalize_demo_text
from tala.align import ctc_align
from tala.align import text_align
from tala.ctc_text import CtcVocabulary
from tala.align.align_transcript import TextVerse, align_chapter, build_targets, main, refine_edges, spans_from_path
from tala.errors import InputError, run_cli

DEMO_MODEL = DEMO / "model"
MEDIAN_GOAL_S = 0.040
P95_GOAL_S = 0.120


# --- references ---------------------------------------------------------------------------------

def brute_force(scores: np.ndarray, tokens, optional, blank: int) -> tuple[float, tuple[int, ...] | None]:
    """Best frame labelling by enumerating every labelling whose CTC collapse is an allowed target."""
    targets = set()
    optional_positions = [i for i, flag in enumerate(optional) if flag]
    for dropped in itertools.product([False, True], repeat=len(optional_positions)):
        skip = {i for i, d in zip(optional_positions, dropped) if d}
        targets.add(tuple(int(t) for i, t in enumerate(tokens) if i not in skip))
    labels = sorted({int(t) for t in tokens} | {blank})
    best, best_labels = -np.inf, None
    for labelling in itertools.product(labels, repeat=scores.shape[0]):
        collapsed, previous = [], None
        for label in labelling:
            if label != previous and label != blank:
                collapsed.append(label)
            previous = label
        if tuple(collapsed) in targets:
            total = float(sum(scores[t, label] for t, label in enumerate(labelling)))
            if total > best:
                best, best_labels = total, labelling
    return best, best_labels


def full_matrix_viterbi(scores: np.ndarray, topology: ctc_align.Topology) -> np.ndarray:
    """Textbook Viterbi with a full T x S backpointer matrix (numpy over states), the same tie rule."""
    num_frames, num_states = scores.shape[0], topology.num_states
    emit = scores[:, topology.labels].astype(np.float64)
    alpha = np.where(topology.starts, emit[0], -np.inf)
    back = np.zeros((num_frames, num_states), np.int64)
    for t in range(1, num_frames):
        best = alpha.copy()
        code = np.zeros(num_states, np.int64)
        for k in range(1, ctc_align.MAX_JUMP + 1):
            shifted = np.full(num_states, -np.inf)
            shifted[k:] = alpha[:-k]
            allowed = np.ones(num_states, bool) if k == 1 else (topology.jumps >> k & 1).astype(bool)
            better = allowed & (shifted > best)
            best[better], code[better] = shifted[better], k
        alpha = best + emit[t]
        back[t] = code
    alpha[~topology.ends] = -np.inf
    state = int(np.argmax(alpha))
    path = np.empty(num_frames, np.int64)
    for t in range(num_frames - 1, -1, -1):
        path[t] = state
        state -= back[t, state]
    return path


def random_log_probs(rng, frames: int, vocab: int, peaky: float = 1.0) -> np.ndarray:
    return np.log(rng.dirichlet(np.full(vocab, peaky), frames)).astype(np.float32)


def planted(rng, frames_per_token: tuple[int, int], tokens: np.ndarray, vocab: int, blank: int = 0,
            noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Emissions where a known labelling (each token for a few frames, blanks between) is likely."""
    labels = []
    for i, token in enumerate(tokens):
        labels += [int(token)] * int(rng.integers(*frames_per_token))
        labels += [blank] * int(rng.integers(1, 4))
    logits = rng.normal(0, noise, (len(labels), vocab))
    logits[np.arange(len(labels)), labels] += 4.0
    logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return logits.astype(np.float32), np.array(labels)


# --- the kernel -------------------------------------------------------------------------------

def test_kernel_matches_brute_force_on_random_small_cases():
    rng = np.random.default_rng(7)
    vocab, blank, star, checked = 4, 0, 4, 0
    while checked < 150:
        tokens = list(rng.integers(1, 3 if rng.random() < 0.5 else vocab, int(rng.integers(1, 4))))  # repeats
        optional = [False] * len(tokens)
        if rng.random() < 0.6:
            position = int(rng.integers(0, len(tokens) + 1))
            tokens.insert(position, star)
            optional.insert(position, True)
        needed = ctc_align.min_frames(tokens, optional)
        frames = needed + int(rng.integers(0, 3))  # exactly the minimum a third of the time
        if frames > 7 or frames == 0:
            continue
        emissions = random_log_probs(rng, frames, vocab)
        penalty = float(rng.uniform(0, 2))
        scores = ctc_align.frame_scores(emissions, penalty)
        best, labels = brute_force(scores, tokens, optional, blank)
        topology = ctc_align.make_topology(tokens, blank, optional)
        result = ctc_align.viterbi(emissions, topology, star_penalty=penalty,
                                   segment_frames=int(rng.integers(1, 4)), block_frames=int(rng.integers(1, 4)))
        assert result.score == pytest.approx(best, abs=1e-4)
        assert tuple(int(x) for x in topology.labels[result.path]) == labels
        checked += 1


def _torchaudio_functional():
    """torchaudio where it loads (the PyPI wheels are CUDA builds that fail with CPU torch)."""
    try:
        import torchaudio.functional as F
    except Exception as err:  # ImportError, OSError from a missing CUDA library, RuntimeError
        pytest.skip(f"torchaudio does not load here ({type(err).__name__})")
    return F


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_agrees_with_torchaudio_forced_align(seed):
    """Same best path score and labelling as torchaudio.functional.forced_align (no star)."""
    F = _torchaudio_functional()
    import torch

    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 20, 300)
    emissions, _ = planted(rng, (1, 6), tokens, 21, noise=1.0)
    topology = ctc_align.make_topology(tokens, 0)
    ours = ctc_align.viterbi(emissions, topology, segment_frames=97)
    aligned, scores = F.forced_align(torch.from_numpy(emissions)[None], torch.from_numpy(tokens)[None].int(), blank=0)
    theirs = aligned[0].numpy()
    assert ours.score == pytest.approx(float(scores[0].sum()), abs=1e-3)
    assert np.array_equal(topology.labels[ours.path], theirs)


def test_repeated_letters_need_a_blank_between():
    emissions = np.log(np.full((3, 3), 1 / 3, np.float32))
    topology = ctc_align.make_topology([1, 1], blank_id=0)
    assert ctc_align.min_frames([1, 1]) == 3
    path = ctc_align.viterbi(emissions, topology).path
    assert list(topology.labels[path]) == [1, 0, 1]
    with pytest.raises(ctc_align.NoPathError):
        ctc_align.viterbi(emissions[:2], topology)


@pytest.mark.parametrize("segment_frames", [1, 7, 64, 333, None])
def test_checkpointed_path_equals_the_full_matrix_viterbi(segment_frames):
    rng = np.random.default_rng(3)
    tokens = rng.integers(1, 12, 120)
    optional = np.zeros(len(tokens), bool)
    tokens[::17], optional[::17] = 12, True  # stars
    emissions = random_log_probs(rng, 700, 12, peaky=0.3)
    topology = ctc_align.make_topology(tokens, 0, optional)
    reference = full_matrix_viterbi(ctc_align.frame_scores(emissions, 1.0), topology)
    result = ctc_align.viterbi(emissions.astype(np.float16).astype(np.float32), topology,
                               segment_frames=segment_frames, block_frames=50)
    plain = ctc_align.viterbi(emissions.astype(np.float16).astype(np.float32), topology, segment_frames=700)
    assert np.array_equal(result.path, plain.path)
    same = ctc_align.viterbi(emissions, topology, segment_frames=segment_frames, block_frames=50)
    assert np.array_equal(same.path, reference)


def test_anchored_band_gives_the_full_path_on_a_long_recording():
    """Twenty minutes of planted speech: the narrow anchored band finds exactly the full Viterbi path."""
    rng = np.random.default_rng(11)
    tokens = rng.integers(1, 30, 9_000)
    emissions, labels = planted(rng, (1, 5), tokens, 31, noise=1.5)
    topology = ctc_align.make_topology(tokens, 0)
    full = ctc_align.viterbi(emissions, topology)
    # Anchors: every 10th token's true frames, shifted by up to 1 s (a sloppy greedy transcript).
    token_frames = np.flatnonzero(np.concatenate([[True], labels[1:] != labels[:-1]]) & (labels != 0))
    anchor_lo = np.full(len(tokens), -1)
    anchor_hi = np.full(len(tokens), -1)
    picked = np.arange(0, len(tokens), 10)
    shift = rng.integers(-50, 51, len(picked))
    anchor_lo[picked] = np.clip(token_frames[picked] + shift, 0, len(labels) - 1)
    anchor_hi[picked] = anchor_lo[picked]
    lo, hi = ctc_align.band_from_anchors(topology, len(labels), anchor_lo, anchor_hi, width_frames=250)
    full_lo, full_hi = ctc_align.reachable_band(topology, len(labels))
    assert np.sum(hi - lo + 1) < 0.1 * np.sum(full_hi - full_lo + 1)
    banded = ctc_align.viterbi(emissions, topology, band=(lo, hi))
    assert np.array_equal(banded.path, full.path)
    assert banded.score == full.score
    # No drift: every token's first frame is where it was planted.
    starts, _ = ctc_align.token_spans(full.path, len(tokens))
    assert np.mean(np.abs(starts - token_frames) <= 1) > 0.99


def test_star_takes_unscripted_speech_and_leaves_the_verse_alone():
    """A 'heading' of confident letters the text lacks goes to <star>; the verse keeps its frames."""
    rng = np.random.default_rng(5)
    heading = rng.integers(1, 9, 25)
    verse = rng.integers(1, 9, 40)
    emissions, labels = planted(rng, (2, 4), np.concatenate([heading, verse]), 10, noise=0.5)
    run_starts = np.flatnonzero((labels != 0) & (np.concatenate([[0], labels[:-1]]) == 0))
    verse_onset = run_starts[len(heading)]
    star = 10
    tokens = np.concatenate([[star], verse, [star]])
    optional = np.zeros(len(tokens), bool)
    optional[[0, -1]] = True
    topology = ctc_align.make_topology(tokens, 0, optional)
    path = ctc_align.viterbi(emissions, topology, star_penalty=1.0).path
    starts, ends = ctc_align.token_spans(path, len(tokens))
    assert starts[0] <= run_starts[0] and ends[0] >= run_starts[len(heading) - 1]  # the heading is the star's
    assert starts[1] == verse_onset  # the verse starts on its first letter
    assert np.array_equal(starts[1:-1], run_starts[len(heading):])  # and every letter is where it was said


def test_optional_star_can_be_skipped_between_back_to_back_verses():
    rng = np.random.default_rng(2)
    emissions, _ = planted(rng, (1, 2), np.array([1, 2, 3, 4]), 6, noise=0.1)
    tokens, optional = [1, 2, 5, 3, 4], [False, False, True, False, False]
    path = ctc_align.viterbi(emissions, ctc_align.make_topology(tokens, 0, optional), star_penalty=3.0).path
    starts, _ = ctc_align.token_spans(path, len(tokens))
    assert starts[2] == -1 and np.all(starts[[0, 1, 3, 4]] >= 0)


# --- text-to-text -----------------------------------------------------------------------------

def test_text_alignment_skips_a_heading_and_pairs_split_and_merged_words():
    ref = "no princípio criou deus os céus e a terra e houve luz".split()
    hyp = "livro de génesis capítulo um no principio cre ou deus os seus i a terra eouve lus".split()
    start = np.arange(len(hyp), dtype=float)
    result = text_align.align_words(ref, hyp, start, start + 0.5)
    partners = [" ".join(hyp[a:b + 1]) if a >= 0 else None for a, b in zip(result.partner, result.partner_last)]
    assert partners == ["no", "principio", "cre ou", "deus", "os", "seus", "i", "a", "terra", "eouve", "eouve", "lus"]
    assert result.matched.tolist() == [True, True, True, True, True, False, False, True, True, True, True, True]
    assert (result.start[2], result.end[2]) == (7.0, 8.5)  # "criou" spans both pieces
    assert result.end[9] == result.start[10] and (result.start[9], result.end[10]) == (15.0, 15.5)  # shared
    # Edits: princípio 1, criou/cre ou 2, céus/seus 2, e/i 1, e houve/eouve 2, luz/lus 1; not the heading.
    assert text_align.text_cer(ref, hyp, result) == pytest.approx(9 / sum(len(w) for w in ref))


def test_text_alignment_interpolates_unheard_words_next_to_their_verse():
    ref = ["a", "b", "lost", "c", "d"]
    hyp = ["a", "b", "c", "d"]
    times = np.array([0.0, 1.0, 5.0, 6.0])
    result = text_align.align_words(ref, hyp, times, times + 0.5, groups=[0, 0, 0, 1, 1])
    assert result.partner[2] == -1
    assert result.start[2] == pytest.approx(1.5) and result.end[2] < 2.0  # right after "b", not across the pause


def test_text_alignment_of_ten_thousand_words_scales_linearly():
    """A whole book's words align in time linear in their number (a banded DP, not a full matrix):
    5x the words take well under 5^2 = 25x the time. Timed as a ratio within this run (best of 3
    each), so a loaded machine does not fail it; the absolute speed is the bench's business."""
    rng = np.random.default_rng(0)
    vocabulary = ["".join(rng.choice(list("aeioulmnst"), int(rng.integers(1, 9)))) for _ in range(3000)]
    ref = list(rng.choice(vocabulary, 10_000))
    hyp = [w[::-1] if rng.random() < 0.05 else w for w in ref if rng.random() > 0.02]
    times = np.arange(len(hyp)) * 0.4
    text_align.align_words(ref[:20], hyp[:20], times[:20], times[:20] + 0.3)  # compile

    def best_time(n_ref: int) -> float:
        n_hyp = int(n_ref * len(hyp) / len(ref))
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            text_align.align_words(ref[:n_ref], hyp[:n_hyp], times[:n_hyp], times[:n_hyp] + 0.3)
            best = min(best, time.perf_counter() - started)
        return best

    assert best_time(10_000) < 12 * best_time(2_000)
    result = text_align.align_words(ref, hyp, times, times + 0.3)
    assert result.matched.mean() > 0.9


# --- edges and the step -----------------------------------------------------------------------

def test_refine_edges_moves_to_the_speech_onset_and_offset():
    energy = np.full(300, -65.0)
    energy[100:200] = -10.0  # speech from 1.00 s to 2.00 s
    starts, ends = refine_edges(np.array([1.04]), np.array([1.96]), energy, -40.0, np.array([0.0]), np.array([3.0]))
    assert starts[0] == pytest.approx(1.0) and ends[0] == pytest.approx(2.0)
    starts, ends = refine_edges(np.array([0.9]), np.array([2.1]), energy, -40.0, np.array([0.0]), np.array([3.0]))
    assert starts[0] == pytest.approx(1.0) and ends[0] == pytest.approx(2.0)
    loud = np.full(300, -10.0)  # no pause within reach: the edges stay
    starts, ends = refine_edges(np.array([1.04]), np.array([1.96]), loud, -40.0, np.array([0.0]), np.array([3.0]))
    assert starts[0] == pytest.approx(1.04) and ends[0] == pytest.approx(1.96)


def fake_chapter(tmp_path: Path, frames: int, verses: list[str], seed: int = 0) -> tuple[Path, Path, Path]:
    vocabulary = ["<pad>", "<s>", "</s>", "<unk>", "|", *"aeilmnost"]
    rng = np.random.default_rng(seed)
    emissions = random_log_probs(rng, frames, len(vocabulary)).astype(np.float16)
    np.save(tmp_path / "rec.emissions.npy", emissions)
    asr = {"audio": str(tmp_path / "missing.wav"), "vocabulary": vocabulary, "blank_id": 0, "word_delimiter": "|",
           "frame_s": 0.02, "num_frames": frames, "duration_s": frames * 0.02, "words": [], "text": ""}
    (tmp_path / "rec.json").write_text(json.dumps(asr), encoding="utf-8")
    text = {"recording": "rec", "verses": [{"number": i + 1, "label": str(i + 1), "text": v, "normalized": v}
                                           for i, v in enumerate(verses)]}
    (tmp_path / "rec.text.json").write_text(json.dumps(text), encoding="utf-8")
    return tmp_path / "rec.json", tmp_path / "rec.emissions.npy", tmp_path / "rec.text.json"


def test_too_few_frames_for_the_text_rejects_the_chapter_in_one_line(tmp_path, capsys):
    asr, emissions, text = fake_chapter(tmp_path, 10, ["lama sala", "noa"])
    out = tmp_path / "out.json"
    assert run_cli(main, [str(asr), str(emissions), str(text), str(out), "--no-refine-edges"]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rejected: {text}: the audio {tmp_path / 'missing.wav'} is too short for this text: "
                          "10 frames (0.20 s) cannot hold the text's 14 tokens: "
                          "a CTC path needs at least 14 frames (0.28 s)")
    assert "\n" not in err
    result = json.loads(out.read_text())
    assert result["status"] == "rejected" and result["stage"] == "align" and "verses" not in result
    assert result["file"] == str(text) and "14 tokens" in result["reason"]


def test_letter_outside_the_vocabulary_names_the_text(tmp_path):
    asr, emissions, text = fake_chapter(tmp_path, 100, ["lama", "sala x"])
    with pytest.raises(InputError, match=r"verse 2: 'x' \(U\+0078\) is not in the model's vocabulary") as err:
        align_chapter(asr, emissions, text, refine=False)
    assert err.value.path == str(text)


def test_emissions_that_do_not_match_the_transcript_are_named(tmp_path):
    asr, emissions, text = fake_chapter(tmp_path, 100, ["lama"])
    np.save(emissions, np.zeros((99, 13), np.float16))
    with pytest.raises(InputError, match="does not match the transcript JSON") as err:
        align_chapter(asr, emissions, text, refine=False)
    assert err.value.path == str(emissions)


def test_a_verse_without_letters_sits_at_the_end_of_the_one_before(tmp_path):
    asr, emissions, text = fake_chapter(tmp_path, 200, ["lama sala", "", "noa"])
    result = align_chapter(asr, emissions, text, refine=False, max_chapter_cer=10)
    first, empty, last = result["verses"]
    assert empty["start"] == empty["end"] == first["end"] <= last["start"]
    assert empty["score"] is None and empty["cer"] == 0.0
    assert [w["verse"] for w in result["words"]] == [1, 1, 3]


def test_silence_is_not_taken_for_the_text(tmp_path, capsys):
    asr, emissions, text = fake_chapter(tmp_path, 200, ["lama sala", "noa"])  # a transcript without words
    docx = tmp_path / "rec.docx"
    data = json.loads(text.read_text())
    text.write_text(json.dumps({**data, "docx": str(docx)}))
    out = tmp_path / "out.json"
    assert run_cli(main, [str(asr), str(emissions), str(text), str(out), "--no-refine-edges"]) == 0
    assert capsys.readouterr().err == (f"rejected: {docx}: the model heard no speech in {tmp_path / 'missing.wav'} "
                                       "(silent, or not speech?)\n")
    assert json.loads(out.read_text())["file"] == str(docx)


def test_a_text_rejected_by_read_text_is_passed_on(tmp_path, capsys):
    asr, emissions, text = fake_chapter(tmp_path, 200, ["lama sala"])
    text.write_text(json.dumps({"recording": "rec", "docx": "t/rec.docx", "status": "rejected",
                                "stage": "read_text", "reason": "verse 3 has no text the model can align"}))
    out = tmp_path / "out.json"
    assert run_cli(main, [str(asr), str(emissions), str(text), str(out)]) == 0
    assert capsys.readouterr().err == "rejected: t/rec.docx: verse 3 has no text the model can align\n"
    assert json.loads(out.read_text()) == {"recording": "rec", "status": "rejected", "stage": "read_text",
                                           "file": "t/rec.docx", "reason": "verse 3 has no text the model can align"}


def test_word_and_verse_spans_from_a_path():
    vocabulary = CtcVocabulary(["<pad>", "|", "a", "b"], blank_id=0)
    targets = build_targets([TextVerse(1, "1", "Ab.", "ab"), TextVerse(2, "2", "B a", "b a")], vocabulary, "t.json")
    assert targets.tokens.tolist() == [4, 2, 3, 1, 4, 3, 1, 2, 1, 4]
    # frames: star a a b | blank star b | a |
    states = [1, 3, 3, 5, 7, 8, 9, 11, 13, 15, 17]
    spans = spans_from_path(np.array(states), np.zeros(len(states), np.float32), targets, 2)
    assert spans.verse_start.tolist() == [1, 7] and spans.verse_end.tolist() == [4, 10]  # ends at the delimiter
    assert spans.word_start.tolist() == [1, 7, 9] and spans.word_end.tolist() == [4, 8, 10]
    assert [s[:2] for s in spans.star] == [(0, 1), (6, 7)] and [s[2] for s in spans.star] == [-1, 0]
    # letters run from their first frame to the next token's: a b of "ab" tile the word, then b, a
    letters = spans.letter_start >= 0
    assert targets.tokens[letters].tolist() == [2, 3, 3, 2]
    assert spans.letter_start[letters].tolist() == [1, 3, 7, 9] and spans.letter_end[letters].tolist() == [3, 4, 8, 10]


# --- the demo corpus --------------------------------------------------------------------------

requires_demo_model = pytest.mark.skipif(not (DEMO_MODEL / "config.json").is_file(),
                                         reason="demo model not trained yet (resources/demo/model)")


def truth_of(lang: str, rec: str) -> dict:
    return json.loads((DEMO / lang / "truth" / f"{rec}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def demo_chapters(tmp_path_factory) -> dict[tuple[str, str], dict[str, Path]]:
    """Per demo chapter: the WAV, the transcribe outputs and a read_text-style JSON from the truth."""
    from tala.audio.convert import convert_file
    from tala.asr.transcribe import transcribe_file

    folder = tmp_path_factory.mktemp("align-demo")
    chapters = {}
    for lang, rec in demo_truth_ids():
        truth = truth_of(lang, rec)
        stem = folder / f"{lang}-{rec}"
        paths = {"wav": stem.with_suffix(".wav"), "asr": stem.with_suffix(".json"),
                 "emissions": stem.with_suffix(".npy"), "text": Path(f"{stem}.text.json")}
        convert_file(DEMO / lang / truth["audio"], paths["wav"])
        transcribe_file(paths["wav"], paths["asr"], paths["emissions"], model=str(DEMO_MODEL), adapter=LANGUAGES[lang])
        verses = [{"number": v["number"], "label": str(v["number"]), "text": v["text"],
                   "normalized": normalize_demo_text(v["text"])} for v in truth["verses"]]
        paths["text"].write_text(json.dumps({"recording": rec, "verses": verses}, ensure_ascii=False),
                                 encoding="utf-8")
        chapters[lang, rec] = paths
    return chapters


def boundary_errors(result: dict, truth: dict) -> np.ndarray:
    assert [v["number"] for v in result["verses"]] == [v["number"] for v in truth["verses"]]
    return np.array([[got["start"] - true["start"], got["end"] - true["end"]]
                     for got, true in zip(result["verses"], truth["verses"])]).ravel()


@requires_demo_model
@pytest.mark.slow
@pytest.mark.parametrize("refine", [True, False], ids=["refined", "raw"])
@pytest.mark.parametrize("lang", list(LANGUAGES))
def test_demo_verse_boundaries_meet_the_goals(demo_chapters, lang, refine):
    errors = []
    for (chapter_lang, rec), paths in demo_chapters.items():
        if chapter_lang != lang:
            continue
        truth = truth_of(lang, rec)
        result = align_chapter(paths["asr"], paths["emissions"], paths["text"], refine=refine)
        assert all(v["end"] > v["start"] for v in result["verses"])  # every verse aligned
        assert result["summary"]["chapter_cer"] < 0.15
        # The heading is read but not in the text: it lies in a star span, before verse 1.
        heading = truth["heading"]
        assert result["verses"][0]["start"] >= heading["end"] - 0.02
        assert any(s["start"] <= heading["start"] + 0.1 and s["end"] >= heading["end"] - 0.1
                   and s["after_verse"] is None for s in result["star"])
        # No star inside a verse's speech.
        for span in result["star"]:
            for verse in truth["verses"]:
                assert span["end"] <= verse["start"] + 0.1 or span["start"] >= verse["end"] - 0.1
        errors.append(boundary_errors(result, truth))
    errors = np.abs(np.concatenate(errors))
    assert np.median(errors) <= MEDIAN_GOAL_S and np.percentile(errors, 95) <= P95_GOAL_S, \
        (np.median(errors), np.percentile(errors, 95))


@requires_demo_model
@pytest.mark.slow
def test_demo_anchored_band_gives_the_full_alignment(demo_chapters):
    paths = demo_chapters["samoan", "GEN_001"]
    full = align_chapter(paths["asr"], paths["emissions"], paths["text"], refine=False)
    banded = align_chapter(paths["asr"], paths["emissions"], paths["text"], refine=False, full_band_cells=0,
                           band_s=3.0)
    assert full["settings"]["band"]["band"] == "full" and banded["settings"]["band"]["band"] == "anchored"
    assert banded["verses"] == full["verses"] and banded["words"] == full["words"]


@requires_demo_model
@pytest.mark.slow
def test_demo_text_method_times_most_verse_edges(demo_chapters):
    errors = []
    for (lang, rec), paths in demo_chapters.items():
        result = align_chapter(paths["asr"], paths["emissions"], paths["text"], method="text")
        assert result["method"] == "text" and result["star"] == []
        errors.append(boundary_errors(result, truth_of(lang, rec)))
    errors = np.abs(np.concatenate(errors))
    assert np.median(errors) <= MEDIAN_GOAL_S and np.mean(errors <= 0.2) >= 0.9


@requires_demo_model
@pytest.mark.slow
def test_demo_cli_writes_the_aligned_json(demo_chapters, tmp_path, capsys):
    paths = demo_chapters["portuguese", "GEN_001"]
    out = tmp_path / "aligned" / "GEN_001.json"
    assert run_cli(main, [str(paths["asr"]), str(paths["emissions"]), str(paths["text"]), str(out),
                          "--star-penalty", "1.5"]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["recording"] == "GEN_001" and result["audio"] == str(paths["wav"])
    assert result["method"] == "ctc" and result["settings"]["star_penalty"] == 1.5
    verse = result["verses"][0]
    assert set(verse) == {"number", "label", "start", "end", "text", "normalized", "score", "cer", "greedy"}
    assert verse["score"] < 0 and 0 <= verse["cer"] < 0.2 and verse["greedy"]
    assert {w["verse"] for w in result["words"]} == {v["number"] for v in result["verses"]}
    assert all(w["start"] < w["end"] for w in result["words"])
    assert set(result["summary"]) == {"verses", "mean_score", "chapter_cer", "verse_cer", "star_s"}
    assert result["status"] == "ok" and result["text_warnings"] == []
    assert "GEN_001.json" in capsys.readouterr().err


@requires_demo_model
@pytest.mark.slow
def test_demo_another_chapters_text_is_rejected(demo_chapters, tmp_path, capsys):
    audio, text = demo_chapters["portuguese", "GEN_001"], demo_chapters["portuguese", "RUT_001"]["text"]
    out = tmp_path / "out.json"
    assert run_cli(main, [str(audio["asr"]), str(audio["emissions"]), str(text), str(out)]) == 0
    err = capsys.readouterr().err
    docx = json.loads(text.read_text()).get("docx") or str(text)
    assert re.fullmatch(rf"rejected: {re.escape(docx)}: text does not match the audio {re.escape(str(audio['wav']))}: "
                        r"chapter CER 0\.\d\d > 0\.6 \(another chapter's text\?\)\n", err)
    assert json.loads(out.read_text())["status"] == "rejected"


@requires_demo_model
@pytest.mark.slow
@pytest.mark.parametrize("layout", ["bold_inline", "plain_inline"])
@pytest.mark.parametrize("lang, rec", [("portuguese", "GEN_001"), ("samoan", "JHN_001")])
def test_demo_chapter_aligns_the_same_from_any_docx_layout(demo_chapters, tmp_path, lang, rec, layout):
    """The same chapter written with its verse numbers as bold runs or as plain digits inside one
    running paragraph (a common publisher layout) reads into the same verses as the superscript
    original, through tala.align.read_text as the workflow runs it, and so aligns to the same times."""
    import docx_layouts
    from tala.align.read_text import main as read_text

    paths = demo_chapters[lang, rec]
    built, expected = getattr(docx_layouts, layout)(tmp_path, docx_layouts.demo_verses(lang, rec))
    results = {}
    for name, source in (("superscript", DEMO / lang / "text" / f"{rec}.docx"), (layout, built)):
        text = tmp_path / f"{name}.text.json"
        options = ["--model", str(DEMO_MODEL), "--adapter", LANGUAGES[lang]]
        assert run_cli(read_text, [str(source), str(text), *options]) == 0
        assert json.loads(text.read_text())["warnings"] == []
        results[name] = align_chapter(paths["asr"], paths["emissions"], text)
    ours, original = results[layout], results["superscript"]
    assert [v["label"] for v in ours["verses"]] == [label for label, _ in expected]
    assert [(v["normalized"], v["start"], v["end"]) for v in ours["verses"]] == \
        [(v["normalized"], v["start"], v["end"]) for v in original["verses"]]
    errors = np.abs(boundary_errors(ours, truth_of(lang, rec)))
    assert np.median(errors) <= MEDIAN_GOAL_S and np.percentile(errors, 95) <= P95_GOAL_S


@requires_demo_model
@pytest.mark.slow
def test_demo_refines_edges_on_the_wav_it_is_given(demo_chapters, tmp_path):
    """The workflow hands align the WAV it declares as an input; the transcript JSON's own path to
    it is only the fallback."""
    paths = demo_chapters["samoan", "PSA_121"]
    asr = json.loads(paths["asr"].read_text(encoding="utf-8"))
    moved = tmp_path / "asr.json"
    moved.write_text(json.dumps({**asr, "audio": str(tmp_path / "gone.wav")}), encoding="utf-8")
    with pytest.raises(InputError, match="cannot read the audio to refine the edges"):
        align_chapter(moved, paths["emissions"], paths["text"])
    given = align_chapter(moved, paths["emissions"], paths["text"], audio=paths["wav"])
    reference = align_chapter(paths["asr"], paths["emissions"], paths["text"])
    assert [(v["start"], v["end"]) for v in given["verses"]] == [(v["start"], v["end"]) for v in reference["verses"]]
