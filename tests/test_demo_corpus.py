"""The committed demo corpus is what its ground truth says it is.

These tests read the files under resources/demo (CI needs neither espeak-ng nor a synthesis run);
the synthesis unit test needs espeak-ng and skips without it, and the slow regeneration test runs
only with the tool versions the committed truth records.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import unicodedata
from functools import cache
from pathlib import Path

import docx
import numpy as np
import pytest
import soundfile as sf

from tala.demo import corpus as demo_corpus
from tala.demo import speech
from tala.demo.chapters import CORPUS_LANGUAGES, verse_text
from tala.demo.text import TUVALUAN, normalize_text

DEMO = Path(__file__).resolve().parents[1] / "resources" / "demo"
LANGUAGES = ("portuguese", "samoan", "tuvaluan")
CHAPTERS = {"portuguese": 4, "samoan": 4, "tuvaluan": 5}
# Tuvaluan is the language the workflow fine-tunes a new adapter on and tests on a held-out chapter:
# each chapter's vocabulary must be its own, or the test chapter would be half memorized.
MIN_NOVEL_WORD_SHARE = 0.50
AUDIO_EXTENSIONS = (".mp3", ".mp4", ".wav")
EXPECTED_FORMAT = {  # ext -> (sample rate, channels)
    ".mp3": (44_100, 2),
    ".mp4": (48_000, 2),
    ".wav": (22_050, 1),
}
DECODE_RATE_HZ = 16_000
SPEECH_MIN_DBFS = -35.0
GAP_MAX_DBFS = -50.0
TIME_EPS_S = 2e-6  # truth times are rounded to 6 decimals

TRUTH_FILES = sorted(DEMO.glob("*/truth/*.json"))
AUDIO_FILES = sorted(p for p in DEMO.glob("*/audio/*") if p.suffix in AUDIO_EXTENSIONS)


def load_truth(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def truth_id(path: Path) -> str:
    return f"{path.parts[-3]}/{path.stem}"


@cache
def decoded_mono(path: Path) -> tuple[np.ndarray, int]:
    if path.suffix == ".mp4":
        if shutil.which("ffmpeg") is None:
            pytest.skip("ffmpeg is not installed")
        done = subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "f32le", "-ac", "1",
             "-ar", str(DECODE_RATE_HZ), "-"],
            capture_output=True, check=True,
        )  # fmt: skip
        return np.frombuffer(done.stdout, dtype="<f4"), DECODE_RATE_HZ
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    return samples.mean(axis=1), rate


def rms_dbfs(samples: np.ndarray) -> float:
    return float(20.0 * np.log10(np.sqrt(np.mean(np.square(samples, dtype=np.float64))) + 1e-12))


def docx_verses(path: Path) -> dict[int, str]:
    """Superscript digits open a verse, other superscript runs are footnote markers."""
    verses: dict[int, list[str]] = {}
    for paragraph in docx.Document(str(path)).paragraphs:
        if paragraph.style.name.startswith(("Heading", "Title", "Footnote")):
            continue
        number = None
        for run in paragraph.runs:
            if run.font.superscript:
                if run.text.strip().isdigit():
                    number = int(run.text)
                    verses[number] = []
            elif number is not None:
                verses[number].append(run.text)
    return {n: "".join(parts).strip() for n, parts in verses.items()}


def test_corpus_is_present_and_small():
    assert {p.parts[-3] for p in TRUTH_FILES} == set(LANGUAGES)
    for lang in LANGUAGES:
        assert len(list((DEMO / lang / "truth").glob("*.json"))) == CHAPTERS[lang]
    # The corpus itself (audio, texts, truth); the demo model beside it has its own size check.
    total_bytes = sum(p.stat().st_size for lang in LANGUAGES for p in (DEMO / lang).rglob("*") if p.is_file())
    assert total_bytes < 14_000_000


@pytest.mark.parametrize("audio", AUDIO_FILES, ids=lambda p: f"{p.parts[-3]}/{p.name}")
def test_every_audio_file_has_truth_and_docx(audio: Path):
    lang_dir = audio.parents[1]
    assert (lang_dir / "truth" / f"{audio.stem}.json").is_file()
    assert (lang_dir / "text" / f"{audio.stem}.docx").is_file()


@pytest.mark.parametrize("truth_path", TRUTH_FILES, ids=truth_id)
def test_truth_names_existing_files(truth_path: Path):
    truth = load_truth(truth_path)
    lang_dir = truth_path.parents[1]
    assert truth["recording"] == truth_path.stem
    assert truth["recording"].replace("_", "").isalnum() and truth["recording"].isascii()
    assert (lang_dir / truth["audio"]).is_file()
    assert (lang_dir / truth["text"]).is_file()


def test_each_language_mixes_mp3_of_two_bitrates_mp4_and_wav():
    for lang in LANGUAGES:
        suffixes = sorted(p.suffix for p in (DEMO / lang / "audio").iterdir())
        assert suffixes == [".mp3"] * (CHAPTERS[lang] - 2) + [".mp4", ".wav"], lang
        formats = [load_truth(p)["audio_format"] for p in (DEMO / lang / "truth").glob("*.json")]
        assert {f["bitrate"] for f in formats if f["container"] == "mp3"} == {"64k", "96k"}, lang


@pytest.mark.parametrize("audio", AUDIO_FILES, ids=lambda p: f"{p.parts[-3]}/{p.name}")
def test_audio_format(audio: Path):
    rate, channels = EXPECTED_FORMAT[audio.suffix]
    if audio.suffix == ".mp4":
        if shutil.which("ffprobe") is None:
            pytest.skip("ffprobe is not installed")
        done = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "a:0", "-of", "json",
             "-show_entries", "stream=codec_name,sample_rate,channels", str(audio)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        stream = json.loads(done.stdout)["streams"][0]
        assert (stream["codec_name"], int(stream["sample_rate"]), stream["channels"]) == ("aac", rate, channels)
        return
    info = sf.info(audio)
    assert (info.samplerate, info.channels) == (rate, channels)
    assert info.format == {".mp3": "MP3", ".wav": "WAV"}[audio.suffix]
    if audio.suffix == ".wav":
        assert info.subtype == "PCM_16"


@pytest.mark.parametrize("truth_path", TRUTH_FILES, ids=truth_id)
def test_truth_times_are_consistent(truth_path: Path):
    truth = load_truth(truth_path)
    heading, verses = truth["heading"], truth["verses"]
    assert truth["sample_rate_master"] == 22_050
    assert 45.0 <= truth["duration"] <= 120.0
    assert 8 <= len(verses) <= 20
    assert [v["number"] for v in verses] == list(range(1, len(verses) + 1))
    assert 0.5 - TIME_EPS_S <= heading["start"] < heading["end"] < verses[0]["start"]
    spans = [(heading["start"], heading["end"])] + [(v["start"], v["end"]) for v in verses]
    for start, end in spans:
        assert start < end
        for t in (start, end):  # exact master sample positions, rounded to 6 decimals
            assert abs(t * 22_050 - round(t * 22_050)) < 0.05
    for (_, prev_end), (next_start, _) in zip(spans[1:], spans[2:]):
        assert 0.3 - TIME_EPS_S <= next_start - prev_end <= 1.5 + TIME_EPS_S
    assert verses[-1]["end"] < truth["duration"]


@pytest.mark.parametrize("truth_path", TRUTH_FILES, ids=truth_id)
def test_audio_energy_matches_truth(truth_path: Path):
    """Speech where the truth puts verses, near-silence (noise floor only) in every pause."""
    truth = load_truth(truth_path)
    samples, rate = decoded_mono(truth_path.parents[1] / truth["audio"])
    assert abs(len(samples) / rate - truth["duration"]) < 0.025  # AAC may keep < 1 frame of padding

    def cut(start: float, end: float) -> np.ndarray:
        return samples[int(round(start * rate)) : int(round(end * rate))]

    spans = [(truth["heading"]["start"], truth["heading"]["end"])] + [(v["start"], v["end"]) for v in truth["verses"]]
    for start, end in spans:
        assert rms_dbfs(cut(start, end)) > SPEECH_MIN_DBFS, (start, end)
        assert rms_dbfs(cut(start, start + 0.02)) > GAP_MAX_DBFS  # speech really starts at start
        assert rms_dbfs(cut(end - 0.02, end)) > GAP_MAX_DBFS  # and lasts until end
    gaps = [(0.0, spans[0][0])] + [(a[1], b[0]) for a, b in zip(spans, spans[1:])]
    gaps.append((spans[-1][1], truth["duration"]))
    for start, end in gaps:
        assert rms_dbfs(cut(start, end)) < GAP_MAX_DBFS, (start, end)
    assert rms_dbfs(cut(*gaps[1])) > -80.0  # a noise floor, not digital silence


@pytest.mark.parametrize("truth_path", TRUTH_FILES, ids=truth_id)
def test_docx_verses_equal_truth(truth_path: Path):
    truth = load_truth(truth_path)
    path = truth_path.parents[1] / truth["text"]
    expected = {v["number"]: v["text"] for v in truth["verses"]}
    assert docx_verses(path) == expected

    paragraphs = docx.Document(str(path)).paragraphs
    styles = [p.style.name for p in paragraphs]
    assert styles[:2] == ["Title", "Heading 1"]
    assert "Heading 2" in styles  # a section heading the audio does not read
    section_titles = [p.text for p in paragraphs if p.style.name == "Heading 2"]
    assert not any(title in truth["heading"]["text"] for title in section_titles)
    assert truth["heading"]["text"] not in " ".join(expected.values())


def test_docx_has_footnotes_and_markers_somewhere():
    footnotes, markers = 0, 0
    for path in sorted(DEMO.glob("*/text/*.docx")):
        for paragraph in docx.Document(str(path)).paragraphs:
            if paragraph.style.name == "Footnote Text":
                assert paragraph.text.startswith(("a ", "* "))
                footnotes += 1
            markers += sum(1 for r in paragraph.runs if r.font.superscript and not r.text.strip().isdigit())
    assert footnotes >= 4 and markers >= 4


def test_texts_use_real_spelling():
    for truth_path in TRUTH_FILES:
        for verse in load_truth(truth_path)["verses"]:
            assert unicodedata.is_normalized("NFC", verse["text"])
            assert verse["text"] == verse["text"].strip() and "{" not in verse["text"]
    samoan = " ".join(v["text"] for p in DEMO.glob("samoan/truth/*.json") for v in load_truth(p)["verses"])
    assert "\u02bb" in samoan  # okina
    assert set("āēīōū") <= set(samoan)
    assert "'" not in samoan and "\u2018" not in samoan and "\u2019" not in samoan
    portuguese = " ".join(v["text"] for p in DEMO.glob("portuguese/truth/*.json") for v in load_truth(p)["verses"])
    assert set("ãçéêí") <= set(portuguese)
    tuvaluan = " ".join(v["text"] for p in DEMO.glob("tuvaluan/truth/*.json") for v in load_truth(p)["verses"])
    assert set(normalize_text(tuvaluan, TUVALUAN.code).replace(" ", "")) <= set(TUVALUAN.alphabet)
    assert "\u02bb" not in tuvaluan and "'" not in tuvaluan  # no okina in Tuvaluan spelling
    assert set("āēīōū") & set(tuvaluan)


def test_tuvaluan_chapters_are_lexically_distinct():
    """At least half of each Tuvaluan chapter's distinct words (normalized) occur in no other chapter."""
    words = {
        path.stem: set(normalize_text(" ".join(v["text"] for v in load_truth(path)["verses"]), TUVALUAN.code).split())
        for path in sorted((DEMO / "tuvaluan" / "truth").glob("*.json"))
    }
    assert len(words) == CHAPTERS["tuvaluan"]
    for rec, own in words.items():
        others = set().union(*(w for other, w in words.items() if other != rec))
        novel = len(own - others) / len(own)
        assert novel >= MIN_NOVEL_WORD_SHARE, f"{rec}: only {novel:.0%} of its {len(own)} words are its own"


def test_tuvaluan_is_not_a_demo_model_language():
    """The demo model stays as it is: Tuvaluan is a corpus language, read by a voice it never heard."""
    from tala.demo.text import LANGUAGES as MODEL_LANGUAGES

    assert TUVALUAN.code not in MODEL_LANGUAGES
    assert CORPUS_LANGUAGES["tuvaluan"].voice == TUVALUAN.voice == "haw+f3"
    assert all(load_truth(p)["voice"] == "haw+f3" for p in (DEMO / "tuvaluan" / "truth").glob("*.json"))


def test_truth_texts_match_generator_sources():
    """The committed truth was produced from the texts in the generator (no stale corpus)."""
    for lang in CORPUS_LANGUAGES.values():
        for chapter in lang.chapters:
            truth = load_truth(DEMO / lang.lang / "truth" / f"{chapter.rec}.json")
            assert truth["heading"]["text"] == chapter.spoken_heading
            assert [v["text"] for v in truth["verses"]] == [verse_text(v) for v in chapter.verses]


# ------------------------------------------------------------------ synthesis helpers


def test_trim_silence_finds_speech_edges():
    rate = speech.MASTER_RATE_HZ
    signal = np.zeros(rate, np.float32)
    signal[4_000:9_000] = 0.5 * np.sin(2 * np.pi * 220 * np.arange(5_000) / rate)
    signal[4_000] = 0.3  # the sine starts at zero; make the first speech sample non-silent
    trimmed, start, end = speech.trim_silence(signal)
    assert start == 4_000
    assert 8_990 <= end <= 9_000 and abs(signal[end - 1]) > 1e-3
    np.testing.assert_array_equal(trimmed, signal[start:end])
    with pytest.raises(ValueError):
        speech.trim_silence(np.zeros(100, np.float32))


def test_assemble_chapter_places_spans_and_pauses():
    rng = np.random.default_rng(0)
    tone = (0.8 * np.sin(np.arange(20_000) / 5.0)).astype(np.float32)
    chapter = demo_corpus.assemble_chapter(tone[:10_000], [tone] * 5, rng)
    rate = speech.MASTER_RATE_HZ
    assert 0.5 * rate <= chapter.heading.start <= 1.0 * rate
    assert all(s.end - s.start == 20_000 for s in chapter.verses)
    gaps = [(b.start - a.end) / rate for a, b in zip(chapter.verses, chapter.verses[1:])]
    assert all(0.3 - 1e-4 <= g <= 1.5 + 1e-4 for g in gaps)
    assert 20 * np.log10(np.max(np.abs(chapter.master))) == pytest.approx(-3.0, abs=0.1)
    silence = chapter.master[: chapter.heading.start]
    assert rms_dbfs(silence) == pytest.approx(-65.0, abs=1.0)


def test_remove_echo_undoes_a_fed_back_echo():
    rate = speech.MASTER_RATE_HZ
    dry = np.zeros(rate, np.float32)
    dry[1_000:5_000] = 0.8 * np.sin(np.arange(4_000) / 3.0)
    delay = 120 * rate // 1000
    wet = dry.copy()
    for n in range(delay, len(wet)):  # espeak-ng: y[n] = x[n] + amp/256 * y[n - d]
        wet[n] += np.float32(10 / 256) * wet[n - delay]
    np.testing.assert_allclose(speech.remove_echo(wet, 120, 10), dry, atol=1e-6)
    # The echo tail ends the wet utterance ~0.12 s + later; the dry one ends with the tone.
    assert speech.trim_silence(wet)[2] > 5_000 + delay
    assert speech.trim_silence(speech.remove_echo(wet, 120, 10), end_threshold_dbfs=-50.0)[2] <= 5_000


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_echo_voice_utterance_ends_with_its_speech():
    """haw+f3 echoes (120 ms, 10/256, fed back): the trimmed utterance drops the echo-only tail."""
    assert speech.voice_echo("haw+f3") == (120, 10)
    assert speech.voice_echo("haw") is None
    text = "Te Salamo ivagafulu mo te tasi."
    raw = speech.trim_silence(speech.synthesize(text, "haw+f3", 170))[0]
    kept = speech.speak_trimmed(text, "haw+f3", 170)
    assert 0.1 < (len(raw) - len(kept)) / speech.MASTER_RATE_HZ < 0.3  # one delay period and more
    assert rms_dbfs(kept[-441:]) > rms_dbfs(raw[-441:]) + 20


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_synthesize_speaks_the_corpus_voices():
    for text, voice in (("O le Atua o loʻu leoleo mamoe.", "haw"), ("No princípio era o Verbo.", "pt"),
                        ("Ko te Aliki toku sulufaiga.", "haw+f3")):
        samples = speech.synthesize(text, voice, speed=170)
        assert samples.dtype == np.float32 and samples.ndim == 1
        _, start, end = speech.trim_silence(samples)
        assert 0.5 < (end - start) / speech.MASTER_RATE_HZ < 5.0


@pytest.mark.slow
@pytest.mark.parametrize(("lang", "rec"), [("samoan", "PSA_121"), ("portuguese", "RUT_001"), ("tuvaluan", "GEN_002")])
def test_regenerating_a_chapter_gives_the_committed_bytes(lang, rec, tmp_path):
    """With the recorded tool versions, the generator reproduces a committed chapter (WAV; AAC in
    MP4; MP3) byte for byte: audio, DOCX, and the truth's times and texts."""
    for tool in ("espeak-ng", "ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    committed = load_truth(DEMO / lang / "truth" / f"{rec}.json")
    if demo_corpus.tool_versions() != committed["tool_versions"]:
        pytest.skip(f"other tool versions than the committed corpus's {committed['tool_versions']}")
    source = CORPUS_LANGUAGES[lang]
    one = dataclasses.replace(source, chapters=tuple(c for c in source.chapters if c.rec == rec))
    demo_corpus.generate_language(one, tmp_path, demo_corpus.DEFAULT_SEED)
    truth = load_truth(tmp_path / lang / "truth" / f"{rec}.json")
    for name in (truth["audio"], truth["text"]):
        assert (tmp_path / lang / name).read_bytes() == (DEMO / lang / name).read_bytes(), name
    assert truth == committed


def test_measure_lag_finds_a_shift():
    reference = np.random.default_rng(1).standard_normal(8_000).astype(np.float32)
    late = np.concatenate([np.zeros(37, np.float32), reference])
    lag, correlation = demo_corpus.measure_lag(late, reference, max_lag=200)
    assert lag == 37 and correlation > 0.99
    assert demo_corpus.measure_lag(reference, reference, max_lag=200)[0] == 0


def test_missing_espeak_is_one_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert demo_corpus.main(["--out", str(tmp_path / "demo")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: espeak-ng not found") and "\n" not in err
    assert not (tmp_path / "demo").exists()
