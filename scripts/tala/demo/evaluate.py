"""Score a demo model on the demo chapters, as the workflow will read them: each chapter converted
to 16 kHz mono with ``tala.audio.convert``, the model loaded with ``from_pretrained`` +
``load_adapter``, greedy CTC decoding (``tala.ctc_text``).

Two ways of cutting a chapter: 30 s windows with 2 s of context on each side (the transcribe step's
way), and plain consecutive 30 s windows. Characters are assigned to verses by their frame time
(cuts in the middle of each pause; the spoken heading before the first verse is left out), and the
CER per chapter counts all verses' edits over all verses' characters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from tala.audio_io import SAMPLE_RATE
from tala.ctc_text import CtcVocabulary, cer, error_rates, greedy_spans, timed_chars
from tala.demo.text import LANGUAGES, demo_truths, normalize_text

if TYPE_CHECKING:
    import torch

FRAME_S = 0.02  # 320 samples at 16 kHz
WINDOW_S = 30.0
CONTEXT_S = 2.0
MODES = {"window_30s_context_2s": (WINDOW_S, CONTEXT_S), "fixed_30s": (WINDOW_S, 0.0)}


def load_demo_model(folder: str | Path, lang: str):
    """``(model, processor)`` the way the transcribe step loads an MMS model."""
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    model = Wav2Vec2ForCTC.from_pretrained(str(folder))
    model.load_adapter(lang)
    processor = Wav2Vec2Processor.from_pretrained(str(folder))
    processor.tokenizer.set_target_lang(lang)
    model.eval()
    return model, processor


def window_logits(model, feature_extractor, samples: np.ndarray) -> "torch.Tensor":
    import torch

    inputs = feature_extractor(samples, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True)
    with torch.inference_mode():
        return model(**inputs).logits[0].float()


def chapter_logits(model, feature_extractor, samples: np.ndarray, window_s: float = WINDOW_S,
                   context_s: float = CONTEXT_S) -> list[tuple[float, "torch.Tensor"]]:
    """``(start time, logits)`` per window core: each core of ``window_s`` is run with up to
    ``context_s`` of audio on each side, and only the core's frames are kept."""
    total = len(samples)
    core, context = int(window_s * SAMPLE_RATE), int(context_s * SAMPLE_RATE)
    pieces = []
    for core_start in range(0, total, core):
        core_end = min(total, core_start + core)
        lo, hi = max(0, core_start - context), min(total, core_end + context)
        logits = window_logits(model, feature_extractor, samples[lo:hi])
        first = int(round((core_start - lo) / SAMPLE_RATE / FRAME_S))
        last = min(len(logits), int(round((core_end - lo) / SAMPLE_RATE / FRAME_S)))
        pieces.append((core_start / SAMPLE_RATE, logits[first:last]))
    return pieces


def windows_timed_chars(pieces: Sequence[tuple[float, "torch.Tensor"]],
                        vocabulary: CtcVocabulary) -> list[tuple[str, float]]:
    """Greedy CTC over the windows: ``(character, onset in seconds)``, the word delimiter as a
    space. Each window is decoded on its own (a token at a window edge starts anew), and each
    window ends with a space: a window edge is no word."""
    chars = []
    for start_s, logits in pieces:
        chars += timed_chars(greedy_spans(logits, vocabulary), vocabulary, FRAME_S, start_s)
        chars.append((" ", start_s + len(logits) * FRAME_S))
    return chars


def verse_hypotheses(chars: Sequence[tuple[str, float]], truth: dict) -> list[str]:
    """The decoded text of each verse: characters between the middles of the surrounding pauses."""
    verses = truth["verses"]
    cuts = [(truth["heading"]["end"] + verses[0]["start"]) / 2]
    cuts += [(a["end"] + b["start"]) / 2 for a, b in zip(verses, verses[1:])]
    cuts.append(float("inf"))
    texts = []
    for lo, hi in zip(cuts, cuts[1:]):
        texts.append(" ".join("".join(ch for ch, t in chars if lo <= t < hi).split()))
    return texts


def chapter_wav(demo_root: Path, lang: str, truth: dict, cache: Path) -> Path:
    """The chapter's audio converted to 16 kHz mono under ``cache`` (once)."""
    from tala.audio.convert import convert_file

    wav = cache / LANGUAGES[lang].name / f"{truth['recording']}.wav"
    if not wav.exists():
        convert_file(demo_root / LANGUAGES[lang].name / truth["audio"], wav, progress=False)
    return wav


def score_chapter(model, processor, lang: str, wav: Path, truth: dict, window_s: float = WINDOW_S,
                  context_s: float = CONTEXT_S) -> dict:
    """Greedy CER of one chapter's verses (edits over reference characters), and WER."""
    samples, rate = sf.read(wav, dtype="float32")
    assert rate == SAMPLE_RATE, wav
    vocabulary = CtcVocabulary.from_token_ids(processor.tokenizer.vocab[lang])
    pieces = chapter_logits(model, processor.feature_extractor, samples, window_s, context_s)
    hyps = verse_hypotheses(windows_timed_chars(pieces, vocabulary), truth)
    refs = [normalize_text(v["text"], lang) for v in truth["verses"]]
    rates = error_rates(refs, hyps)
    return {
        "cer": round(rates["cer"], 5),
        "char_edits": rates["char_edits"],
        "ref_chars": rates["ref_chars"],
        "wer": round(rates["wer"], 5),
        "verses": [{"number": v["number"], "ref": r, "hyp": h, "cer": round(cer(r, h), 4)}
                   for v, r, h in zip(truth["verses"], refs, hyps)],  # fmt: skip
    }


def evaluate_demo(model_dir: Path, demo_root: Path, cache: Path, langs: Iterable[str] = tuple(LANGUAGES)) -> dict:
    """CER per demo chapter for two ways of windowing (:data:`MODES`); the workflow's transcribe
    step does the first."""
    import torch

    torch.manual_seed(0)
    modes = {mode: {"window_s": window_s, "context_s": context_s} for mode, (window_s, context_s) in MODES.items()}
    report: dict = {"model": str(model_dir), "modes": modes, "chapters": []}
    for lang in langs:
        model, processor = load_demo_model(model_dir, lang)
        for truth in demo_truths(demo_root, lang):
            wav = chapter_wav(demo_root, lang, truth, cache)
            entry = {"lang": lang, "language": LANGUAGES[lang].name, "recording": truth["recording"],
                     "audio": f"{LANGUAGES[lang].name}/{truth['audio']}", "duration_s": truth["duration"],
                     "speed_wpm": truth["speed"]}  # fmt: skip
            for mode, (window_s, context_s) in MODES.items():
                entry[mode] = score_chapter(model, processor, lang, wav, truth, window_s, context_s)
            report["chapters"].append(entry)
    for mode in MODES:
        edits = sum(c[mode]["char_edits"] for c in report["chapters"])
        chars = sum(c[mode]["ref_chars"] for c in report["chapters"])
        report.setdefault("summary", {})[mode] = {
            "cer_all": round(edits / chars, 5),
            "cer_max_chapter": max(c[mode]["cer"] for c in report["chapters"]),
        }
    return report


def print_eval(report: dict) -> None:
    modes = list(report["modes"])
    print(f"{'chapter':24s}" + "".join(f"{m:>26s}" for m in modes))
    for c in report["chapters"]:
        print(f"{c['language'] + '/' + c['recording']:24s}" + "".join(f"{100 * c[m]['cer']:25.2f}%" for m in modes))
    print(f"{'all':24s}" + "".join(f"{100 * report['summary'][m]['cer_all']:25.2f}%" for m in modes))


# --------------------------------------------------------------------------- recognizers of clips


def verse_clips(samples: np.ndarray, truth: dict) -> list[tuple[int, np.ndarray, str]]:
    """Each verse's audio, cut in the middle of the pauses around it (the spoken heading left out),
    with its text: clips as the dataset cuts them."""
    verses = truth["verses"]
    cuts = [(truth["heading"]["end"] + verses[0]["start"]) / 2]
    cuts += [(a["end"] + b["start"]) / 2 for a, b in zip(verses, verses[1:])]
    cuts.append(min(len(samples) / SAMPLE_RATE, verses[-1]["end"] + 0.5))
    return [(v["number"], samples[int(lo * SAMPLE_RATE): int(hi * SAMPLE_RATE)], v["text"])
            for v, lo, hi in zip(verses, cuts, cuts[1:])]  # fmt: skip


def evaluate_verses(recognizer, model: str, demo_root: Path, cache: Path, langs: Iterable[str],
                    truths: Sequence[dict] | None = None) -> dict:
    """CER and WER of a clip recognizer's transcripts (``recognizer.transcribe(samples)``, as
    evaluate_asr's recognizers give them) of every verse of the demo chapters (or of ``truths``'),
    per chapter and per language."""
    from tala.ctc_text import normalize_for_scoring

    report: dict = {"model": model, "unit": "verse clips (cut in the middle of the pauses)", "chapters": []}
    for lang in langs:
        refs_all, hyps_all = [], []
        for truth in demo_truths(demo_root, lang) if truths is None else truths:
            samples, _ = sf.read(chapter_wav(demo_root, lang, truth, cache), dtype="float32")
            refs, hyps = [], []
            for _, clip, text in verse_clips(samples, truth):
                refs.append(normalize_for_scoring(normalize_text(text, lang)))
                hyps.append(recognizer.transcribe(clip))
            rates = error_rates(refs, hyps)
            report["chapters"].append({"lang": lang, "recording": truth["recording"], "verses": len(refs),
                                       "cer": round(rates["cer"], 5), "wer": round(rates["wer"], 5),
                                       "example": {"ref": refs[0], "hyp": hyps[0]}})  # fmt: skip
            refs_all += refs
            hyps_all += hyps
        rates = error_rates(refs_all, hyps_all)
        report.setdefault("summary", {})[lang] = {"cer": round(rates["cer"], 5), "wer": round(rates["wer"], 5),
                                                  "verses": len(refs_all)}  # fmt: skip
    return report


def stage_log(folder: Path) -> Path:
    """The training log of the recipe stage that wrote ``folder``: the shared training core's, with
    its wall times, in the stage's checkpoint folder (kept by the recipes)."""
    from tala.training import LOG_FILE, checkpoint_root

    return checkpoint_root(folder) / LOG_FILE


def log_elapsed(log: Path) -> float:
    """The training time a training_log.jsonl records (its last ``elapsed_s``)."""
    from tala.fileio import read_jsonl

    if not Path(log).exists():
        return 0.0
    timed = [record for _, record in read_jsonl(log) if "elapsed_s" in record]
    return timed[-1]["elapsed_s"] if timed else 0.0


def safetensors_parameters(folder: Path, files: dict[str, str]) -> dict[str, int]:
    """Parameters per named safetensors file of ``folder``."""
    from safetensors import safe_open

    counts = {}
    for name, path in files.items():
        with safe_open(str(Path(folder) / path), "pt") as handle:
            counts[name] = sum(int(np.prod(handle.get_slice(k).get_shape())) for k in handle.keys())
    return counts
