"""Training speech for the demo models: utterances of several sentences with natural pauses, read by
the demo's espeak-ng voices, with the demo's noise floor and codecs, written as 16 kHz clips and a
manifest per split.

Each utterance is planned from its own seeded stream (:func:`utterance_rng`), so a split does not
depend on how many worker processes synthesized it, and a split whose manifest is complete is not
made again.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tala.audio_io import SAMPLE_RATE
from tala.demo import DEMO_ROOT
from tala.demo.sentences import demo_ngrams, listed_words_sentence, narrative_sentence, overlaps_demo, random_sentence
from tala.demo.speech import (
    MASTER_RATE_HZ,
    AudioFormat,
    Synthesizer,
    level_with_noise_floor,
    speak_trimmed,
    synthesize,
    write_audio,
)
from tala.demo.text import LANGUAGES, normalize_text
from tala.fileio import atomic_path, read_jsonl, write_json_atomic, write_jsonl_atomic

SPEED_WPM = (115, 205)  # the demo reads at 130-177 wpm
PITCH = (30, 72)  # espeak's -p (default 50)
SENTENCE_PAUSE_S = (0.2, 1.5)
EDGE_SILENCE_S = (0.1, 1.5)
MAX_UTTERANCE_S = 25.0
NOISE_RMS_DBFS = (-68.0, -60.0)  # the demo: -65
PEAK_DBFS = (-6.0, -1.0)  # the demo: -3
# Stored as the demo stores chapters (then decoded with tala.audio.convert, as the workflow does).
CODECS = (("wav", None, 0.55), ("mp3", "64k", 0.15), ("mp3", "96k", 0.15), ("mp4", "48k", 0.15))


@dataclass(frozen=True)
class UtterancePlan:
    lang: str
    sentences: tuple[str, ...]
    speed_wpm: int
    pitch: int
    pauses_s: tuple[float, ...]  # between sentences
    lead_s: float
    trail_s: float
    peak_dbfs: float
    noise_dbfs: float
    codec: str  # "wav", "mp3", "mp4"
    bitrate: str | None
    noise_seed: int

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


def utterance_rng(seed: int, lang: str, split: str, index: int) -> np.random.Generator:
    """One stream per utterance, so the corpus does not depend on how many workers made it."""
    return np.random.default_rng([seed, zlib.crc32(f"{lang}/{split}".encode()), index])


def plan_utterance(lang: str, rng: np.random.Generator, banned: set[tuple[str, ...]],
                   sentence: Callable[[str, np.random.Generator], str] | None = None) -> UtterancePlan:
    """1-3 sentences mostly, 4-7 for a long one (10-25 s); rough length from the word count.
    ``sentence`` makes the sentences (default :func:`random_sentence`)."""
    sentence_source = sentence or random_sentence
    speed = int(rng.integers(SPEED_WPM[0], SPEED_WPM[1] + 1))
    n_sentences = int(rng.choice([1, 2, 3, 5, 7], p=[0.3, 0.3, 0.2, 0.12, 0.08]))
    sentences: list[str] = []
    words = 0
    budget_words = (MAX_UTTERANCE_S - 3.0) * speed / 60.0 * 0.85
    while len(sentences) < n_sentences:
        text = sentence_source(lang, rng)
        if overlaps_demo(text, lang, banned):
            continue
        n = len(text.split())
        if sentences and words + n > budget_words:
            break
        sentences.append(text)
        words += n
    codec_index = int(rng.choice(len(CODECS), p=[p for *_, p in CODECS]))
    return UtterancePlan(
        lang=lang,
        sentences=tuple(sentences),
        speed_wpm=speed,
        pitch=int(rng.integers(PITCH[0], PITCH[1] + 1)),
        pauses_s=tuple(float(rng.uniform(*SENTENCE_PAUSE_S)) for _ in sentences[1:]),
        lead_s=float(rng.uniform(*EDGE_SILENCE_S)),
        trail_s=float(rng.uniform(*EDGE_SILENCE_S)),
        peak_dbfs=float(rng.uniform(*PEAK_DBFS)),
        noise_dbfs=float(rng.uniform(*NOISE_RMS_DBFS)),
        codec=CODECS[codec_index][0],
        bitrate=CODECS[codec_index][1],
        noise_seed=int(rng.integers(2**31)),
    )


def plan_easy_utterance(lang: str, rng: np.random.Generator, banned: set[tuple[str, ...]]) -> UtterancePlan:
    """A curriculum utterance: one short sentence of listed words (no pseudo-words), little
    silence, moderate speed and pitch, no codec. A CTC model from scratch first learns here to
    tell letters apart; on the full data it stays on the all-blank plateau for thousands of steps."""
    while True:
        sentence = listed_words_sentence(lang, rng)
        if not overlaps_demo(sentence, lang, banned):
            break
    return UtterancePlan(
        lang=lang, sentences=(sentence,), speed_wpm=int(rng.integers(140, 186)), pitch=int(rng.integers(40, 61)),
        pauses_s=(), lead_s=float(rng.uniform(0.05, 0.3)), trail_s=float(rng.uniform(0.05, 0.3)), peak_dbfs=-3.0,
        noise_dbfs=-65.0, codec="wav", bitrate=None, noise_seed=int(rng.integers(2**31)),
    )  # fmt: skip


def render_master(plan: UtterancePlan, synth: Synthesizer = synthesize) -> np.ndarray:
    """The utterance at espeak-ng's 22.05 kHz, built like a demo chapter: each sentence trimmed
    and tapered, seeded pauses, peak normalization, white noise floor."""
    rate = MASTER_RATE_HZ
    voice = LANGUAGES[plan.lang].voice
    pieces = [np.zeros(int(plan.lead_s * rate), np.float32)]
    for i, sentence in enumerate(plan.sentences):
        if i:
            pieces.append(np.zeros(int(plan.pauses_s[i - 1] * rate), np.float32))
        pieces.append(speak_trimmed(sentence, voice, plan.speed_wpm, plan.pitch, synth))
    pieces.append(np.zeros(int(plan.trail_s * rate), np.float32))
    return level_with_noise_floor(np.concatenate(pieces), plan.peak_dbfs, plan.noise_dbfs,
                                  np.random.default_rng(plan.noise_seed))  # fmt: skip


def render_clip(plan: UtterancePlan, clip: Path) -> float:
    """Write the utterance as 16 kHz mono PCM16 WAV at ``clip``, through the planned codec and
    ``tala.audio.convert`` when it is a lossy one; returns the duration in seconds."""
    from tala.audio.convert import convert_file

    master = render_master(plan)
    if plan.codec == "wav":
        audio = soxr.resample(master, MASTER_RATE_HZ, SAMPLE_RATE).astype(np.float32)
        with atomic_path(clip) as tmp:
            sf.write(tmp, np.clip(audio, -1, 1), SAMPLE_RATE, format="WAV", subtype="PCM_16")
        return len(audio) / SAMPLE_RATE
    with tempfile.TemporaryDirectory(prefix="tala-demo-model-") as tmp_dir:
        coded = Path(tmp_dir) / f"utt.{plan.codec}"
        write_audio(master, AudioFormat(plan.codec, plan.bitrate), coded, np.random.default_rng(plan.noise_seed))
        return convert_file(coded, clip, progress=False).duration_s


def _make_one(job: tuple[int, str, str, int, Path]) -> dict:
    seed, lang, split, index, clip_dir = job
    rng, banned = utterance_rng(seed, lang, split, index), _BANNED[lang]
    if split == "easy":
        plan = plan_easy_utterance(lang, rng, banned)
    elif split in ("narrative", "narrative-valid"):
        plan = plan_utterance(lang, rng, banned, sentence=narrative_sentence)
    else:
        plan = plan_utterance(lang, rng, banned)
    clip = clip_dir / f"{split}-{index:06d}.wav"
    duration = render_clip(plan, clip)
    return {
        "audio": f"clips/{clip.name}",
        "text": normalize_text(plan.text, lang),
        "duration": round(duration, 4),
        "source_text": plan.text,
        "speed_wpm": plan.speed_wpm,
        "pitch": plan.pitch,
        "codec": plan.codec if plan.bitrate is None else f"{plan.codec}-{plan.bitrate}",
    }


_BANNED: dict[str, set[tuple[str, ...]]] = {}


def _init_worker(banned: dict[str, set[tuple[str, ...]]]) -> None:
    global _BANNED
    _BANNED = banned
    # Each worker synthesizes on one core; torch is not used here.
    os.environ["OMP_NUM_THREADS"] = "1"


def synthesize_split(out: Path, lang: str, split: str, count: int, seed: int, workers: int,
                     demo_root: Path = DEMO_ROOT) -> Path:
    """Synthesize ``count`` utterances into ``out/clips`` and write ``out/<split>.jsonl`` (the HF
    "json" dataset layout: audio path relative to the manifest, normalized text, duration)."""
    from tqdm import tqdm

    manifest = out / f"{split}.jsonl"
    if manifest.exists() and len(read_jsonl(manifest)) == count:
        return manifest
    clip_dir = out / "clips"
    clip_dir.mkdir(parents=True, exist_ok=True)
    banned = {lang: demo_ngrams(demo_root, lang)}
    jobs = [(seed, lang, split, i, clip_dir) for i in range(count)]
    started = time.perf_counter()
    bar = tqdm(total=count, desc=f"synthesize {lang}/{split}", unit="utt", file=sys.stderr, mininterval=5.0)
    records = []
    if workers > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(banned,)) as pool:
            for record in pool.imap(_make_one, jobs, chunksize=8):
                records.append(record)
                bar.update()
    else:
        _init_worker(banned)
        for job in jobs:
            records.append(_make_one(job))
            bar.update()
    bar.close()
    write_json_atomic(out / f"{split}.stats.json", {
        "utterances": count, "seconds": round(sum(r["duration"] for r in records), 1),
        "synthesis_wall_s": round(time.perf_counter() - started, 1), "workers": workers, "seed": seed,
        "voice": LANGUAGES[lang].voice,
    })  # fmt: skip
    write_jsonl_atomic(manifest, records)
    return manifest
