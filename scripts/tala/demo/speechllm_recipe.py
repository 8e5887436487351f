"""The demo speech-LLM's training recipe: a small Whisper encoder, a small Llama decoder with its own
BPE tokenizer, and the projector between them, trained on synthesized speech (never the demo's
sentences: :mod:`tala.demo.training_speech`).

    data       synthesize train/valid utterances per language      -> <work>/data/<lang>/<split>.jsonl
    teacher    the demo CTC model's per-frame character posteriors  -> <work>/teacher/<lang>/<split>.npz
    encoder    a WhisperEncoder distilled from them (KL per frame)  -> <work>/models/encoder
    tokenizer  byte-level-free BPE (``tokenizers``) on the train texts, a random-weight Llama decoder
                                                                    -> <work>/models/decoder-init
    speechllm  projector + whole decoder on the frozen encoder (:func:`tala.finetune.speechllm.train`,
               ``train="all"``)                                     -> <work>/models/speechllm

Why distillation: a Whisper encoder trained from scratch with CTC sits on CTC's all-blank plateau
for thousands of steps on 2 CPU cores (the demo CTC model needed a curriculum and 13,000 steps).
The demo CTC model (``resources/demo/model``, trained by ``make demo-model`` on the same kind of
speech) gives a dense target for every 20 ms frame instead: its posteriors over the language's
characters. Whisper's frames are 20 ms too (mel hop 10 ms, stride-2 convolution), so frame ``t``
of an utterance placed ``k`` frames into the window is the teacher's frame ``t - k``.

The encoder always sees the real 30 s window (the shipped one must behave as Whisper does): the
windows are filled with several utterances of one language, each placed on a frame boundary, so
no step pays for 20 s of padding. Each stage is skipped when its output exists and resumes from
its checkpoints (the shared training core) after a kill.
"""

# %%
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tala.demo.text import LANGUAGES
from tala.demo.training_speech import synthesize_split
from tala.fileio import atomic_dir, atomic_path, read_jsonl

SAMPLE_RATE = 16_000
FRAME = 320  # samples per Whisper encoder frame and per wav2vec2 frame
WINDOW = 30 * SAMPLE_RATE
DEFAULT_SEED = 20_240_611  # the demo CTC model's: its first utterances are the same ones
DEFAULT_WORK = Path(".cache/demo_speechllm")
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


@dataclass(frozen=True)
class SpeechLLMRecipe:
    """What ``make demo-speechllm`` runs: steps, not minutes (the card records the minutes)."""

    train_utterances: tuple[tuple[str, int], ...] = (("smo", 2000), ("por", 3000))
    valid_utterances: int = 48  # per language
    # The encoder: Whisper's layout (80 mel bins, 2 convolutions, pre-LN transformer, 1500 positions).
    encoder_dim: int = 192
    encoder_layers: int = 4
    encoder_heads: int = 4
    encoder_ffn: int = 768
    distill_steps: int = 1200
    distill_lr: float = 1.5e-3
    distill_warmup: int = 100
    windows_per_batch: int = 4
    # The decoder: Llama's layout, tied embeddings, its own BPE.
    bpe_vocab: int = 768
    decoder_hidden: int = 192
    decoder_layers: int = 4
    decoder_heads: int = 3
    decoder_ffn: int = 576
    decoder_positions: int = 1024  # 30 s = 375 audio tokens; the longest transcript ~200 tokens
    speechllm_steps: int = 3000
    speechllm_lr: float = 1e-3
    speechllm_warmup: int = 100
    batch_seconds: float = 120.0
    max_batch_size: int = 16
    stack: int = 4


# %% [markdown]
# ## Data and the teacher's targets

# %%


def stage_data(work: Path, recipe: SpeechLLMRecipe, seed: int, workers: int) -> dict[str, dict[str, Path]]:
    manifests: dict[str, dict[str, Path]] = {}
    for lang in LANGUAGES:
        out = work / "data" / lang
        manifests[lang] = {
            "valid": synthesize_split(out, lang, "valid", recipe.valid_utterances, seed, workers),
            "train": synthesize_split(out, lang, "train", dict(recipe.train_utterances)[lang], seed, workers),
        }
    return manifests


def records_of(manifest: Path) -> list[dict]:
    return [record for _, record in read_jsonl(manifest)]


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


# %% [markdown]
# ## The encoder, distilled

# %%


def encoder_config(recipe: SpeechLLMRecipe):
    """Whisper's encoder layout at a small size; the window stays Whisper's 30 s (1500 positions)."""
    from transformers import WhisperConfig

    return WhisperConfig(
        num_mel_bins=80, d_model=recipe.encoder_dim, encoder_layers=recipe.encoder_layers,
        encoder_attention_heads=recipe.encoder_heads, encoder_ffn_dim=recipe.encoder_ffn, max_source_positions=1500,
        decoder_layers=1, decoder_attention_heads=recipe.encoder_heads, decoder_ffn_dim=recipe.encoder_ffn,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, encoder_layerdrop=0.0,
        architectures=["WhisperEncoder"],
    )  # fmt: skip


@dataclass(frozen=True)
class Placed:
    """An utterance in a window: its index in its split, its first frame in the window, its frames."""

    index: int
    frame: int
    frames: int


@dataclass(frozen=True)
class Window:
    lang: str
    placed: tuple[Placed, ...]


def pack_windows(lang: str, offsets: np.ndarray, rng: np.random.Generator) -> list[Window]:
    """Utterances of one language in a random order, packed greedily into 30 s windows (1500
    frames), each starting on a frame boundary."""
    lengths = np.diff(offsets)
    windows, current, used = [], [], 0
    for index in rng.permutation(len(lengths)):
        n = int(lengths[index]) + 1  # +1: the teacher drops the last partial frame
        if n > 1500:
            continue
        if used + n > 1500:
            windows.append(Window(lang, tuple(current)))
            current, used = [], 0
        current.append(Placed(int(index), used, int(lengths[index])))
        used += n
    if current:
        windows.append(Window(lang, tuple(current)))
    return windows


class Distilled:
    """What the encoder stage trains: the WhisperEncoder and one linear CTC head per language (the
    heads are dropped after training)."""

    def __init__(self, recipe: SpeechLLMRecipe, vocab_sizes: dict[str, int]):
        import torch
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        self.encoder = WhisperEncoder(encoder_config(recipe))
        self.heads = torch.nn.ModuleDict({lang: torch.nn.Linear(recipe.encoder_dim, n)
                                          for lang, n in vocab_sizes.items()})  # fmt: skip
        self.module = torch.nn.ModuleDict({"encoder": self.encoder, "heads": self.heads})


def window_audio(window: Window, manifest: Path, records: list[dict]) -> np.ndarray:
    audio = np.zeros(WINDOW, np.float32)
    for placed in window.placed:
        clip = read_clip(manifest, records[placed.index])[: WINDOW - placed.frame * FRAME]
        audio[placed.frame * FRAME: placed.frame * FRAME + len(clip)] = clip
    return audio


def stage_encoder(work: Path, manifests: dict, targets: dict, teacher: Path, recipe: SpeechLLMRecipe, seed: int,
                  progress: bool = True) -> Path:
    """Distil the teacher's posteriors into a WhisperEncoder: KL(teacher || student) per frame,
    summed over frames and divided by their number; validation CER by greedy CTC through the
    student's head. Resumable (the shared training core)."""
    import torch
    from transformers import WhisperFeatureExtractor

    from tala.ctc_text import CtcVocabulary, error_rates, greedy_text
    from tala.training import (Cadence, Evaluation, StepResult, checkpoint_root, new_position, resume,
                               run_keeping_best, warmup_decay_schedule)  # fmt: skip

    out = work / "models" / "encoder"
    if (out / "model.safetensors").exists():
        return out
    vocab = json.loads((teacher / "vocab.json").read_text(encoding="utf-8"))
    langs = list(manifests)
    vocabularies = {lang: CtcVocabulary.from_token_ids(vocab[lang]) for lang in langs}
    torch.manual_seed(seed)
    student = Distilled(recipe, {lang: len(vocab[lang]) for lang in langs})
    features = WhisperFeatureExtractor(feature_size=80, chunk_length=30)
    records = {lang: records_of(manifests[lang]["train"]) for lang in langs}
    teacher_data = {lang: np.load(targets[lang]["train"]) for lang in langs}
    logp = {lang: teacher_data[lang]["logp"] for lang in langs}
    offsets = {lang: teacher_data[lang]["offsets"] for lang in langs}

    # The windows of the epoch being trained: the core asks for an epoch's batches when it starts
    # it (after the last step of the one before), so the step reads them from here.
    epoch_windows: list[Window] = []

    def batches_of_epoch(epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([seed, epoch])
        windows = [w for lang in langs for w in pack_windows(lang, offsets[lang], rng)]
        epoch_windows[:] = [windows[i] for i in rng.permutation(len(windows))]
        n = recipe.windows_per_batch
        return [list(range(i, min(i + n, len(windows)))) for i in range(0, len(windows), n)]

    params = list(student.module.parameters())
    optimizer = torch.optim.AdamW(params, lr=recipe.distill_lr, weight_decay=0.01)
    scheduler = warmup_decay_schedule(optimizer, recipe.distill_warmup, recipe.distill_steps, "cosine", 0.02)
    modules, states = {"student": student.module}, {"optimizer": optimizer, "scheduler": scheduler}
    root = checkpoint_root(out)
    root.mkdir(parents=True, exist_ok=True)
    fresh = new_position(settings={"recipe": asdict(recipe), "seed": seed})
    resumed = resume(root, fresh, modules, states, match=("settings",),
                     start={"model": "WhisperEncoder (random weights)", "teacher": str(teacher),
                            "parameters": sum(p.numel() for p in student.encoder.parameters())})  # fmt: skip
    student.module.train()

    def train_step(index: list[int]) -> StepResult:
        windows = [epoch_windows[i] for i in index]
        audio = [window_audio(w, manifests[w.lang]["train"], records[w.lang]) for w in windows]
        mel = features(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        hidden = student.encoder(mel).last_hidden_state
        kl, frames = hidden.new_zeros(()), 0
        for lang in langs:
            rows, wanted = [], []
            for b, window in enumerate(windows):
                if window.lang != lang:
                    continue
                for placed in window.placed:
                    n = min(placed.frames, 1500 - placed.frame)
                    rows.append(hidden[b, placed.frame: placed.frame + n])
                    start = int(offsets[lang][placed.index])
                    wanted.append(torch.from_numpy(logp[lang][start: start + n].astype(np.float32)))
            if not rows:
                continue
            student_logp = torch.log_softmax(student.heads[lang](torch.cat(rows)), -1)
            teacher_logp = torch.cat(wanted)
            kl = kl + (teacher_logp.exp() * (teacher_logp - student_logp)).sum()
            frames += len(teacher_logp)
        loss = kl / max(frames, 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        stepping = bool(torch.isfinite(grad_norm))
        if stepping:
            optimizer.step()
        scheduler.step()
        audio_s = sum(p.frames for w in windows for p in w.placed) * FRAME / SAMPLE_RATE
        return StepResult({"loss": loss.detach().item()}, {"lr": scheduler.get_last_lr()[0],
                          "grad_norm": round(float(grad_norm), 4)}, audio_s=audio_s, skipped=not stepping)  # fmt: skip

    def evaluate(step: int) -> Evaluation:
        refs, hyps = [], []
        student.module.eval()
        with torch.inference_mode():
            for lang in langs:
                manifest = manifests[lang]["valid"]
                for record in records_of(manifest):
                    audio = read_clip(manifest, record)
                    mel = features([audio], sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
                    n = math.ceil(len(audio) / FRAME)
                    logits = student.heads[lang](student.encoder(mel).last_hidden_state[0, :n])
                    refs.append(record["text"])
                    hyps.append(greedy_text(torch.log_softmax(logits, -1).numpy(), vocabularies[lang]))
        student.module.train()
        rates = error_rates(refs, hyps)
        return Evaluation({"cer": rates["cer"], "wer": rates["wer"]}, {"examples": [{"ref": refs[0], "hyp": hyps[0]}]})

    cadence = Cadence(recipe.distill_steps, 25, 200, 100, 2)
    _, final = run_keeping_best(root, resumed.position, cadence, batches_of_epoch, train_step, evaluate, modules, states,
                                progress=progress, desc="distil encoder")  # fmt: skip
    with atomic_dir(out) as tmp:
        student.encoder.save_pretrained(str(tmp))
        (tmp / "distillation.json").write_text(json.dumps({"final_eval": None if final is None else final.metrics},
                                                          indent=2) + "\n", encoding="utf-8")  # fmt: skip
    return out


# %% [markdown]
# ## The tokenizer and the decoder

# %%


def train_texts(manifests: dict) -> list[str]:
    return [r["text"] for lang in manifests for r in records_of(manifests[lang]["train"])]


def stage_decoder_init(work: Path, manifests: dict, recipe: SpeechLLMRecipe, seed: int) -> Path:
    """A BPE tokenizer trained on the training texts (``tokenizers``: Metaspace words, as
    SentencePiece cuts them) and a Llama decoder with random weights, saved as one HF folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = work / "models" / "decoder-init"
    if (out / "config.json").exists():
        return out
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    bpe.decoder = decoders.Metaspace()
    bpe.train_from_iterator(train_texts(manifests), trainers.BpeTrainer(
        vocab_size=recipe.bpe_vocab, special_tokens=list(SPECIALS), show_progress=False))  # fmt: skip
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")  # fmt: skip
    config = LlamaConfig(
        vocab_size=bpe.get_vocab_size(), hidden_size=recipe.decoder_hidden, intermediate_size=recipe.decoder_ffn,
        num_hidden_layers=recipe.decoder_layers, num_attention_heads=recipe.decoder_heads,
        num_key_value_heads=recipe.decoder_heads, max_position_embeddings=recipe.decoder_positions,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    return out


def speechllm_settings(recipe: SpeechLLMRecipe, seed: int):
    from tala.finetune.speechllm import SpeechLLMSettings

    return SpeechLLMSettings(train="all", max_steps=recipe.speechllm_steps, learning_rate=recipe.speechllm_lr,
                             warmup_steps=recipe.speechllm_warmup, min_lr_ratio=0.02, weight_decay=0.01,
                             batch_seconds=recipe.batch_seconds, max_batch_size=recipe.max_batch_size, seed=seed,
                             stack=recipe.stack, text_field="text", eval_every=500, checkpoint_every=100,
                             log_every=25, cache_frames=True)  # fmt: skip


def stage_speechllm(work: Path, manifests: dict, encoder: Path, decoder: Path, recipe: SpeechLLMRecipe,
                    seed: int, progress: bool = True) -> Path:
    """Projector and whole decoder on the frozen encoder, both languages (the trainer's ``all`` mode)."""
    from tala.finetune.speechllm import train

    out = work / "models" / "speechllm"
    if (out / "speechllm.json").exists():
        return out
    train([manifests[lang]["train"] for lang in manifests], out, speechllm_settings(recipe, seed),
          valid_manifests=[manifests[lang]["valid"] for lang in manifests], encoder=str(encoder.resolve()),
          decoder=str(decoder.resolve()), progress=progress, keep_checkpoint_dir=True)  # fmt: skip
    return out


@dataclass(frozen=True)
class RecipeRun:
    manifests: dict[str, dict[str, Path]]
    encoder: Path
    decoder_init: Path
    speechllm: Path
    seconds: dict[str, float]


def run_recipe(work: Path, recipe: SpeechLLMRecipe, seed: int, workers: int, teacher: Path,
               progress: bool = True) -> RecipeRun:
    """Every stage in order, each skipped when its output exists (the seconds are this run's)."""
    seconds: dict[str, float] = {}

    def timed(name, fn, *args, **kwargs):
        began = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds[name] = round(time.perf_counter() - began, 1)
        return result

    manifests = timed("data", stage_data, work, recipe, seed, workers)
    targets = timed("teacher", stage_teacher, work, manifests, teacher)
    encoder = timed("encoder", stage_encoder, work, manifests, targets, teacher, recipe, seed, progress)
    decoder = timed("tokenizer", stage_decoder_init, work, manifests, recipe, seed)
    speechllm = timed("speechllm", stage_speechllm, work, manifests, encoder, decoder, recipe, seed, progress)
    return RecipeRun(manifests, encoder, decoder, speechllm, seconds)
