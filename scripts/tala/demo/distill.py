"""Distil the demo CTC model into another recognizer's encoder (the demo stand-ins' first stage).

A Whisper or Moonshine encoder trained from scratch with CTC sits on CTC's all-blank plateau for
thousands of steps on 2 CPU cores (the demo CTC model needed a curriculum and 13,000 steps). The demo
CTC model (``resources/demo/model``, trained by ``make demo-model`` on the same kind of speech) gives
a dense target for every 20 ms frame instead: its posteriors over the language's characters
(:func:`stage_teacher`). The student (an encoder and one linear CTC head per language, the heads
dropped afterwards) learns them by KL divergence, frame by frame: its frame ``g`` of an utterance
(``hop`` samples a frame: Whisper 320, Moonshine 384) is the teacher's frame ``round(g * hop / 320)``.

The student sees 30 s windows filled with several utterances of one language, each starting on a
sample where both frame grids meet (``align`` teacher frames), so no step pays for 20 s of padding.
Resumable (the shared training core); validation CER is greedy CTC through the student's head.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tala.fileio import atomic_dir, atomic_path, read_jsonl

SAMPLE_RATE = 16_000
TEACHER_HOP = 320  # samples per wav2vec2 frame
WINDOW = 30 * SAMPLE_RATE


def records_of(manifest: Path) -> list[dict]:
    return [record for _, record in read_jsonl(manifest)]


def greedy_word_times(logp: np.ndarray, text: str, chars: dict[int, str], blank: int) -> list[tuple[float, float]]:
    """Each word of ``text``: [start, end] seconds. The teacher's greedy path gives each character
    it emits a frame (CTC's peak); the path's string is matched to the text (difflib), the text's
    characters it does not match take times interpolated between their neighbours'; a word runs
    from its first character's frame to just after its last."""
    from difflib import SequenceMatcher

    path = logp.argmax(-1).tolist()
    emitted, frames, previous = [], [], blank
    for frame, token in enumerate(path):
        if token != previous and token != blank and token in chars:
            emitted.append(chars[token])
            frames.append(frame)
        previous = token
    known_at, known_frame = [], []
    for block in SequenceMatcher(None, "".join(emitted), text, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            known_at.append(block.b + k)
            known_frame.append(frames[block.a + k])
    if not known_at:
        return []
    at = np.interp(np.arange(len(text)), known_at, known_frame)
    step = TEACHER_HOP / SAMPLE_RATE
    words = [m.span() for m in re.finditer(r"\S+", text)]
    return [(round(float(at[a]) * step, 3), round((float(at[b - 1]) + 1) * step, 3)) for a, b in words]


def stage_word_times(work: Path, manifests: dict, targets: dict, teacher: Path, split: str = "train") -> dict:
    """Per language, the split's manifest with ``word_times`` (:func:`greedy_word_times`) on each
    utterance -> ``<work>/data/<lang>/<split>.timed.jsonl``."""
    vocab = json.loads((Path(teacher) / "vocab.json").read_text(encoding="utf-8"))
    timed: dict[str, Path] = {}
    for lang in manifests:
        out = manifests[lang][split].with_name(f"{split}.timed.jsonl")
        timed[lang] = out
        if out.exists():
            continue
        blank = vocab[lang]["<pad>"]
        chars = {i: (" " if c == "|" else c) for c, i in vocab[lang].items() if len(c) == 1}
        posteriors = np.load(targets[lang][split])
        offsets, logp = posteriors["offsets"], posteriors["logp"]
        rows, matched = [], 0
        for i, record in enumerate(records_of(manifests[lang][split])):
            times = greedy_word_times(logp[offsets[i] : offsets[i + 1]].astype(np.float32), record["text"], chars,
                                      blank)  # fmt: skip
            if times and all(a <= b for a, b in times):
                record = {**record, "word_times": [list(t) for t in times]}
                matched += 1
            rows.append(json.dumps(record, ensure_ascii=False) + "\n")
        with atomic_path(out) as tmp:
            Path(tmp).write_text("".join(rows), encoding="utf-8")
        print(f"{out}: word times for {matched} of {len(rows)} utterances", file=sys.stderr)
    return timed


def chunk_words(word_times: list, rng: np.random.Generator, fewest: int, most: int) -> list[tuple[int, int]]:
    """Consecutive word ranges ``[a, b)`` of ``fewest``..``most`` words (a shorter last one)."""
    ranges, a = [], 0
    while a < len(word_times):
        b = min(len(word_times), a + int(rng.integers(fewest, most + 1)))
        ranges.append((a, b))
        a = b
    return ranges


def derived_manifests(timed: dict, name: str, rows_of: Callable[[str, Path, Path], list[dict]]) -> dict[str, Path]:
    """Per language, ``<name>.jsonl`` beside its timed manifest, its clips in ``<name>/``: the records
    ``rows_of(lang, manifest, folder)`` returns (it writes the clips, :func:`write_clip`), the
    manifest written whole last; a language whose manifest exists is skipped."""
    out: dict[str, Path] = {}
    for lang, manifest in timed.items():
        target = manifest.with_name(f"{name}.jsonl")
        out[lang] = target
        if target.exists():
            continue
        folder = manifest.parent / name
        folder.mkdir(exist_ok=True)
        rows = rows_of(lang, manifest, folder)
        with atomic_path(target) as tmp:
            Path(tmp).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        print(f"{target}: {len(rows)} clips", file=sys.stderr)
    return out


def write_clip(path: Path, samples: np.ndarray) -> None:
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(tmp, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")


def stage_chunks(timed: dict, seed: int, fewest: int = 3, most: int = 10) -> dict[str, Path]:
    """The middle of the curriculum: every timed training utterance cut between words into clips of
    ``fewest``..``most`` words (each cut halfway through the pause between two words), their word
    times moved with them -> ``<work>/data/<lang>/chunks.jsonl`` and ``chunks/``."""

    def rows_of(lang: str, manifest: Path, folder: Path) -> list[dict]:
        rng = np.random.default_rng([seed, len(lang), sum(map(ord, lang))])
        rows = []
        for i, record in enumerate(records_of(manifest)):
            times, words = record.get("word_times"), record["text"].split()
            if not times:
                continue
            samples = read_clip(manifest, record)
            end_s = len(samples) / SAMPLE_RATE
            for a, b in chunk_words(times, rng, fewest, most):
                start = 0.0 if a == 0 else (times[a - 1][1] + times[a][0]) / 2
                stop = end_s if b == len(times) else (times[b - 1][1] + times[b][0]) / 2
                clip = samples[int(start * SAMPLE_RATE) : int(stop * SAMPLE_RATE)]
                name = f"{folder.name}/{i:06d}-{a:03d}.wav"
                write_clip(manifest.parent / name, clip)
                shifted = [[round(max(0.0, x - start), 3), round(max(0.0, y - start), 3)] for x, y in times[a:b]]
                rows.append({"audio": name, "text": " ".join(words[a:b]), "duration": round(len(clip) / SAMPLE_RATE, 4),
                             "word_times": shifted})  # fmt: skip
        return rows

    return derived_manifests(timed, "chunks", rows_of)


def join_groups(durations: list[float], rng: np.random.Generator, shortest_s: float,
                longest_s: float) -> list[list[int]]:
    """Every utterance once, in a seeded order, grouped so that each group lasts at least a target
    drawn from ``shortest_s``..``longest_s`` and never more than ``longest_s`` (an utterance that
    would pass it starts the next group; one longer than ``longest_s`` alone is left out)."""
    groups, current, total = [], [], 0.0
    target = float(rng.uniform(shortest_s, longest_s))
    for index in rng.permutation(len(durations)):
        d = float(durations[index])
        if d > longest_s:
            continue
        if current and total + d > longest_s:
            groups.append(current)
            current, total, target = [], 0.0, float(rng.uniform(shortest_s, longest_s))
        current.append(int(index))
        total += d
        if total >= target:
            groups.append(current)
            current, total, target = [], 0.0, float(rng.uniform(shortest_s, longest_s))
    if current:
        groups.append(current)
    return groups


def stage_joined(timed: dict, seed: int, shortest_s: float = 15.0, longest_s: float = 29.0) -> dict[str, Path]:
    """Long clips for the end of the curriculum: the timed training utterances joined end to end
    (each keeps its own lead and trail silence, so a pause falls between them) into clips of
    ``shortest_s``..``longest_s`` (:func:`join_groups`), the texts joined, the word times moved with
    them -> ``<work>/data/<lang>/joined.jsonl`` and ``joined/``. A decoder that rarely saw 25 s and
    60 words stops early on them (the demo chapters' clips are 6-20 s of up to 70 words)."""

    def rows_of(lang: str, manifest: Path, folder: Path) -> list[dict]:
        records = [r for r in records_of(manifest) if r.get("word_times")]
        rng = np.random.default_rng([seed, 7, sum(map(ord, lang))])
        rows = []
        for n, group in enumerate(join_groups([r["duration"] for r in records], rng, shortest_s, longest_s)):
            pieces, texts, times, offset = [], [], [], 0.0
            for index in group:
                samples = read_clip(manifest, records[index])
                pieces.append(samples)
                texts.append(records[index]["text"])
                times += [[round(a + offset, 3), round(b + offset, 3)] for a, b in records[index]["word_times"]]
                offset += len(samples) / SAMPLE_RATE
            name = f"{folder.name}/{n:06d}.wav"
            write_clip(manifest.parent / name, np.concatenate(pieces))
            rows.append({"audio": name, "text": " ".join(texts), "duration": round(offset, 4), "word_times": times})
        return rows

    return derived_manifests(timed, "joined", rows_of)


def read_clip(manifest: Path, record: dict) -> np.ndarray:
    import soundfile as sf

    samples, rate = sf.read(manifest.parent / record["audio"], dtype="float32")
    if rate != SAMPLE_RATE:
        raise ValueError(f"{manifest}: {record['audio']} is {rate} Hz, not {SAMPLE_RATE}")
    return samples


def stage_teacher(work: Path, manifests: dict, teacher: Path) -> dict[str, dict[str, Path]]:
    """Per utterance, the teacher's log-posteriors over its language's characters (float16, all
    utterances of a split in one array; ``offsets[i]:offsets[i+1]`` are utterance ``i``'s frames)."""
    import torch
    from tqdm import tqdm

    from tala.demo.evaluate import load_demo_model

    targets: dict[str, dict[str, Path]] = {}
    for lang, splits in manifests.items():
        model = processor = None
        for split, manifest in splits.items():
            out = work / "teacher" / lang / f"{split}.npz"
            targets.setdefault(lang, {})[split] = out
            if out.exists():
                continue
            if model is None:
                model, processor = load_demo_model(teacher, lang)
            records = records_of(manifest)
            pieces, offsets = [], [0]
            for record in tqdm(records, desc=f"teacher {lang}/{split}", unit="utt", file=sys.stderr, mininterval=10):
                inputs = processor.feature_extractor(read_clip(manifest, record), sampling_rate=SAMPLE_RATE,
                                                     return_tensors="pt")  # fmt: skip
                with torch.inference_mode():
                    logits = model(inputs.input_values).logits[0]
                pieces.append(torch.log_softmax(logits.float(), -1).numpy().astype(np.float16))
                offsets.append(offsets[-1] + len(pieces[-1]))
            with atomic_path(out) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, logp=np.concatenate(pieces), offsets=np.asarray(offsets, np.int64))
    return targets


@dataclass(frozen=True)
class Placed:
    """An utterance in a window: its index in its split, its first teacher frame in the window,
    its teacher frames."""

    index: int
    frame: int
    frames: int


@dataclass(frozen=True)
class Window:
    lang: str
    placed: tuple[Placed, ...]


def pack_windows(lang: str, offsets: np.ndarray, rng: np.random.Generator, align: int = 1) -> list[Window]:
    """Utterances of one language in a random order, packed greedily into 30 s windows (1500
    teacher frames), each starting on a multiple of ``align`` teacher frames."""
    lengths = np.diff(offsets)
    capacity = WINDOW // TEACHER_HOP
    windows, current, used = [], [], 0
    for index in rng.permutation(len(lengths)):
        n = int(lengths[index]) + 1  # +1: the teacher drops the last partial frame
        if n > capacity:
            continue
        if used + n > capacity:
            windows.append(Window(lang, tuple(current)))
            current, used = [], 0
        current.append(Placed(int(index), used, int(lengths[index])))
        used = -(-(used + n) // align) * align
    if current:
        windows.append(Window(lang, tuple(current)))
    return windows


def window_audio(window: Window, manifest: Path, records: list[dict]) -> np.ndarray:
    audio = np.zeros(WINDOW, np.float32)
    for placed in window.placed:
        start = placed.frame * TEACHER_HOP
        clip = read_clip(manifest, records[placed.index])[: WINDOW - start]
        audio[start: start + len(clip)] = clip
    return audio


@dataclass(frozen=True)
class Student:
    """The encoder being distilled: ``build()`` makes it (and whatever is saved with it), ``hidden``
    maps a batch of 16 kHz audio arrays (all the same length) to (batch, frames, dim), ``save``
    writes the result into a folder."""

    name: str
    hop: int  # samples per student frame
    align: int  # teacher frames between possible utterance starts: where both grids meet
    dim: int
    build: Callable[[], object]  # -> the module (or model) holding the encoder
    encoder_of: Callable[[object], object]
    hidden: Callable[[object, list[np.ndarray]], object]
    save: Callable[[object, Path], None]
    start: str | None = None  # the folder ``build`` loads the model from; None: random weights


@dataclass(frozen=True)
class DistillSettings:
    steps: int
    lr: float
    warmup: int
    windows_per_batch: int
    weight_decay: float = 0.01
    decay: str = "cosine"  # the learning rate after the warm-up: cosine, linear or constant
    min_lr_ratio: float = 0.02
    eval_every: int = 200  # steps; 0: only the final weights are evaluated (and kept)
    checkpoint_every: int = 100
    log_every: int = 25
    # Where each frame is: a linear head regresses each frame's time from the start of its input
    # (seconds / 30, squared error) beside the KL, with this weight; 0: no such head. Rotary
    # attention alone leaves a Moonshine encoder's output without it, and a decoder reading through
    # cross-attention (which has no positions of its own) cannot then keep its place.
    position_weight: float = 0.0
    # Each batch's windows cut to one length drawn from this range (seconds, on the grid both frame
    # rates share), so that the time cannot be read off the distance to the window's end; None:
    # whole 30 s windows.
    cut_seconds: tuple[float, float] | None = None
    # The first steps train only the heads, the encoder frozen (a stage that starts from a saved
    # encoder, whose heads were dropped, fits them first), at ``heads_lr`` (None: ``lr``).
    heads_steps: int = 0
    heads_lr: float | None = None


def student_frames(placed: Placed, hop: int, total: int) -> tuple[int, np.ndarray]:
    """The student's first frame of an utterance in its window and, for each of its frames that
    fall in the window, the teacher frame it learns."""
    first = placed.frame * TEACHER_HOP // hop
    count = min(placed.frames * TEACHER_HOP // hop, total - first)
    teacher = np.minimum(np.rint(np.arange(count) * hop / TEACHER_HOP).astype(np.int64), placed.frames - 1)
    return first, teacher


def distill(out: Path, manifests: dict, targets: dict, teacher: Path, student: Student, settings: DistillSettings,
            seed: int, settings_record: dict, progress: bool = True) -> Path:
    """Train the student's encoder on the teacher's posteriors; ``student.save`` writes it into
    ``out`` (whole or not at all) with ``distillation.json`` (the final validation CER/WER)."""
    import torch

    from tala.ctc_text import CtcVocabulary, error_rates, greedy_text
    from tala.training import (Cadence, Evaluation, StepResult, checkpoint_root, new_position, resume,
                               run_keeping_best, warmup_decay_schedule)  # fmt: skip

    vocab = json.loads((teacher / "vocab.json").read_text(encoding="utf-8"))
    langs = list(manifests)
    vocabularies = {lang: CtcVocabulary.from_token_ids(vocab[lang]) for lang in langs}
    torch.manual_seed(seed)
    built = student.build()
    encoder = student.encoder_of(built)
    heads = torch.nn.ModuleDict({lang: torch.nn.Linear(student.dim, len(vocab[lang])) for lang in langs})
    parts = {"encoder": encoder, "heads": heads}
    timed = settings.position_weight > 0
    if timed:
        parts["position"] = torch.nn.Linear(student.dim, 1)
    module = torch.nn.ModuleDict(parts)
    records = {lang: records_of(manifests[lang]["train"]) for lang in langs}
    teacher_data = {lang: np.load(targets[lang]["train"]) for lang in langs}
    logp = {lang: teacher_data[lang]["logp"] for lang in langs}
    offsets = {lang: teacher_data[lang]["offsets"] for lang in langs}
    grid = int(np.lcm(student.hop, TEACHER_HOP))  # samples where both frame grids meet

    # The windows of the epoch being trained: the core asks for an epoch's batches when it starts
    # it (after the last step of the one before), so the step reads them from here.
    epoch_windows: list[Window] = []

    def batches_of_epoch(epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([seed, epoch])
        windows = [w for lang in langs for w in pack_windows(lang, offsets[lang], rng, student.align)]
        epoch_windows[:] = [windows[i] for i in rng.permutation(len(windows))]
        n = settings.windows_per_batch
        return [list(range(i, min(i + n, len(windows)))) for i in range(0, len(windows), n)]

    encoder_params = list(encoder.parameters())
    head_params = [p for name, part in parts.items() if name != "encoder" for p in part.parameters()]
    params = encoder_params + head_params
    groups = [{"params": encoder_params}, {"params": head_params, "lr": settings.heads_lr or settings.lr}]
    optimizer = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = warmup_decay_schedule(optimizer, settings.warmup, settings.steps, settings.decay,
                                      settings.min_lr_ratio)  # fmt: skip
    modules, states = {"student": module}, {"optimizer": optimizer, "scheduler": scheduler}
    root = checkpoint_root(out)
    root.mkdir(parents=True, exist_ok=True)
    fresh = new_position(settings={**settings_record, "seed": seed})
    resumed = resume(root, fresh, modules, states, match=("settings",),
                     start={"model": f"{student.name} ({student.start or 'random weights'})", "teacher": str(teacher),
                            "parameters": sum(p.numel() for p in encoder.parameters())})  # fmt: skip
    module.train()

    def window_length(step: int) -> int:
        """The samples of this step's windows: all 30 s, or one seeded length on the grid."""
        if settings.cut_seconds is None:
            return WINDOW
        low, high = settings.cut_seconds
        seconds = np.random.default_rng([seed, 1, step]).uniform(low, high)
        return max(grid, int(seconds * SAMPLE_RATE) // grid * grid)

    def train_step(index: list[int]) -> StepResult:
        step = scheduler.last_epoch  # the steps taken before this one (restored on resume)
        windows = [epoch_windows[i] for i in index]
        length = window_length(step)
        audio = [window_audio(w, manifests[w.lang]["train"], records[w.lang])[:length] for w in windows]
        with torch.set_grad_enabled(step >= settings.heads_steps):
            hidden = student.hidden(encoder, audio)
        total = min(hidden.shape[1], length // student.hop)  # frames wholly inside the cut
        kl, frames = hidden.new_zeros(()), 0
        for lang in langs:
            rows, wanted = [], []
            for b, window in enumerate(windows):
                if window.lang != lang:
                    continue
                for placed in window.placed:
                    first, teacher_frames = student_frames(placed, student.hop, total)
                    if len(teacher_frames) == 0:
                        continue
                    rows.append(hidden[b, first: first + len(teacher_frames)])
                    start = int(offsets[lang][placed.index])
                    wanted.append(torch.from_numpy(logp[lang][start + teacher_frames].astype(np.float32)))
            if not rows:
                continue
            student_logp = torch.log_softmax(heads[lang](torch.cat(rows)), -1)
            teacher_logp = torch.cat(wanted)
            kl = kl + (teacher_logp.exp() * (teacher_logp - student_logp)).sum()
            frames += len(teacher_logp)
        loss = kl / max(frames, 1)
        losses = {"loss": loss.detach().item()}
        if timed:
            error = module["position"](hidden[:, :total]).squeeze(-1) - frame_times(total)
            time_mse = (error**2).mean()
            loss = loss + settings.position_weight * time_mse
            losses["time_mse"] = time_mse.detach().item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        stepping = bool(torch.isfinite(grad_norm))
        if stepping:
            optimizer.step()
        scheduler.step()
        audio_s = sum(p.frames for w in windows for p in w.placed) * TEACHER_HOP / SAMPLE_RATE
        return StepResult(losses, {"lr": scheduler.get_last_lr()[0], "grad_norm": round(float(grad_norm), 4)},
                          audio_s=min(audio_s, len(windows) * length / SAMPLE_RATE), skipped=not stepping)  # fmt: skip

    def frame_times(frames: int) -> "torch.Tensor":
        """Each frame's time from the start of its input, in units of 30 s (the position head's target)."""
        return torch.arange(frames, dtype=torch.float32) * (student.hop / SAMPLE_RATE / 30.0)

    def evaluate(step: int) -> Evaluation:
        refs, hyps, said, true = [], [], [], []
        module.eval()
        with torch.inference_mode():
            for lang in langs:
                manifest = manifests[lang]["valid"]
                for record in records_of(manifest):
                    audio = read_clip(manifest, record)
                    hidden = student.hidden(encoder, [audio])
                    n = min(hidden.shape[1], math.ceil(len(audio) / student.hop))
                    logits = heads[lang](hidden[0, :n])
                    refs.append(record["text"])
                    hyps.append(greedy_text(torch.log_softmax(logits, -1).numpy(), vocabularies[lang]))
                    if timed:  # each clip at its own length, as a decoder sees it
                        said.append(30.0 * module["position"](hidden[0, :n]).squeeze(-1).numpy())
                        true.append(30.0 * frame_times(n).numpy())
        module.train()
        rates = error_rates(refs, hyps)
        metrics = {"cer": rates["cer"], "wer": rates["wer"]}
        if timed:
            said, true = np.concatenate(said), np.concatenate(true)
            metrics["time_r2"] = float(1.0 - ((said - true) ** 2).sum() / ((true - true.mean()) ** 2).sum())
            metrics["time_mae_s"] = float(np.abs(said - true).mean())
        return Evaluation(metrics, {"examples": [{"ref": refs[0], "hyp": hyps[0]}]})

    cadence = Cadence(settings.steps, settings.log_every, settings.eval_every, settings.checkpoint_every, 2)
    _, final = run_keeping_best(root, resumed.position, cadence, batches_of_epoch, train_step, evaluate, modules,
                                states, progress=progress, desc=f"distil {student.name}")  # fmt: skip
    with atomic_dir(out) as tmp:
        student.save(built, tmp)
        (tmp / "distillation.json").write_text(json.dumps({"final_eval": None if final is None else final.metrics},
                                                          indent=2) + "\n", encoding="utf-8")  # fmt: skip
    return out
