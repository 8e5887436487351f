"""tala.units.train_bpe: SentencePiece BPE motifs over unit sequences, the vocabulary size adjustment,
dedup, determinism, letters under motifs and the input errors."""

import io
import json
import random

import pytest
import sentencepiece as spm

from tala.errors import InputError
from tala.units import train_bpe as tb

WORDS = [[5, 17, 33, 8], [60, 61, 2], [90, 44, 71, 12, 3]]


def segment_line(recording, start, units, frames=None):
    frames = frames or [1] * len(units)
    times, t = [], start
    for count in frames:
        times.append(round(t, 2))
        t += 0.02 * count
    return json.dumps({"recording": recording, "start": start, "end": round(t, 2), "units": units,
                       "times": times, "frames": frames})


def write_corpus(path, segments=40, seed=0, repeats=True):
    """Segments made of the planted words with random noise units between them (and, when
    ``repeats``, units repeated at random, as k-means over 20 ms frames gives)."""
    rng = random.Random(seed)
    lines = []
    for s in range(segments):
        units = []
        for _ in range(10):
            units += rng.choice(WORDS)
            units += [rng.randrange(100) for _ in range(rng.randrange(3))]
        if repeats:
            units = [u for u in units for _ in range(rng.choice([1, 1, 2]))]
        lines.append(segment_line(f"GEN_{s // 10 + 1:03d}", (s % 10) * 10.0, units))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_model_loads_encodes_and_finds_planted_words(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    out = tmp_path / "out"
    analysis = tb.train_bpe(corpus, out, vocab_size=140, top=30, log=io.StringIO())
    sp = spm.SentencePieceProcessor(model_file=str(out / "bpe.model"))
    assert sp.get_piece_size() == analysis["vocab_size"] == 140
    pieces = sp.encode(tb.units_to_text(WORDS[2] + WORDS[0]), out_type=str)
    assert "".join(pieces) == tb.units_to_text(WORDS[2] + WORDS[0])
    assert len(pieces) < len(WORDS[2] + WORDS[0])  # motifs merge units
    found = {motif["piece"] for motif in analysis["top_motifs"]}
    for word in WORDS:
        assert " ".join(map(str, word)) in found
    assert all(motif["length"] >= 2 for motif in analysis["top_motifs"])
    counts = [motif["count"] for motif in analysis["top_motifs"]]
    assert counts == sorted(counts, reverse=True)
    # bpe.vocab: the unit ids of each piece and its score; <unk> as itself.
    vocab = (out / "bpe.vocab").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == 140 and vocab[0].split("\t")[0] == "<unk>"
    for line in vocab[1:]:
        piece, score = line.split("\t")
        float(score)
        assert all(0 <= int(unit) < 100 for unit in piece.split(" "))
    assert analysis["unit_offset"] == 0x4E00 and analysis["segments"] == 40
    assert analysis["tool"]["sentencepiece"] == spm.__version__


def test_vocab_size_too_high_is_lowered_once(tmp_path):
    corpus = tmp_path / "tiny.jsonl"
    corpus.write_text(segment_line("A", 0.0, [1, 2, 3, 1, 2, 3, 4]) + "\n" + segment_line("A", 1.0, [3, 4, 1, 2]) + "\n")
    log = io.StringIO()
    analysis = tb.train_bpe(corpus, tmp_path / "out", vocab_size=5000, log=log)
    lines = log.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0] == f"bpe: vocab_size 5000 is more than these 11 units support; using {analysis['vocab_size']}"
    assert analysis["vocab_size_requested"] == 5000 and 5 <= analysis["vocab_size"] < 5000
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "out" / "bpe.model"))
    assert sp.get_piece_size() == analysis["vocab_size"]


def test_vocab_size_below_the_units_is_raised(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", segments=10)
    log = io.StringIO()
    analysis = tb.train_bpe(corpus, tmp_path / "out", vocab_size=10, log=log)
    distinct = analysis["distinct_units"]
    assert analysis["vocab_size"] == distinct + 1
    assert log.getvalue() == (f"bpe: vocab_size 10 is less than the {distinct} distinct units + 1 special piece; "
                              f"using {distinct + 1}\n")


def test_dedup_collapses_repeats_but_not_twice(tmp_path):
    assert tb.units_to_text([3, 3, 4, 3], dedup=True) == tb.units_to_text([3, 4, 3])
    assert tb.units_to_text([3, 3], dedup=False) == chr(0x4E00 + 3) * 2
    assert tb.collapse([3, 3, 4], [0.0, 0.02, 0.04], [1, 1, 1]) == ([3, 4], [0.0, 0.04], [2, 1])

    plain = tmp_path / "plain.jsonl"
    plain.write_text(segment_line("A", 0.0, [7, 7, 7, 8, 9, 9, 7, 8, 9]) + "\n")
    collapsed = tb.train_bpe(plain, tmp_path / "a", vocab_size=4, log=io.StringIO())
    assert (collapsed["dedup"], collapsed["input_deduplicated"]) == (True, False)
    assert collapsed["units"] == 6 and collapsed["frames"] == 9
    kept = tb.train_bpe(plain, tmp_path / "b", vocab_size=4, dedup=False, log=io.StringIO())
    assert kept["units"] == 9 and kept["frames"] == 9

    # Already run-length deduplicated (frames > 1): an equal unit after a gap-free run is NOT merged again.
    deduped = tmp_path / "deduped.jsonl"
    deduped.write_text(segment_line("A", 0.0, [7, 8, 8, 9], frames=[3, 1, 2, 2]) + "\n")
    analysis = tb.train_bpe(deduped, tmp_path / "c", vocab_size=4, log=io.StringIO())
    assert analysis["input_deduplicated"] is True
    assert analysis["units"] == 4 and analysis["frames"] == 8


def test_two_runs_give_identical_bytes(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    aligned = tmp_path / "GEN_001.json"
    aligned.write_text(json.dumps({"status": "ok", "letters": [["a", 0.0, 0.1], ["b", 0.1, 0.3]]}))
    for name in ("one", "two"):
        assert tb.main([str(corpus), str(tmp_path / name), "--aligned", str(aligned), "--vocab-size", "300"]) == 0
    for name in ("bpe.model", "bpe.vocab", "motif_analysis.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["bpe.model", "bpe.vocab", "motif_analysis.json"]


def test_letters_under_motifs_and_a_place_to_listen(tmp_path):
    word = [10, 20, 30]
    # Recording R: the word at 1.00-1.06 s (three 20 ms units) in each of 4 segments, noise around it.
    lines = []
    for s in range(4):
        start = 1.0 + s * 10
        lines.append(segment_line("R", start - 0.04, [50 + s, 60 + s] + word + [70 + s]))
    lines.append(segment_line("Q", 0.0, word + [99]))  # no letters for Q
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    letters = []
    for s in range(4):
        t = 1.0 + s * 10
        letters += [["a", t - 0.5, t + 0.03], ["i", t + 0.03, t + 0.2]] if s < 3 else [["o", t, t + 0.06]]
    (tmp_path / "R.json").write_text(json.dumps({"status": "ok", "letters": letters}))
    (tmp_path / "Q.json").write_text(json.dumps({"status": "failed", "letters": [["x", 0, 9]]}))
    analysis = tb.train_bpe(corpus, tmp_path / "out", aligned=[tmp_path / "R.json", tmp_path / "Q.json"],
                            vocab_size=19, top=50, log=io.StringIO())
    motif = next(m for m in analysis["top_motifs"] if m["piece"] == "10 20 30")
    assert motif["count"] == 5 and motif["length"] == 3 and motif["mean_ms"] == 60.0
    assert motif["letters"] == [{"letters": "ai", "count": 3}, {"letters": "o", "count": 1}]
    assert motif["with_letters"] == 0.8
    listen = motif["listen"]
    assert listen == {"recording": "R", "start": 1.0, "end": 1.06}
    assert motif["share"] == round(5 * 3 / analysis["frames"], 6)


def test_read_letters_absent_and_named_by_key(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"status": "ok"}))
    (tmp_path / "y.json").write_text(json.dumps({"recording": "GEN_002", "letters": [["b", 0.2, 0.3], ["a", 0, 0.1]]}))
    letters = tb.read_letters([tmp_path / "x.json", tmp_path / "y.json"])
    assert letters == {"GEN_002": [("a", 0.0, 0.1), ("b", 0.2, 0.3)]}


def test_empty_corpus_is_one_clear_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(InputError, match="empty.jsonl: no segments"):
        tb.train_bpe(empty, tmp_path / "out")
    hollow = tmp_path / "hollow.jsonl"
    hollow.write_text(segment_line("A", 0.0, []) + "\n" + segment_line("A", 1.0, []) + "\n")
    with pytest.raises(InputError, match="hollow.jsonl: no units in any of its 2 segments"):
        tb.train_bpe(hollow, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_malformed_line_names_file_and_line(tmp_path, capsys):
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text(segment_line("A", 0.0, [1, 2, 3]) + "\n\n{not json\n")
    with pytest.raises(InputError, match=r"bad.jsonl: line 3: not valid JSON"):
        tb.train_bpe(corpus, tmp_path / "out")
    corpus.write_text(segment_line("A", 0.0, [1, 2, 300]) + "\n")
    with pytest.raises(InputError, match=r"line 1: a unit id outside 0..99"):
        tb.train_bpe(corpus, tmp_path / "out")
    from tala.errors import run_cli

    assert run_cli(tb.main, [str(corpus), str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        tb.main(["--help"])
    assert exit_info.value.code == 0
    assert "--vocab-size" in capsys.readouterr().out


def test_public_functions_without_files():
    lines = [tb.units_to_text([0, 1, 2, 3, 4, 0, 1, 2])] * 5
    model, reached = tb.train(lines, 8)
    assert reached == 8
    assert tb.vocab_text(model).splitlines()[1].split("\t")[0] == "0 1"
    # Units the model never saw (7, 8, 9) are skipped, whatever their run length.
    segment = tb.Segment("X", [0, 1, 7, 8, 2, 9, 0, 1], [0.02 * i for i in range(8)], [1] * 8)
    found = tb.analyze(model, [segment], top=5)
    assert found["units"] == 8 and found["segments"] == 1
    assert [(m["piece"], m["count"]) for m in found["top_motifs"]] == [("0 1", 2)]
    assert found["top_motifs"][0]["listen"] == {"recording": "X", "start": 0.0, "end": 0.04}
