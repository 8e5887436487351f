"""tala.finetune.evaluate_asr on clips cut from a demo chapter at its true verse times.

The demo model has a Samoan (smo) and a Portuguese (por) adapter: on Samoan speech the right
adapter must score far better than the wrong one, so the evaluation is seen to discriminate."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf
import soxr

from conftest import REPO, normalize_demo_text
from tala.errors import InputError
from tala.finetune import evaluate_asr

MODEL = REPO / "resources" / "demo" / "model"
DEMO = REPO / "resources" / "demo" / "samoan"


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """A dataset-shaped JSONL of PSA_121's verses (16 kHz clips, normalized references)."""
    root = tmp_path_factory.mktemp("eval")
    truth = json.loads((DEMO / "truth" / "PSA_121.json").read_text(encoding="utf-8"))
    audio, rate = sf.read(str(DEMO / "audio" / "PSA_121.wav"), dtype="float32")
    audio = soxr.resample(audio, rate, 16000)
    (root / "clips").mkdir()
    rows = []
    for verse in truth["verses"][:5]:
        clip = audio[int((verse["start"] - 0.1) * 16000):int((verse["end"] + 0.1) * 16000)]
        name = f"clips/PSA_121_{verse['number']}.wav"
        sf.write(str(root / name), clip, 16000, subtype="PCM_16")
        rows.append({"id": f"PSA_121_{verse['number']}", "audio": name, "text": verse["text"],
                     "normalized": normalize_demo_text(verse["text"]), "duration": len(clip) / 16000,
                     "recording": "PSA_121"})
    path = root / "test.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def test_the_right_adapter_scores_far_better_and_outputs_are_deterministic(split, tmp_path):
    args = ["--language", "samoan", "--split", "test", str(split), "--system", "por", str(MODEL), "por",
            "--system", "smo", str(MODEL), "smo", "--device", "cpu"]
    out_json, out_tsv = tmp_path / "eval.json", tmp_path / "worst.tsv"
    assert evaluate_asr.main([str(out_json), str(out_tsv), *args]) == 0
    result = json.loads(out_json.read_text())
    test = result["splits"]["test"]
    assert test["clips"] == 5 and result["systems"]["smo"] == {"model": str(MODEL), "adapter": "smo"}
    assert test["smo"]["cer"] < 0.1 and test["por"]["cer"] > 2 * test["smo"]["cer"]
    assert test["smo"]["wer"] >= test["smo"]["cer"] and test["smo"]["ref_chars"] > 100
    change = test["change"]  # the last system against the first, over these 5 clips
    assert change["from"] == "por" and change["to"] == "smo" and change["clips"] == 5
    assert change["cer"] == pytest.approx(test["smo"]["cer"] - test["por"]["cer"], abs=1e-4)
    assert change["cer_95"][1] < 0 and change["last_better_cer"] == 1.0, "smo reads every clip better"
    rows = list(csv.DictReader(out_tsv.open(encoding="utf-8"), delimiter="\t"))
    assert len(rows) == 5 and {"cer_por", "cer_smo", "reference", "hypothesis_smo"} <= set(rows[0])
    assert [float(r["cer_smo"]) for r in rows] == sorted((float(r["cer_smo"]) for r in rows), reverse=True)
    again = tmp_path / "again"
    again.mkdir()
    assert evaluate_asr.main([str(again / "eval.json"), str(again / "worst.tsv"), *args]) == 0
    assert (again / "eval.json").read_bytes() == out_json.read_bytes()
    assert (again / "worst.tsv").read_bytes() == out_tsv.read_bytes()


def test_the_paired_bootstrap_tells_a_change_of_every_clip_from_one_of_a_single_clip():
    refs = [f"o le tala {w} lenei e uma" for w in ("lua", "tolu", "fa", "lima", "ono", "fitu", "valu", "iva")] * 3
    same = evaluate_asr.paired_bootstrap(refs, refs, refs)
    assert same["cer"] == 0 and same["cer_95"] == [0, 0] and same["last_better_cer"] == 0.5
    worse = [r.replace("tala", "tal") for r in refs]  # one deletion in every clip
    every = evaluate_asr.paired_bootstrap(refs, worse, refs)
    assert every["clips"] == 24 and every["cer"] < 0 and every["cer_95"][1] < 0 and every["last_better_cer"] == 1.0
    one = evaluate_asr.paired_bootstrap(refs, [worse[0], *refs[1:]], refs)  # only the first clip differs
    assert one["cer"] < 0 and one["cer_95"][0] < 0 == one["cer_95"][1], "the interval holds 0: not a finding"
    assert 0.5 < one["last_better_cer"] < 1.0
    assert evaluate_asr.paired_bootstrap(refs, worse, refs) == every, "seeded"
    assert evaluate_asr.paired_bootstrap(["", "a b"], ["a", "b"], ["", "a b"]) is None, "one clip says nothing"


def test_a_clip_that_cannot_be_read_names_its_line(split, tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = split.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[1])
    row["audio"] = "clips/missing.wav"
    bad.write_text(lines[0] + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    (tmp_path / "clips").symlink_to(split.parent / "clips")
    with pytest.raises(InputError, match=r"bad.jsonl:2: cannot read the audio"):
        evaluate_asr.main([str(tmp_path / "e.json"), str(tmp_path / "e.tsv"), "--language", "samoan",
                           "--split", "test", str(bad), "--system", "smo", str(MODEL), "smo", "--device", "cpu"])


def test_nothing_held_out_is_said_in_the_outputs_not_an_error(tmp_path, capsys):
    """A language whose usable chapters all went to training: the evaluation says so and its run goes on."""
    empty = tmp_path / "test.jsonl"
    empty.write_text("")
    assert evaluate_asr.main([str(tmp_path / "e.json"), str(tmp_path / "e.tsv"), "--language", "samoan",
                              "--split", "test", str(empty), "--system", "smo", str(MODEL), "smo",
                              "--html", str(tmp_path / "e.html")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["splits"] == {} and "samoan: nothing to evaluate" in result["note"]
    assert (tmp_path / "e.tsv").read_text().startswith("split\tid") and len((tmp_path / "e.tsv").read_text().splitlines()) == 1
    assert "nothing to evaluate" in (tmp_path / "e.html").read_text()
    assert "samoan: nothing to evaluate" in capsys.readouterr().err


def test_an_adapter_the_model_lacks_lists_those_it_has(split, tmp_path):
    from tala.hub import ModelError

    with pytest.raises(ModelError, match=r"por.*smo|smo.*por"):
        evaluate_asr.main([str(tmp_path / "e.json"), str(tmp_path / "e.tsv"), "--language", "samoan",
                           "--split", "test", str(split), "--system", "x", str(MODEL), "tvl", "--device", "cpu"])


def test_help():
    with pytest.raises(SystemExit) as exit_:
        evaluate_asr.main(["--help"])
    assert exit_.value.code == 0


def test_references_and_hypotheses_are_normalized_the_same_way(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"audio": "a.wav", "text": "A  b", "normalized": " a   b "}) + "\n")
    (clip,) = evaluate_asr.read_split("test", path)
    assert clip.reference == "a b" and clip.id == "test:1"
    assert np.isclose(clip.duration, 0.0)


def test_a_chapter_is_scored_on_the_words_within_its_aligned_verses():
    words = [("o", 0.5, 0.6), ("le", 0.7, 0.8), ("tusi", 1.0, 1.4), ("a", 1.5, 1.6), ("ruta", 2.9, 3.3)]
    # The heading (before 0.9 s) and a word half past the end are left out.
    assert evaluate_asr.chapter_hypothesis(words, 0.9, 3.0) == "tusi a"
    assert evaluate_asr.chapter_hypothesis(words, 0.0, 9.0) == "o le tusi a ruta"


def test_chapters_come_from_the_split_and_name_what_is_missing(tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"splits": {"test": {"recordings": ["PSA_121"]}}}), encoding="utf-8")
    text, aligned = tmp_path / "PSA_121.json", tmp_path / "aligned" / "PSA_121.json"
    aligned.parent.mkdir()
    text.write_text(json.dumps({"verses": [{"normalized": "ou te tepa"}, {"normalized": "aʻe i  mauga"}]}))
    aligned.write_text(json.dumps({"verses": [{"start": 5.0, "end": 8.5}, {"start": 9.0, "end": 12.25}]}))
    wav = tmp_path / "PSA_121.wav"
    (chapter,) = evaluate_asr.read_chapters("test", summary, [wav], [text], [aligned])
    assert (chapter.recording, chapter.reference, chapter.start, chapter.end) == ("PSA_121", "ou te tepa aʻe i mauga",
                                                                                5.0, 12.25)
    with pytest.raises(InputError, match="recording PSA_121 of split test: no aligned file given"):
        evaluate_asr.read_chapters("test", summary, [wav], [text], [])
    with pytest.raises(InputError, match="no split 'valid'"):
        evaluate_asr.read_chapters("valid", summary, [wav], [text], [aligned])


# --------------------------------------------------------------------------- an early end token


def spoken(seconds: float, pause_at: float, rate: int = 16000) -> np.ndarray:
    """Noise bursts of 0.3 s every 0.4 s (words) with one 0.4 s pause at ``pause_at``."""
    t = np.arange(int(seconds * rate)) / rate
    audio = np.random.default_rng(0).normal(0, 0.1, len(t)).astype(np.float32)
    audio[(t % 0.4) >= 0.3] *= 0.05
    audio[(t >= pause_at) & (t < pause_at + 0.4)] = 0.0
    return audio


def words(n: int) -> str:
    """``n`` different 4-letter words (no loop: a decoder's words differ)."""
    syllables = ["ba", "ke", "di", "mo", "nu", "pa", "se", "ti"]
    return " ".join(syllables[i % 8] + syllables[i // 8 % 8] for i in range(n))


class StopsAfterSix(evaluate_asr.ClipRecognizer):
    """A decoder that reads 4 letters a second and writes its end token after 6 s of audio."""

    what = "the test's window"

    def __init__(self, name="fake", pace=None, window_s=30):
        self.name, self.pace, self.window, self.parts = name, pace, window_s * 16000, []

    def transcribe_part(self, piece):
        self.parts.append(len(piece) / 16000)
        return words(int(min(len(piece) / 16000, 6.0)))


def test_the_quietest_cut_falls_in_the_pause_of_the_middle_third():
    audio = spoken(16.0, pause_at=7.0)
    assert 7.0 * 16000 < evaluate_asr.quietest_cut(audio) < 7.4 * 16000
    # a pause outside the middle third is not taken: the cut stays within it
    assert 16000 * 16 / 3 <= evaluate_asr.quietest_cut(spoken(16.0, pause_at=2.0)) <= 16000 * 32 / 3


def test_a_clip_longer_than_part_seconds_is_read_in_parts_cut_at_its_pauses():
    """20 s with pauses at 7 and 14 s, parts of at most 8 s: cut at 7 s (the middle third's pause),
    the 13 s after it at 14 s; each part read (and checked) alone, the transcripts joined."""
    audio = spoken(20.0, pause_at=7.0)
    audio[14 * 16000:int(14.4 * 16000)] = 0.0
    parts = evaluate_asr.quiet_parts(audio, 8.0)
    assert [round(len(p) / 16000) for p in parts] == [7, 7, 6] and np.array_equal(np.concatenate(parts), audio)
    assert all(p is audio for p in evaluate_asr.quiet_parts(audio, None) + evaluate_asr.quiet_parts(audio, 20.0))
    model = StopsAfterSix()
    model.part_seconds = 8.0
    assert model.transcribe(audio) == " ".join(words(int(min(len(p) / 16000, 6))) for p in parts)
    assert model.rereads == 0
    assert [round(p) for p in model.parts] == [7, 7, 6], "read in parts, none read whole"
    whole = StopsAfterSix()
    assert whole.transcribe(audio) == words(6) and whole.parts == [20.0]


def test_a_part_that_ends_too_early_for_the_pace_is_read_again_in_halves():
    pace = evaluate_asr.Pace(4.0, "train.jsonl")
    audio = spoken(16.0, pause_at=7.0)
    model = StopsAfterSix(pace=pace)
    text = model.transcribe(audio)
    assert len(text.replace(" ", "")) == 48 and model.rereads == 1, "two halves of 6 s read, not one"
    assert len(model.read_once.replace(" ", "")) == 24, "the first reading is kept beside"
    assert model.parts[0] == 16.0 and 7.0 < model.parts[1] < 7.4 and len(model.parts) == 3
    # without a pace, or below the shortest part worth cutting, each part is read once
    once = StopsAfterSix()
    assert len(once.transcribe(audio).replace(" ", "")) == 24 and once.rereads == 0 and len(once.parts) == 1
    short = StopsAfterSix(pace=evaluate_asr.Pace(40.0, "x"))
    short.transcribe(spoken(5.9, pause_at=2.5))
    assert short.parts == [5.9] and short.rereads == 0


def test_halves_that_read_less_than_the_whole_are_not_taken():
    class ReadsWholesOnly(StopsAfterSix):
        def transcribe_part(self, piece):
            self.parts.append(len(piece) / 16000)
            return "abcd abcd" if len(piece) >= 16 * 16000 else ""

    model = ReadsWholesOnly(pace=evaluate_asr.Pace(4.0, "x"))
    assert model.transcribe(spoken(16.0, pause_at=7.0)) == "abcd abcd" and model.rereads == 0


def test_looped_letters_count_a_unit_written_three_times_or_more_in_a_row():
    assert evaluate_asr.looped_letters("mai loigagagaga") == 6  # "ga" x 4: three more writings
    assert evaluate_asr.looped_letters("ombrar ombrar ombrar o que") == 12
    assert evaluate_asr.looped_letters("le le le") == 4, "a loop at the end of the transcript counts"
    assert evaluate_asr.looped_letters("a gagaga b le le le") == 4 + 4, "every loop counts"
    # two writings, or a run of fewer than LOOP_LETTERS extra letters, is text, not a loop
    assert evaluate_asr.looped_letters("e ova ai e ova ai mea leaga") == 0
    assert evaluate_asr.looped_letters("e e e ua aaaa") == 0
    assert evaluate_asr.looped_letters("leoleoina o le leoleo") == 0
    assert evaluate_asr.looped_letters("") == 0


class LoopsOnLongParts(StopsAfterSix):
    """A decoder that reads 4 letters a second, and on a part longer than 10 s writes "ga" 20
    times after the first 8 s of it (a loop to its budget)."""

    def transcribe_part(self, piece):
        self.parts.append(len(piece) / 16000)
        seconds = len(piece) / 16000
        if seconds > 10:
            return words(8) + " lo" + "ga" * 20
        return words(int(seconds))


def test_a_part_that_loops_is_read_again_in_halves_and_the_halves_taken_when_they_loop_less():
    pace = evaluate_asr.Pace(4.0, "train.jsonl")
    model = LoopsOnLongParts(pace=pace)
    text = model.transcribe(spoken(16.0, pause_at=7.0))
    assert text == f"{words(7)} {words(8)}" and model.rereads == 1, "the halves (7.3 and 8.7 s) read, loop-free"
    assert model.read_once == f"{words(8)} lo{'ga' * 20}" and model.parts[0] == 16.0 and len(model.parts) == 3
    # without a pace the checks are off: read once, loop and all
    plain = LoopsOnLongParts()
    assert "gagaga" in plain.transcribe(spoken(16.0, pause_at=7.0)) and plain.rereads == 0


def test_halves_that_loop_as_much_or_read_too_little_are_not_taken():
    class RepeatsEverywhere(StopsAfterSix):  # real text that repeats: every reading repeats it
        def transcribe_part(self, piece):
            self.parts.append(len(piece) / 16000)
            return "holy holy holy " + words(int(len(piece) / 16000))

    model = RepeatsEverywhere(pace=evaluate_asr.Pace(4.0, "x"))
    assert model.transcribe(spoken(16.0, pause_at=7.0)) == "holy holy holy " + words(16) and model.rereads == 0
    assert len(model.parts) == 7, "each part of 6 s or more read again in halves, which loop as much"

    class HalvesSayLittle(StopsAfterSix):  # the halves stop loops by saying almost nothing
        def transcribe_part(self, piece):
            self.parts.append(len(piece) / 16000)
            return words(16) + " gagagagaga" if len(piece) >= 16 * 16000 else "ab"

    short = HalvesSayLittle(pace=evaluate_asr.Pace(4.0, "x"))
    assert short.transcribe(spoken(16.0, pause_at=7.0)).endswith("gagagagaga") and short.rereads == 0


def test_the_pace_comes_from_the_training_clips_and_is_said_in_the_outputs(tmp_path, monkeypatch):
    (tmp_path / "clips").mkdir()
    sf.write(str(tmp_path / "clips" / "a.wav"), spoken(16.0, pause_at=7.0), 16000, subtype="PCM_16")
    sf.write(str(tmp_path / "clips" / "b.wav"), spoken(5.0, pause_at=2.0), 16000, subtype="PCM_16")
    test = tmp_path / "test.jsonl"
    # what the early-ending decoder reads of a.wav in two halves, and the 4 words after
    reference = f"{words(6)} {words(6)} {words(4)}"
    test.write_text(json.dumps({"audio": "clips/a.wav", "normalized": reference, "duration": 16.0})
                    + "\n" + json.dumps({"audio": "clips/b.wav", "normalized": "abcd " * 5, "duration": 5.0}) + "\n")
    train = tmp_path / "train.jsonl"  # 4 letters a second, and a row without a duration left out
    train.write_text("".join(json.dumps(row) + "\n" for row in (
        {"audio": "x.wav", "normalized": "abcd abcd", "duration": 2.0},
        {"audio": "y.wav", "normalized": "abcd abcd abcd", "duration": 3.0},
        {"audio": "z.wav", "normalized": "abcdefgh abcdefgh abcdefgh", "duration": 2.0},
        {"audio": "w.wav", "normalized": "abcd"})))
    assert evaluate_asr.reading_pace(evaluate_asr.read_split("pace", train), "t").letters_per_second == 4.0
    monkeypatch.setattr(evaluate_asr, "recognizer", lambda kind, system, models_dir, device, dtype, pace=None, beams=1,
                        part_seconds=None: StopsAfterSix(system.name, pace))
    common = ["--language", "samoan", "--kind", "moonshine", "--split", "test", str(test),
              "--system", "after", "m", "-"]
    assert evaluate_asr.main([str(tmp_path / "e.json"), str(tmp_path / "e.tsv"), "--html", str(tmp_path / "e.html"),
                              "--pace", str(train), *common]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["pace"]["letters_per_second"] == 4.0 and result["pace"]["from"] == str(train)
    after = result["splits"]["test"]["after"]
    assert after["reread"] == 1 and after["read_once"]["cer"] > after["cer"]
    assert "clips read so: after 1" in (tmp_path / "e.html").read_text()
    assert evaluate_asr.main([str(tmp_path / "p.json"), str(tmp_path / "p.tsv"), *common]) == 0
    plain = json.loads((tmp_path / "p.json").read_text())
    assert "pace" not in plain and "reread" not in plain["splits"]["test"]["after"]
    assert plain["splits"]["test"]["after"]["cer"] == after["read_once"]["cer"]


@pytest.mark.parametrize("args, says", [
    (("ctc", "--num-beams", "2"), "a ctc model reads greedily"),
    (("moonshine", "--num-beams", "0"), "--num-beams must be >= 1"),
    (("ctc", "--part-seconds", "8"), "a ctc model reads whole clips"),
    (("speechllm", "--part-seconds", "0"), "--part-seconds must be > 0"),
], ids=["beams-ctc", "beams-0", "parts-ctc", "parts-0"])  # fmt: skip
def test_beams_and_parts_are_for_the_decoder_kinds_only_and_beams_at_least_one(split, tmp_path, capsys, args, says):
    kind, *option = args
    with pytest.raises(SystemExit):
        evaluate_asr.main([str(tmp_path / "e.json"), str(tmp_path / "e.tsv"), "--language", "samoan", "--kind", kind,
                           "--split", "test", str(split), "--system", "after", str(MODEL), "smo", *option])
    assert says in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()
