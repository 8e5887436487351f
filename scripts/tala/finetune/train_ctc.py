"""Train a wav2vec2 CTC model (MMS style) on JSONL manifests; resumable, outputs written last.

    python -m tala.finetune.train_ctc --train train.jsonl --valid valid.jsonl --model facebook/mms-1b-all \\
        --lang smo --phase adapter --max-steps 2000 --out results/samoan/models/mms_adapter

Manifests are Hugging Face "json" datasets: one object per line with ``audio`` (a 16 kHz mono WAV,
path relative to the manifest), ``text`` (normalized as the model's vocabulary spells it; spaces
are word breaks) and ``duration`` (seconds).

Phases choose what trains:

- ``all``: every parameter (``--freeze-feature-encoder`` keeps the CNN fixed);
- ``adapter``: the attention adapters of every layer and ``lm_head``, the base frozen (MMS adapter
  fine-tuning; ``--init-adapter`` starts them afresh as the MMS recipe does);
- ``lm_head``: only the output layer (MMS recipes run it before ``adapter``).

When the language's vocabulary differs from the starting model's output layer, a new ``lm_head``
is made; rows of tokens the old vocabulary had are copied (``--head-init copy``, the default) so
training starts from what the model knows. A language missing from a nested ``vocab.json`` gets a
vocabulary of the characters of the training texts.

Checkpoints, resume, the log, the lr schedule, the batches and the step loop are the shared core
in :mod:`tala.training` (its docstring has the checkpoint layout): checkpoints go to
``<out>.checkpoints/step-NNNNNN/`` (outside the output, which a workflow manager deletes when a
job fails) and a rerun resumes from the newest complete one. The ``adapter`` and ``lm_head``
phases checkpoint only the tensors they train (MMS-1B: a few MB instead of 3.9 GB); a resumed run
loads the frozen rest from the start model again. With validation data, the output holds the
weights of the best validation CER (``--evaluate-start``: the starting weights compete too), and
``--patience`` stops early. The data order is a pure function of
the seed and the epoch, and the random generators that dropout, LayerDrop and SpecAugment masking
draw from (torch's and numpy's global ones) are seeded at the start and restored from the
checkpoint, so on the same device and thread count a resumed run ends with the same bytes as an
uninterrupted one. Validation decodes greedily and scores with :mod:`tala.ctc_text`, as every
other step does.

The output folder appears, complete, only at the end: ``save_pretrained`` files (config,
weights, processor), ``adapter.<lang>.safetensors`` for models with adapters (the keys
``load_adapter`` expects), ``training.json`` (settings, data, results: no times, paths as given)
and ``training_log.jsonl`` (which also holds the times, and the resume events).
"""

# %%
from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tala.device import ensure_mps_fallback, pick_device

ensure_mps_fallback()

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

import tala  # noqa: E402
from tala.audio_io import SAMPLE_RATE  # noqa: E402
from tala.ctc_text import SPECIAL_TOKENS, WORD_DELIMITER, CtcVocabulary, error_rates, greedy_batch  # noqa: E402
from tala.errors import InputError, run_cli  # noqa: E402
from tala.fileio import atomic_dir, write_json_atomic  # noqa: E402
from tala.training import (  # noqa: E402
    LOG_FILE,
    Cadence,
    Evaluation,
    StepResult,
    autocast,
    checkpoint_activations,
    checkpoint_root,
    duration_batches,
    grad_scaler,
    new_position,
    optimizer_step,
    pack_batches,
    quiet_libraries,
    resume,
    run_keeping_best,
    warmup_decay_factor,
    warmup_decay_schedule,
)

PHASES = ("all", "adapter", "lm_head")
SCHEDULES = ("linear", "cosine")
HEAD_INITS = ("copy", "random")
INFO_FILE = "training.json"
ADAPTER_FILE = "adapter.{}.safetensors"  # transformers' WAV2VEC2_ADAPTER_SAFE_FILE

# Settings that decide which steps a run takes: a checkpoint made with other values is not resumed.
RESUME_KEYS = ("phase", "max_steps", "learning_rate", "warmup_steps", "schedule", "min_lr_ratio",
               "weight_decay", "max_grad_norm", "batch_seconds", "max_batch_size", "max_duration_s",
               "seed", "init_adapter", "head_init", "freeze_feature_encoder", "text_field", "eval_every",
               "patience", "min_delta", "evaluate_start")  # fmt: skip


# %% [markdown]
# ## Settings and data

# %%


@dataclass(frozen=True)
class TrainSettings:
    phase: str = "all"
    max_steps: int = 1000
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    schedule: str = "cosine"  # after warm-up, down to min_lr_ratio * learning_rate at max_steps
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    batch_seconds: float = 120.0  # padded audio per batch: batch size x longest utterance
    max_batch_size: int = 16
    max_duration_s: float = 35.0  # longer utterances are left out (and counted)
    seed: int = 0
    init_adapter: bool = False  # re-initialize adapter layers and lm_head (MMS recipe)
    head_init: str = "copy"
    freeze_feature_encoder: bool = False
    eval_every: int = 500
    text_field: str = "text"  # the manifest field with the target text ("normalized" in tala's datasets)
    patience: int = 0  # evaluations without a better validation CER before stopping; 0: never stop early
    evaluate_start: bool = False  # the starting weights compete for the best (evaluated and saved as step 0)
    min_delta: float = 0.0  # a better CER must beat the best by more than this
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    log_every: int = 25
    eval_batch_seconds: float = 240.0
    device: str = "auto"
    # activation checkpointing of the transformer layers (tala.training.checkpoint_activations): less
    # memory, more compute, the same steps (not a resume key: switch it on to resume after an OOM)
    gradient_checkpointing: bool = False

    def check(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, not {self.phase!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {self.schedule!r}")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {HEAD_INITS}, not {self.head_init!r}")
        if self.max_steps < 1 or self.warmup_steps < 0 or self.max_batch_size < 1:
            raise ValueError("max_steps >= 1, warmup_steps >= 0 and max_batch_size >= 1 are required")
        if self.batch_seconds <= 0 or self.max_duration_s <= 0 or self.learning_rate <= 0:
            raise ValueError("batch_seconds, max_duration_s and learning_rate must be positive")
        if self.patience < 0 or self.min_delta < 0:
            raise ValueError("patience and min_delta must not be negative")


@dataclass(frozen=True)
class Example:
    audio: Path
    text: str
    duration: float
    where: str  # "manifest.jsonl:12", for error messages
    # optional "word_times": [start, end] seconds of each whitespace-separated word of the text
    # (guided attention aims at them: tala.finetune.guided; part_seconds cuts between them)
    word_times: tuple[tuple[float, float], ...] | None = None
    # [start, end] seconds of the example in its audio file (a part of a clip); None: the whole file
    span: tuple[float, float] | None = None


NO_VALIDATION = "no validation, the last step's weights are kept"


def read_manifest(path: str | Path, text_field: str = "text", allow_empty: bool = False) -> list[Example]:
    """Read a JSONL manifest (the target text in ``text_field``); every error names the file and
    line (InputError). One without clips is an error unless ``allow_empty``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "manifest not found" if not path.exists() else "manifest is not a file")
    examples = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except ValueError as err:
                raise InputError(where, f"not JSON: {err}") from None
            if not isinstance(record, dict) or not isinstance(record.get("audio"), str):
                raise InputError(where, 'expected an object with "audio" (a path) and "text"')
            if not isinstance(record.get(text_field), str):
                raise InputError(where, f"no {text_field!r} string")
            audio = (path.parent / record["audio"]).resolve()
            if not audio.is_file():
                raise InputError(where, f"audio file not found: {audio}")
            duration = record.get("duration")
            if not isinstance(duration, (int, float)) or duration <= 0:
                try:
                    duration = sf.info(audio).duration
                except (RuntimeError, sf.LibsndfileError) as err:
                    raise InputError(audio, f"unreadable audio ({where}): {err}") from None
            examples.append(Example(audio, record[text_field], float(duration), where,
                                    _word_times(record, record[text_field], where)))
    if not examples and not allow_empty:
        raise InputError(path, "manifest has no examples")
    return examples


def read_held_out(manifests, text_field: str, consequence: str) -> list[Example]:
    """The clips of held-out manifests (validation, test). An empty one (a corpus too small for
    every split, or its chapters dropped upstream) is said with its ``consequence``, not refused."""
    examples = []
    for manifest in manifests:
        found = read_manifest(manifest, text_field, allow_empty=True)
        if not found:
            print(f"{manifest}: no clips: {consequence}", file=sys.stderr)
        examples += found
    return examples


def _word_times(record: dict, text: str, where: str) -> tuple[tuple[float, float], ...] | None:
    times = record.get("word_times")
    if times is None:
        return None
    words = text.split()
    normalized = record.get("normalized")
    if isinstance(times, list) and len(times) != len(words) and isinstance(normalized, str) \
            and len(times) == len(normalized.split()):
        return None  # a tala dataset's times are of its normalized words, and this text's words differ
    ok = isinstance(times, list) and len(times) == len(words) and all(
        isinstance(t, list) and len(t) == 2 and all(isinstance(x, (int, float)) for x in t) and 0 <= t[0] <= t[1]
        for t in times)  # fmt: skip
    if not ok:
        raise InputError(where, f'"word_times" must be {len(words)} [start, end] pairs in seconds, one per word')
    return tuple((float(a), float(b)) for a, b in times)


def encode_text(text: str, vocab: dict[str, int], where: str, lang: str) -> list[int]:
    """Token ids of a normalized text: one per character, spaces as the word delimiter ``|``."""
    words = text.split()
    if not words:
        raise InputError(where, "empty text")
    ids = []
    for i, word in enumerate(words):
        if i:
            ids.append(vocab[WORD_DELIMITER])
        for ch in word:
            if ch not in vocab or ch in SPECIAL_TOKENS:
                raise InputError(where, f"character {ch!r} (U+{ord(ch):04X}) in {word!r} is not in the "
                                        f"{lang!r} vocabulary (normalize the text or extend the vocabulary)")
            ids.append(vocab[ch])
    return ids


def load_audio(example: Example) -> np.ndarray:
    """The example's samples (mono): its whole file, or its ``span`` of it."""
    try:
        with sf.SoundFile(example.audio) as audio:  # opened once: its rate places a span
            rate = audio.samplerate
            if example.span is not None:
                audio.seek(round(example.span[0] * rate))
            frames = -1 if example.span is None else round(example.span[1] * rate) - round(example.span[0] * rate)
            samples = audio.read(frames, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as err:
        raise InputError(example.audio, f"unreadable audio ({example.where}): {err}") from None
    if rate != SAMPLE_RATE:
        raise InputError(example.audio, f"{rate} Hz audio; training needs {SAMPLE_RATE} Hz mono ({example.where})")
    return samples.mean(axis=1)


def epoch_batches(durations: Sequence[float], settings: TrainSettings, epoch: int) -> list[list[int]]:
    """The batches of one epoch (:func:`tala.training.duration_batches` with the settings' sizes)."""
    return duration_batches(durations, settings.seed, epoch, settings.batch_seconds, settings.max_batch_size,
                            settings.max_duration_s)  # fmt: skip


def lr_factor(step: int, settings: TrainSettings) -> float:
    """Linear warm-up to 1, then linear or cosine decay to ``min_lr_ratio`` at ``max_steps``."""
    return warmup_decay_factor(step, settings.warmup_steps, settings.max_steps, settings.schedule,
                               settings.min_lr_ratio)  # fmt: skip


# %% [markdown]
# ## Model, vocabulary and trainable parameters

# %%


def _is_nested(vocab: dict) -> bool:
    return bool(vocab) and all(isinstance(v, dict) for v in vocab.values())


def vocab_from_texts(texts: Sequence[str]) -> dict[str, int]:
    """An MMS-style character vocabulary for a new language: specials, ``|``, then the characters."""
    chars = sorted({ch for text in texts for ch in text if not ch.isspace()})
    tokens = [*SPECIAL_TOKENS, WORD_DELIMITER, *chars]
    return {token: index for index, token in enumerate(tokens)}


def build_tokenizer(vocab: dict, lang: str | None, folder: Path):
    """A Wav2Vec2CTCTokenizer over ``vocab`` (nested, with ``lang`` as target, or flat)."""
    from transformers import Wav2Vec2CTCTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.json"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Wav2Vec2CTCTokenizer(
        str(vocab_file), unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        word_delimiter_token=WORD_DELIMITER, target_lang=lang if _is_nested(vocab) else None,
    )  # fmt: skip


def build_processor(vocab: dict, lang: str | None, folder: Path):
    """Tokenizer plus the usual wav2vec2 feature extractor (16 kHz, normalized, attention mask)."""
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )
    return Wav2Vec2Processor(feature_extractor=extractor, tokenizer=build_tokenizer(vocab, lang, folder))


def _new_head(model, old_vocab: dict[str, int] | None, new_vocab: dict[str, int]) -> None:
    """Replace ``lm_head`` for ``new_vocab``; copy the rows of tokens the old head knew."""
    old = model.lm_head
    head = torch.nn.Linear(old.in_features, len(new_vocab), device=old.weight.device, dtype=old.weight.dtype)
    model._init_weights(head)
    if old_vocab is not None and len(old_vocab) == old.out_features:
        with torch.no_grad():
            for token, new_id in new_vocab.items():
                if token in old_vocab:
                    head.weight[new_id] = old.weight[old_vocab[token]]
                    head.bias[new_id] = old.bias[old_vocab[token]]
    model.lm_head = head
    model.config.vocab_size = len(new_vocab)


@dataclass
class StartModel:
    model: object  # Wav2Vec2ForCTC
    processor: object  # Wav2Vec2Processor, tokenizer set to the language
    vocab: dict[str, int]  # the language's token -> id
    source: str
    notes: list[str]


def load_start_model(
    lang: str,
    settings: TrainSettings,
    texts: Sequence[str],
    scratch: Path,
    model: str | None = None,
    config: str | Path | None = None,
    vocab_file: str | Path | None = None,
    start_adapter: str | None = None,
) -> StartModel:
    """The model to train, its processor and the language's vocabulary.

    From ``model`` (a folder or hub id): the adapter ``start_adapter`` when given (another
    language's, to start a new one from: its attention adapters, and the rows of its output layer
    for the letters both alphabets share), else the language's adapter if the model has one
    (unless ``init_adapter``), else the default weights with a new ``lm_head`` for the language.
    From ``config`` + ``vocab_file``: a randomly initialized model (seeded).
    """
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2Processor

    notes: list[str] = []
    torch.manual_seed(settings.seed)
    if config is not None:
        if vocab_file is None:
            raise InputError(config, "--config needs --vocab (a vocab.json, nested per language or flat)")
        try:
            vocab_all = json.loads(Path(vocab_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(vocab_file, f"unreadable vocabulary: {err}") from None
        if _is_nested(vocab_all) and lang not in vocab_all:
            vocab_all[lang] = vocab_from_texts(texts)
            notes.append(f"vocabulary for {lang} made from the training texts")
        vocab = vocab_all[lang] if _is_nested(vocab_all) else vocab_all
        try:
            cfg = Wav2Vec2Config.from_json_file(str(config))
        except (OSError, ValueError) as err:
            raise InputError(config, f"unreadable model config: {err}") from None
        cfg.vocab_size = len(vocab)
        cfg.pad_token_id = vocab["<pad>"]
        net = Wav2Vec2ForCTC(cfg)
        processor = build_processor(vocab_all, lang, scratch / "tokenizer")
        return StartModel(net, processor, vocab, f"config:{config}", notes)

    from tala.hub import adapter_files, check_weights, resolve_model

    source = resolve_model(model)
    processor = Wav2Vec2Processor.from_pretrained(source)
    tokenizer = processor.tokenizer
    vocab_all = tokenizer.vocab
    default_lang = getattr(tokenizer, "target_lang", None)
    old_vocab = dict(tokenizer.encoder)  # the vocabulary of the weights' default lm_head
    net = Wav2Vec2ForCTC.from_pretrained(source)
    has_adapters = getattr(net.config, "adapter_attn_dim", None) is not None
    if settings.phase == "adapter" and not has_adapters:
        raise InputError(source, "phase 'adapter' needs a model with adapter layers (config.adapter_attn_dim)")

    if _is_nested(vocab_all):
        if lang not in vocab_all:
            vocab_all = {**vocab_all, lang: vocab_from_texts(texts)}
            notes.append(f"vocabulary for {lang} made from the training texts")
            processor = Wav2Vec2Processor(
                feature_extractor=processor.feature_extractor,
                tokenizer=build_tokenizer(vocab_all, lang, scratch / "tokenizer"),
            )
        else:
            processor.tokenizer.set_target_lang(lang)
        vocab = dict(vocab_all[lang])
    else:
        vocab = dict(vocab_all)

    # The language whose output layer the loaded weights hold, and that layer's vocabulary.
    head_lang = default_lang if _is_nested(vocab_all) else lang
    head_vocab = old_vocab if len(old_vocab) == net.lm_head.out_features else None
    if start_adapter is not None:
        if not has_adapters:
            raise InputError(source, f"start adapter {start_adapter!r}: the model has no adapter layers")
        if start_adapter != head_lang:
            from tala.hub import check_adapter

            check_adapter(source, start_adapter, label=str(model))
            net.load_adapter(start_adapter)
            head_lang = start_adapter
            head_vocab = dict(vocab_all[start_adapter]) if _is_nested(vocab_all) and start_adapter in vocab_all else None
            if head_vocab is not None and len(head_vocab) != net.lm_head.out_features:
                head_vocab = None
        notes.append(f"started from the model's {start_adapter} adapter")
    elif has_adapters and lang != head_lang and not settings.init_adapter:
        folder = Path(source)
        if not folder.is_dir() or lang in adapter_files(folder):
            if folder.is_dir():
                check_weights(folder, ADAPTER_FILE.format(lang))
            try:
                net.load_adapter(lang)
                head_lang, head_vocab = lang, vocab
                notes.append(f"started from the model's {lang} adapter")
            except OSError:
                notes.append(f"the model has no {lang} adapter")
    if settings.init_adapter:
        net.init_adapter_layers()
        head_vocab = None
        notes.append("adapter layers and lm_head re-initialized")
    if head_lang != lang or net.lm_head.out_features != len(vocab):
        _new_head(net, head_vocab if settings.head_init == "copy" else None, vocab)
        copied = head_vocab is not None and settings.head_init == "copy"
        notes.append(f"new lm_head for {len(vocab)} {lang} tokens"
                     + (f" (rows of shared tokens copied from the {head_lang} head)" if copied else ""))
    net.config.vocab_size = len(vocab)
    net.config.pad_token_id = vocab["<pad>"]
    return StartModel(net, processor, vocab, str(model), notes)


def set_trainable(model, settings: TrainSettings) -> list[tuple[str, torch.nn.Parameter]]:
    """Freeze what the phase keeps fixed; return the trained parameters (name, tensor), in order."""
    for param in model.parameters():
        param.requires_grad = settings.phase == "all"
    if settings.phase != "all" or settings.freeze_feature_encoder:
        # Also tells the CNN not to make its output require grad (transformers does so in training
        # mode for gradient checkpointing): without it every step back-propagates through the
        # frozen CNN to the waveform for nothing, 2-3x the step's time.
        model.freeze_feature_encoder()
    if settings.phase == "adapter":
        for param in model._get_adapters().values():
            param.requires_grad = True
    elif settings.phase == "lm_head":
        for param in model.lm_head.parameters():
            param.requires_grad = True
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


class TrainedTensors(torch.nn.Module):
    """A checkpointable view of some of a model's parameters, under the model's own names: its
    state dict holds only them, and loading one copies into them in place. What a checkpoint of a
    phase that freezes the base holds."""

    def __init__(self, named: dict[str, torch.nn.Parameter]):
        super().__init__()
        self._named = dict(named)  # a plain dict: nothing is registered as this module's own

    def state_dict(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        return {name: param.detach() for name, param in self._named.items()}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        missing = [name for name in self._named if name not in state_dict]
        unexpected = [name for name in state_dict if name not in self._named]
        if strict and (missing or unexpected):
            raise RuntimeError(f"trained tensors: missing {missing[:5]}, unexpected {unexpected[:5]}")
        with torch.no_grad():
            for name, tensor in state_dict.items():
                if name in self._named:
                    self._named[name].copy_(tensor)
        return missing, unexpected


def adapter_state_dict(model) -> dict[str, torch.Tensor]:
    """The tensors ``load_adapter`` reads from ``adapter.<lang>.safetensors``: attention adapters
    of every layer and lm_head, under transformers' own names (``_get_adapters``)."""
    return {name: param.detach().cpu().contiguous() for name, param in model._get_adapters().items()}


# %% [markdown]
# ## Batches and evaluation

# %%


def make_batch(examples: Sequence[Example], labels: Sequence[Sequence[int]], feature_extractor,
               device: torch.device) -> dict[str, torch.Tensor]:
    audio = [load_audio(e) for e in examples]
    inputs = feature_extractor(audio, sampling_rate=SAMPLE_RATE, padding=True, return_attention_mask=True,
                               return_tensors="pt")  # fmt: skip
    width = max(len(ids) for ids in labels)
    target = torch.full((len(labels), width), -100, dtype=torch.long)
    for row, ids in enumerate(labels):
        target[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return {
        "input_values": inputs["input_values"].to(device),
        "attention_mask": inputs["attention_mask"].to(device),
        "labels": target.to(device),
    }


def evaluate(model, examples: Sequence[Example], labels: Sequence[Sequence[int]], feature_extractor,
             vocab: dict[str, int], device: torch.device, batch_seconds: float = 240.0,
             max_batch_size: int = 16) -> dict:
    """CTC loss (mean over utterances) and greedy CER (pooled over all characters, tala.ctc_text)."""
    vocabulary = CtcVocabulary.from_token_ids(vocab)
    order = sorted(range(len(examples)), key=lambda i: examples[i].duration)
    batches = pack_batches(order, [e.duration for e in examples], batch_seconds, max_batch_size)
    was_training = model.training
    model.eval()
    hyps: dict[int, str] = {}
    loss_sum = 0.0
    with torch.inference_mode():
        for batch in batches:
            inputs = make_batch([examples[i] for i in batch], [labels[i] for i in batch], feature_extractor, device)
            with autocast(device):
                out = model(**inputs)
            lengths = model._get_feat_extract_output_lengths(inputs["attention_mask"].sum(-1)).tolist()
            loss_sum += float(out.loss) * len(batch)
            hyps.update(zip(batch, greedy_batch(out.logits.float(), lengths, vocabulary)))
    model.train(was_training)
    refs = [" ".join(e.text.split()) for e in examples]
    predictions = [hyps[i] for i in range(len(examples))]
    return {
        "loss": loss_sum / len(examples),
        "cer": error_rates(refs, predictions)["cer"],
        "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, predictions))[:3]],
    }


# %% [markdown]
# ## The training loop

# %%


@dataclass(frozen=True)
class TrainResult:
    out: Path
    steps: int
    resumed_from: int | None
    final_eval: dict | None
    elapsed_s: float


def train(
    train_manifests: Sequence[str | Path],
    out: str | Path,
    lang: str,
    settings: TrainSettings,
    valid_manifests: Sequence[str | Path] = (),
    model: str | None = None,
    config: str | Path | None = None,
    vocab_file: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    on_step: Callable[[int, float], None] | None = None,
    progress: bool = True,
    keep_checkpoint_dir: bool = False,
    start_adapter: str | None = None,
) -> TrainResult:
    """Train, checkpointing every ``settings.checkpoint_every`` steps, and write ``out`` at the end.

    With validation data the output holds the weights of the best validation CER among the
    evaluations (every ``eval_every`` steps and the last), not necessarily the last step's;
    ``patience`` > 0 stops early after that many evaluations without a better CER.
    ``on_step(step, loss)`` is called after every optimizer step (after any checkpoint of that
    step). The checkpoint folder is removed after success unless ``keep_checkpoint_dir``.
    """
    settings.check()
    # transformers draws SpecAugment masks from numpy's global generator (torch's is seeded in
    # load_start_model): unseeded, two runs with mask_time_prob > 0 would differ.
    np.random.seed(settings.seed)
    out = Path(out)
    root = checkpoint_root(out, checkpoint_dir)
    train_examples = [e for m in train_manifests for e in read_manifest(m, settings.text_field)]
    valid_examples = read_held_out(valid_manifests, settings.text_field, NO_VALIDATION)
    root.mkdir(parents=True, exist_ok=True)
    start = load_start_model(lang, settings, [e.text for e in train_examples], root / "scratch", model, config,
                             vocab_file, start_adapter)  # fmt: skip
    net, processor, vocab = start.model, start.processor, start.vocab
    train_labels = [encode_text(e.text, vocab, e.where, lang) for e in train_examples]
    valid_labels = [encode_text(e.text, vocab, e.where, lang) for e in valid_examples]
    durations = [e.duration for e in train_examples]
    if not any(d <= settings.max_duration_s for d in durations):
        raise InputError(train_manifests[0], f"no utterance is at most {settings.max_duration_s} s long")

    device = pick_device(settings.device)
    net.to(device)
    net.train()
    named_trainable = dict(set_trainable(net, settings))
    if settings.gradient_checkpointing:
        checkpoint_activations(net)
    trainable = list(named_trainable.values())
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = warmup_decay_schedule(optimizer, settings.warmup_steps, settings.max_steps, settings.schedule,
                                      settings.min_lr_ratio)  # fmt: skip
    scaler = grad_scaler(device)
    # The adapter and lm_head phases checkpoint only what they train (MMS-1B: a few MB, not 3.9 GB);
    # a resumed run rebuilds the frozen rest from the start model.
    saved = net if settings.phase == "all" else TrainedTensors(named_trainable)
    modules, states = {"model": saved}, {"optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    data_signature = {"train": [str(Path(m).resolve()) for m in train_manifests], "examples": len(train_examples),
                      "total_s": round(sum(durations), 3)}  # fmt: skip
    fresh = new_position(settings={k: getattr(settings, k) for k in RESUME_KEYS}, data=data_signature)
    start_event = {"model": start.source, "lang": lang, "notes": start.notes,
                   "trainable_parameters": sum(p.numel() for p in trainable), "device": str(device)}  # fmt: skip
    resumed = resume(root, fresh, modules, states, start=start_event, match=("settings", "data"))

    def batches_of_epoch(epoch: int) -> list[list[int]]:
        return epoch_batches(durations, settings, epoch)

    def train_step(index: list[int]) -> StepResult:
        inputs = make_batch([train_examples[i] for i in index], [train_labels[i] for i in index],
                            processor.feature_extractor, device)  # fmt: skip
        with autocast(device):
            loss = net(**inputs).loss
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        grad_norm, stepping = optimizer_step(optimizer, scheduler, scaler, trainable, settings.max_grad_norm)
        return StepResult({"loss": loss.detach().item()},
                          {"lr": scheduler.get_last_lr()[0], "grad_norm": round(float(grad_norm), 4)},
                          audio_s=sum(durations[i] for i in index), skipped=not stepping)  # fmt: skip

    def run_eval(step: int) -> Evaluation:
        result = evaluate(net, valid_examples, valid_labels, processor.feature_extractor, vocab, device,
                          settings.eval_batch_seconds, settings.max_batch_size)  # fmt: skip
        return Evaluation({"loss": result["loss"], "cer": result["cer"]}, {"examples": result["examples"][:2]})

    def after_step(step: int, result: StepResult) -> None:
        if on_step is not None:
            on_step(step, result.losses["loss"])

    cadence = Cadence(settings.max_steps, settings.log_every, settings.eval_every, settings.checkpoint_every,
                      settings.keep_checkpoints)  # fmt: skip
    position, final = run_keeping_best(root, resumed.position, cadence, batches_of_epoch, train_step,
                                       run_eval if valid_examples else None, modules, states,
                                       patience=settings.patience, min_delta=settings.min_delta, on_step=after_step,
                                       progress=progress, desc=f"train {lang} ({settings.phase})",
                                       evaluate_start=settings.evaluate_start)  # fmt: skip
    final_eval = None if final is None else {**final.metrics, **final.details}
    write_outputs(out, net, processor, lang, settings, start, position, final_eval, root / LOG_FILE, train_manifests,
                  valid_manifests)  # fmt: skip
    if not keep_checkpoint_dir:
        shutil.rmtree(root, ignore_errors=True)
    return TrainResult(out, position["step"], resumed.step, final_eval, position["elapsed_s"])


def write_outputs(out: Path, model, processor, lang: str, settings: TrainSettings, start: StartModel,
                  position: dict, final_eval: dict | None, log_path: Path, train_manifests, valid_manifests) -> None:
    """The output folder, assembled beside ``out`` and renamed into place in one step."""
    from safetensors.torch import save_file

    model = model.to("cpu")
    model.target_lang = lang
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        if getattr(model.config, "adapter_attn_dim", None) is not None:
            save_file(adapter_state_dict(model), str(tmp / ADAPTER_FILE.format(lang)), metadata={"format": "pt"})
        shutil.copyfile(log_path, tmp / LOG_FILE)
        write_json_atomic(tmp / INFO_FILE, {
            "generator": "tala.finetune.train_ctc",
            "tala_version": tala.__version__,
            "start_model": start.source,
            "start_notes": start.notes,
            "lang": lang,
            "settings": asdict(settings),
            "train_manifests": [str(m) for m in train_manifests],
            "valid_manifests": [str(m) for m in valid_manifests],
            "steps": position["step"],
            "best": position.get("best"),
            "stopped_early_at": position.get("stopped_at"),
            "epoch": position["epoch"],
            "train_audio_s_seen": round(position["audio_s"], 1),
            "final_eval": None if final_eval is None else {k: final_eval[k] for k in ("loss", "cer")},
            "versions": {"torch": torch.__version__, "transformers": _transformers_version()},
        })  # fmt: skip


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


# %% [markdown]
# ## Command line

# %%


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = TrainSettings()
    parser = argparse.ArgumentParser(
        prog="python -m tala.finetune.train_ctc",
        description="Train a wav2vec2 CTC model (MMS style: all parameters, the language adapter, or the "
        "output layer) on JSONL manifests; resumes from <out>.checkpoints and writes --out last.",
    )
    parser.add_argument("--train", nargs="+", required=True, metavar="JSONL", help="training manifest(s)")
    parser.add_argument("--valid", nargs="*", default=[], metavar="JSONL", help="validation manifest(s) for CER")
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--model", help="start from this model folder or Hugging Face id")
    start.add_argument("--config", type=Path, help="build from this Wav2Vec2Config JSON (random weights)")
    parser.add_argument("--vocab", type=Path, help="vocab.json (nested per language or flat), with --config")
    parser.add_argument("--lang", required=True, help="target language (adapter code, e.g. smo)")
    parser.add_argument("--start-adapter", metavar="LANG",
                        help="start from this language's adapter (e.g. smo for a new tvl adapter)")
    parser.add_argument("--text-field", default=defaults.text_field,
                        help="manifest field with the target text (tala's datasets: normalized; default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="output model folder (written at the end)")
    parser.add_argument("--checkpoint-dir", type=Path, help="default: <out>.checkpoints")
    parser.add_argument("--keep-checkpoint-dir", action="store_true", help="keep checkpoints after success")
    parser.add_argument("--phase", choices=PHASES, default=defaults.phase, help="what trains (default: %(default)s)")
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps, help="default: %(default)s")
    parser.add_argument("--lr", type=float, default=defaults.learning_rate, help="peak AdamW learning rate (default: %(default)s)")
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps, help="default: %(default)s")
    parser.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule, help="decay after warm-up (default: %(default)s)")
    parser.add_argument("--min-lr-ratio", type=float, default=defaults.min_lr_ratio, help="final lr / peak lr (default: %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="default: %(default)s")
    parser.add_argument("--max-grad-norm", type=float, default=defaults.max_grad_norm, help="gradient clipping (default: %(default)s)")
    parser.add_argument("--batch-seconds", type=float, default=defaults.batch_seconds,
                        help="padded audio seconds per batch (default: %(default)s)")
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size, help="default: %(default)s")
    parser.add_argument("--max-duration", type=float, default=defaults.max_duration_s,
                        help="leave out longer utterances, seconds (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="default: %(default)s")
    parser.add_argument("--init-adapter", action="store_true", help="re-initialize adapter layers and lm_head")
    parser.add_argument("--head-init", choices=HEAD_INITS, default=defaults.head_init,
                        help="a new lm_head: copy rows of shared tokens from the old head, or random (default: %(default)s)")
    parser.add_argument("--freeze-feature-encoder", action="store_true", help="phase all: keep the CNN fixed")
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every, help="steps; 0: only at the end (default: %(default)s)")
    parser.add_argument("--patience", type=int, default=defaults.patience,
                        help="stop after this many evaluations without a better validation CER; 0: never (default: %(default)s)")
    parser.add_argument("--min-delta", type=float, default=defaults.min_delta,
                        help="a better CER must beat the best by more than this (default: %(default)s)")
    parser.add_argument("--evaluate-start", action="store_true",
                        help="evaluate the starting weights too: they are kept if training never beats them")
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every, help="default: %(default)s")
    parser.add_argument("--keep-checkpoints", type=int, default=defaults.keep_checkpoints, help="default: %(default)s")
    parser.add_argument("--log-every", type=int, default=defaults.log_every, help="default: %(default)s")
    parser.add_argument("--device", default=defaults.device, help="auto (cuda, mps, cpu), cuda, mps or cpu")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction,
                        default=defaults.gradient_checkpointing,
                        help="recompute each layer's activations in the backward pass: less memory, more compute,"
                             " the same steps")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    return TrainSettings(
        phase=args.phase, max_steps=args.max_steps, learning_rate=args.lr, warmup_steps=args.warmup_steps,
        schedule=args.schedule, min_lr_ratio=args.min_lr_ratio, weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm, batch_seconds=args.batch_seconds, max_batch_size=args.max_batch_size,
        max_duration_s=args.max_duration, seed=args.seed, init_adapter=args.init_adapter, head_init=args.head_init,
        freeze_feature_encoder=args.freeze_feature_encoder, eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints, log_every=args.log_every,
        device=args.device, text_field=args.text_field, patience=args.patience, min_delta=args.min_delta,
        evaluate_start=args.evaluate_start, gradient_checkpointing=args.gradient_checkpointing,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.no_progress:
        quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = settings_from_args(args)
    try:
        settings.check()
    except ValueError as err:
        raise InputError("settings", str(err)) from None
    result = train(args.train, args.out, args.lang, settings, valid_manifests=args.valid, model=args.model,
                   config=args.config, vocab_file=args.vocab, checkpoint_dir=args.checkpoint_dir,
                   progress=not args.no_progress, keep_checkpoint_dir=args.keep_checkpoint_dir,
                   start_adapter=args.start_adapter)  # fmt: skip
    cer = None if result.final_eval is None else f"{100 * result.final_eval['cer']:.2f} %"
    resumed = "" if result.resumed_from is None else f" (resumed at step {result.resumed_from})"
    print(f"{result.out}: {result.steps} steps{resumed}, {result.elapsed_s:.0f} s, valid CER {cer}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
