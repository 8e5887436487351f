"""Fine-tune Moonshine with LoRA (seed 004's "real tiny run") on a language's dataset; resumable.

    python -m tala.finetune.moonshine --start UsefulSensors/moonshine-tiny \\
        --train results/L/dataset/train.jsonl --valid results/L/dataset/valid.jsonl \\
        --test results/L/dataset/test.jsonl --out results/L/models/moonshine

LoRA adapters (peft) on the attention projections of the encoder and the decoder learn, the base
stays frozen (``--mode lora``, the default); ``--mode decoder`` trains the whole decoder on a frozen
encoder, ``--mode all`` everything (how a stand-in is pre-trained). The seed's small-run defaults:
one clip per micro-batch, 4 micro-batches accumulated per step, 40 steps. The target is the
manifest's ``--text-field`` (tala's datasets: ``normalized``), the label ids its tokens and ``eos``;
the model shifts them right behind its start token itself.

A clip longer than Moonshine's 30 s, or whose transcript does not fit the decoder's positions, is
left out with one line naming it (never cut). Validation: the loss (mean over target tokens) and
greedy CER/WER (:mod:`tala.ctc_text`); the best CER is kept. The output folder appears, complete, at
the end (:func:`tala.models.moonshine.load_moonshine_lora` reads it with plain transformers + peft)
with ``training.json``, ``training_log.jsonl`` and seed 004's two files:

- ``real_metrics.json``: ``train_loss`` (the mean training loss of the run's steps, as the HF
  Trainer reports it), ``baseline_eval_loss`` (the start model on the validation clips),
  ``tuned_eval_loss`` (the kept weights), and the CER/WER of both;
- ``artifact_test.json``: the saved folder loaded back from disk and run on the ``--test``
  clips: ``samples`` (audio, reference, hypothesis) and ``wer`` (and ``cer``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from tala.device import ensure_mps_fallback, pick_device

ensure_mps_fallback()

import torch  # noqa: E402

import tala  # noqa: E402
from tala.ctc_text import error_rates, normalize_for_scoring  # noqa: E402
from tala.errors import InputError, run_cli  # noqa: E402
from tala.fileio import atomic_dir, write_json_atomic, write_text_atomic  # noqa: E402
from tala.finetune.card import recognizer_card, split_of  # noqa: E402
from tala.finetune.evaluate_asr import read_in_parts, train_pace  # noqa: E402
from tala.finetune.guided import Guide, aligned_span, eager_attention, guided_attention_loss, token_times  # noqa: E402
from tala.finetune.options import check_shared_settings, recognizer_parser, shared_settings  # noqa: E402
from tala.finetune.parts import left_out_clips, training_parts  # noqa: E402
from tala.finetune.tokens import report_unwritable  # noqa: E402
from tala.finetune.train_ctc import (NO_VALIDATION, Example, TrainedTensors, load_audio, read_held_out,  # noqa: E402
                                     read_manifest)
from tala.models.moonshine import (  # noqa: E402
    MAX_CLIP_S,
    MoonshineError,
    MoonshineLoRAConfig,
    base_of,
    check_clip,
    check_transcript,
    decoder_positions,
    encode_alone,
    encode_each,
    label_tensor,
    load_moonshine_lora,
    read_clip,
    target_ids,
    write_moonshine,
)
from tala.models.speechllm import SpeechLLMError, check_lora_targets  # noqa: E402
from tala.training import (  # noqa: E402
    Cadence,
    Evaluation,
    StepResult,
    autocast,
    checkpoint_activations,
    checkpoint_root,
    copy_log_without_timing,
    duration_batches,
    grad_scaler,
    new_position,
    optimizer_step,
    pack_batches,
    quiet_libraries,
    resume,
    run_keeping_best,
    warmup_decay_schedule,
)
from tala.training import LOG_FILE as CORE_LOG  # noqa: E402

TRAIN_MODES = ("lora", "decoder", "all")
MODEL_PARTS = ("encoder", "decoder")  # Moonshine's two stacks of layers (model.encoder, model.decoder)
INFO_FILE = "training.json"
LOG_FILE = "training_log.jsonl"
METRICS_FILE = "real_metrics.json"
ARTIFACT_FILE = "artifact_test.json"
FRAMES_PER_S = 16_000 / (64 * 3 * 2)  # the encoder's frames: its convolutions' strides
RESUME_KEYS = ("train", "max_steps", "learning_rate", "warmup_steps", "batch_seconds", "max_batch_size",
               "accumulate", "seed", "lora_r", "lora_alpha", "lora_targets", "text_field", "max_clip_s",
               "guided_attention", "guided_attention_width", "part_seconds", "label_smoothing",
               "start_kl", "lora_parts", "best_metric")  # fmt: skip
# (a setting left at None is not recorded: checkpoints made before it existed still resume)


@dataclass(frozen=True)
class MoonshineSettings:
    train: str = "lora"
    max_steps: int = 40
    learning_rate: float = 1e-3
    warmup_steps: int = 4
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    batch_seconds: float = 30.0  # audio per micro-batch
    max_batch_size: int = 1  # clips per micro-batch
    accumulate: int = 4  # micro-batches per optimizer step
    seed: int = 0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    # which of the model's two stacks get the adapters: ("encoder",) adapts only how the audio is
    # heard, not the decoder's prior over the text it writes (None: both)
    lora_parts: tuple[str, ...] | None = None
    max_clip_s: float = MAX_CLIP_S
    text_field: str = "normalized"
    eval_every: int = 10
    patience: int = 0
    # the validation metric that picks the weights kept and that patience watches (HF's metric_for_best_model)
    best_metric: str = "wer"
    min_delta: float = 0.0
    evaluate_start: bool = False
    # validation reads each clip as evaluate_asr does with --pace (the train split's): a part that
    # ends too early or loops is read again in halves (tala.finetune.evaluate_asr.read_checked), so
    # the weights kept are chosen on the reading that is reported
    reread: bool = True
    num_beams: int = 1  # validation's decoding (1: greedy), as evaluate_asr --num-beams reads the clips
    # validation reads a clip longer than this in parts of at most this many seconds, cut at quiet
    # points, as evaluate_asr --part-seconds does (None: whole clips); a training clip that long is
    # cut between its words (its manifest's word_times) into such parts (tala.finetune.parts)
    part_seconds: float | None = None
    checkpoint_every: int = 10
    keep_checkpoints: int = 2
    log_every: int = 5
    cache_frames: bool = False  # mode decoder: keep each clip's (frozen) encoder output in host memory
    # a prior on where the cross-attention reads (tala.finetune.guided: the clip's diagonal, or the
    # manifest's word_times), for a decoder trained from scratch
    guided_attention: float = 0.0
    guided_attention_width: float = 0.1
    # two regularizers of fine-tuning on little data (None: off): label smoothing of the targets
    # (ESPnet's attention decoders use 0.1), and the KL divergence of the start's next-token
    # distributions (the LoRA adapters switched off) from the tuned model's on the training clips,
    # per token, with this weight: the tuned model may move only as far as the clips pay for
    label_smoothing: float | None = None
    start_kl: float | None = None
    device: str = "auto"
    # activation checkpointing of every layer (tala.training.checkpoint_activations): less memory, more
    # compute, the same steps (so not a resume key: switch it on to resume after running out of memory)
    gradient_checkpointing: bool = False

    def check(self) -> None:
        check_shared_settings(self, TRAIN_MODES)
        if min(self.max_steps, self.max_batch_size, self.accumulate, self.lora_r) < 1 or self.warmup_steps < 0:
            raise ValueError("max_steps, max_batch_size, accumulate and lora_r >= 1 and warmup_steps >= 0 are required")
        if self.learning_rate <= 0 or self.batch_seconds <= 0 or self.max_clip_s <= 0:
            raise ValueError("learning_rate, batch_seconds and max_clip_s must be positive")
        if self.cache_frames and self.train != "decoder":
            raise ValueError("cache_frames needs train=decoder (a frozen encoder)")
        if self.label_smoothing is not None and not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), not {self.label_smoothing}")
        if self.start_kl is not None and (self.start_kl < 0 or (self.start_kl > 0 and self.train != "lora")):
            raise ValueError("start_kl must be >= 0 and needs train=lora (the start is the model without its adapters)")
        if self.lora_parts is not None and (not self.lora_parts or not set(self.lora_parts) <= set(MODEL_PARTS)):
            raise ValueError(f"lora_parts must be one or both of {MODEL_PARTS}, not {self.lora_parts}")

    @property
    def guide(self) -> Guide | None:
        return Guide(self.guided_attention, self.guided_attention_width) if self.guided_attention > 0 else None


@dataclass
class Start:
    model: torch.nn.Module
    feature_extractor: object
    tokenizer: object
    config: MoonshineLoRAConfig
    source: str


def load_start(settings: MoonshineSettings, start: str, models_dir=None) -> Start:
    """A hub id or folder of a whole Moonshine model, or a saved recognizer (its adapter goes on
    learning); new LoRA adapters in ``lora`` mode when it has none."""
    try:
        model, feature_extractor, tokenizer, config = load_moonshine_lora(start, trainable=True,
                                                                          models_dir=models_dir)  # fmt: skip
    except (MoonshineError, OSError) as err:
        raise InputError("--start", f"{start}: {err}") from None
    config = MoonshineLoRAConfig(**{**{k: v for k, v in asdict(config).items() if k != "class_name"},
                                    "base": config.base if hasattr(model, "peft_config") else str(start),
                                    "max_clip_s": settings.max_clip_s})  # fmt: skip
    if settings.train == "lora" and not hasattr(model, "peft_config"):
        from peft import LoraConfig, get_peft_model

        try:
            check_lora_targets(model, settings.lora_targets, part="model")
        except SpeechLLMError as err:
            raise InputError("--lora-targets", str(err)) from None
        lora = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                          target_modules=lora_target_modules(model, settings))  # fmt: skip
        model = get_peft_model(model, lora)
        config = MoonshineLoRAConfig(base=str(start), lora_r=settings.lora_r, lora_alpha=settings.lora_alpha,
                                     lora_dropout=settings.lora_dropout, lora_targets=tuple(settings.lora_targets),
                                     lora_parts=settings.lora_parts,
                                     max_clip_s=settings.max_clip_s)  # fmt: skip
    elif settings.train != "lora" and hasattr(model, "peft_config"):
        raise InputError("--start", f"{start} is a LoRA recognizer: --mode {settings.train} needs a whole model")
    return Start(model, feature_extractor, tokenizer, config, str(start))


MOONSHINE_LOAD = """
from peft import PeftModel
from transformers import AutoFeatureExtractor, AutoTokenizer, MoonshineForConditionalGeneration

folder = "."  # this folder
base = MoonshineForConditionalGeneration.from_pretrained(BASE)  # as moonshine.json names it
model = PeftModel.from_pretrained(base, folder)
feature_extractor, tokenizer = AutoFeatureExtractor.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
# or, with a hub id resolved from download_models' folder:
# model, feature_extractor, tokenizer, config = tala.models.moonshine.load_moonshine_lora(folder)
"""
MOONSHINE_WHOLE_LOAD = """
from transformers import AutoFeatureExtractor, AutoTokenizer, MoonshineForConditionalGeneration

folder = "."  # this folder
model = MoonshineForConditionalGeneration.from_pretrained(folder)
feature_extractor, tokenizer = AutoFeatureExtractor.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
"""


def lora_target_modules(model, settings: MoonshineSettings) -> list[str] | str:
    """peft's ``target_modules``: the target names in every layer, or (``lora_parts``) a pattern of
    them in the layers of the named stacks only."""
    if settings.lora_parts is None or set(settings.lora_parts) == set(MODEL_PARTS):
        return list(settings.lora_targets)
    pattern = (rf"model\.(?:{'|'.join(settings.lora_parts)})\.layers\.\d+\.(?:.*\.)?"
               rf"(?:{'|'.join(map(re.escape, settings.lora_targets))})")  # fmt: skip
    if not any(re.fullmatch(pattern, name) for name, _ in model.named_modules()):
        raise InputError("--lora-parts", f"no layer of the model's {' and '.join(settings.lora_parts)} is named "
                                         f"{', '.join(settings.lora_targets)}")  # fmt: skip
    return pattern


def trainable_parameters(model, mode: str) -> dict[str, torch.nn.Parameter]:
    """What learns, by name: the LoRA adapters, the decoder (encoder frozen), or everything."""
    for name, param in model.named_parameters():
        if mode == "lora":
            param.requires_grad_("lora_" in name)
        elif mode == "decoder":
            param.requires_grad_(".encoder." not in f".{name}")
        else:
            param.requires_grad_(True)
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def usable_examples(examples: list[Example], tokenizer, limit: int, max_clip_s: float,
                    log=sys.stderr) -> tuple[list[Example], list[list[int]], list[str]]:
    """The examples Moonshine can learn from, their label ids, and one line per example left out."""
    kept, targets, left_out = [], [], []
    for example in examples:
        ids = target_ids(tokenizer, example.text)
        try:
            check_clip(round(example.duration * 16_000), max_clip_s, example.where)
            check_transcript(len(ids) - 1, limit, example.where)
        except MoonshineError as err:
            left_out.append(f"left out: {err}")
            print(left_out[-1], file=log)
            continue
        kept.append(example)
        targets.append(ids)
    return kept, targets, left_out


def batch_loss(model, feature_extractor, audio, targets, device, encoder_outputs=None, guide: Guide | None = None,
               times=None, label_smoothing: float | None = None,
               start_kl: float | None = None) -> tuple[torch.Tensor, int, torch.Tensor | None, torch.Tensor | None]:
    """The loss summed over the target tokens of a micro-batch, their number, with ``guide`` the
    guided-attention loss of the batch (its mean per token, unweighted; ``times``: per example its
    tokens' times, :func:`tala.finetune.guided.token_times`, or None), and with ``label_smoothing``
    or ``start_kl`` (:class:`MoonshineSettings`) what they add to the summed loss (else None)."""
    import torch.nn.functional as F
    from transformers.models.moonshine.modeling_moonshine import MoonshineEncoderModelOutput

    labels = label_tensor(targets, device)
    tokens = int((labels != -100).sum())
    # each clip encoded alone (encode_alone), as it is read; the mask gives each clip's frames
    hidden, mask = encoder_outputs if encoder_outputs is not None else encode_alone(model, feature_extractor, audio,
                                                                                    device)  # fmt: skip
    out = model(encoder_outputs=MoonshineEncoderModelOutput(last_hidden_state=hidden, attention_mask=mask),
                labels=labels, output_attentions=guide is not None, use_cache=False)  # fmt: skip
    guided = None
    if guide is not None:
        frames = mask.sum(-1).tolist() if mask is not None else [hidden.shape[1]] * hidden.shape[0]
        # decoder row r (the start token, then the transcript) predicts label r (the targets end with eos)
        times = times or [None] * len(targets)
        spans = [aligned_span(0, len(t), 0, int(n), w, FRAMES_PER_S) for t, n, w in zip(targets, frames, times)]
        guided = guided_attention_loss(out.cross_attentions, spans, guide.width)
    summed, added = out.loss * tokens, None
    if label_smoothing or start_kl:
        scored = labels != -100  # logits row r predicts label r (the model shifts the labels itself)
        logits = out.logits[scored].float()
        added = torch.zeros((), device=logits.device)
        if label_smoothing:  # the smoothed cross-entropy in place of the plain one
            added = F.cross_entropy(logits, labels[scored], reduction="sum", label_smoothing=label_smoothing) - summed
        if start_kl:
            with torch.no_grad(), model.disable_adapter():
                hidden0, mask0 = encode_alone(model, feature_extractor, audio, device)
                start = model(encoder_outputs=MoonshineEncoderModelOutput(last_hidden_state=hidden0,
                                                                          attention_mask=mask0),
                              labels=labels).logits[scored].float()  # fmt: skip
            log_start, log_tuned = F.log_softmax(start, -1), F.log_softmax(logits, -1)
            added = added + start_kl * (log_start.exp() * (log_start - log_tuned)).sum()
    return summed, tokens, guided, added


def evaluate(model, feature_extractor, tokenizer, examples: list[Example], targets: list[list[int]], device,
             settings: MoonshineSettings, pace=None) -> dict:
    """Validation loss (mean over target tokens), CER and WER (decoded with ``settings.num_beams``),
    and two transcripts. One clip at a time, as evaluate_asr and the artifact test transcribe:
    Moonshine's first GroupNorm spans the padded batch, so a clip padded beside a longer one is heard
    differently, and the CER that picks the kept weights would not be the one the evaluation
    reports. A clip longer than ``settings.part_seconds`` is read in parts, and with a ``pace``
    (:class:`tala.finetune.evaluate_asr.Pace`) each clip's reading is checked, as evaluate_asr reads
    and checks it (``reread``: the clips read again)."""
    was_training = model.training
    model.eval()
    loss_sum, tokens, reread = 0.0, 0, 0
    hyps: dict[int, str] = {}

    def read_part(piece) -> str:
        return read_clip(model, feature_extractor, tokenizer, piece, device, settings.num_beams)

    with torch.inference_mode():
        for i, example in enumerate(examples):
            audio = [load_audio(example)]
            with autocast(device):
                summed, n, _, _ = batch_loss(model, feature_extractor, audio, [targets[i]], device)
                hyps[i], _, parts = read_in_parts(audio[0], read_part, pace, settings.part_seconds)
                reread += parts > 0
            loss_sum, tokens = loss_sum + float(summed), tokens + n
    model.train(was_training)
    refs = [normalize_for_scoring(e.text) for e in examples]
    predictions = [normalize_for_scoring(hyps[i]) for i in range(len(examples))]
    rates = error_rates(refs, predictions)
    return {"loss": loss_sum / max(tokens, 1), "cer": rates["cer"], "wer": rates["wer"], "reread": reread,
            "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, predictions))[:2]]}


def artifact_test(folder: Path, test: list[Example], device, models_dir=None, name: str | None = None,
                  num_beams: int = 1, part_seconds: float | None = None) -> dict:
    """Seed 004's artifact test: the saved recognizer loaded from ``folder`` with plain transformers
    + peft, transcripts of the test clips (greedy, or a beam search of ``num_beams``; a clip longer
    than ``part_seconds`` in parts, as evaluate_asr reads it), their WER (and CER). ``name``: the
    folder's final path (``folder`` may be the temporary one it is written in)."""
    model, feature_extractor, tokenizer, _ = load_moonshine_lora(folder, device=str(device), models_dir=models_dir)

    def read_part(piece) -> str:
        return read_clip(model, feature_extractor, tokenizer, piece, device, num_beams)

    samples = []
    for example in test:
        hypothesis = read_in_parts(load_audio(example), read_part, None, part_seconds)[0]
        samples.append({"audio": _as_named(example.audio), "reference": normalize_for_scoring(example.text),
                        "hypothesis": normalize_for_scoring(hypothesis)})  # fmt: skip
    rates = error_rates([s["reference"] for s in samples], [s["hypothesis"] for s in samples])
    return {"model": name or str(folder), "num_beams": num_beams, "part_seconds": part_seconds, "samples": samples,
            "wer": rates["wer"], "cer": rates["cer"]}


def _as_named(path: Path) -> str:
    """A clip's path as the workflow names it: relative to the working directory when inside it
    (two runs in different folders write the same bytes), else absolute."""
    path = Path(path).absolute()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class TrainResult:
    out: Path
    steps: int
    resumed_from: int | None
    final_eval: dict | None
    metrics: dict
    elapsed_s: float


def train(train_manifests, out: str | Path, settings: MoonshineSettings, start: str, valid_manifests=(),
          test_manifests=(), checkpoint_dir=None, progress: bool = True, keep_checkpoint_dir: bool = False,
          on_step=None, models_dir=None) -> TrainResult:
    """Train to ``settings.max_steps`` (or early stop), resuming from ``<out>.checkpoints``; write ``out`` last."""
    settings.check()
    out = Path(out)
    root = checkpoint_root(out, checkpoint_dir)
    torch.manual_seed(settings.seed)  # new adapters' initial weights
    began = load_start(settings, start, models_dir)
    model, feature_extractor, tokenizer = began.model, began.feature_extractor, began.tokenizer
    device = pick_device(settings.device)
    model.to(device)
    guide = settings.guide
    if guide is not None:
        eager_attention(base_of(model))
    if settings.gradient_checkpointing:
        checkpoint_activations(model)
    limit = decoder_positions(base_of(model))
    train_all = [e for m in train_manifests for e in read_manifest(m, settings.text_field)]
    # a long clip is learned in the parts it is read in (part_seconds); the pace is the whole clips'
    train_parts = training_parts(train_all, settings.part_seconds)
    train_examples, train_targets, left_out = usable_examples(train_parts, tokenizer, limit, settings.max_clip_s)
    valid_all = read_held_out(valid_manifests, settings.text_field, NO_VALIDATION)
    valid_examples, valid_targets, valid_left_out = usable_examples(valid_all, tokenizer, limit, settings.max_clip_s)
    test_examples = read_held_out(test_manifests, settings.text_field, "no artifact test")
    pace = train_pace(train_all) if settings.reread else None
    unwritable = report_unwritable(tokenizer, began.source, {"train": (train_all, train_manifests),
                                                        "valid": (valid_all, valid_manifests)})
    if not train_examples:
        raise InputError(train_manifests[0], "no clip fits Moonshine's length and the decoder's positions")
    durations = [e.duration for e in train_examples]
    # guided: each token's time where the manifest gives its words' times (else the diagonal)
    train_times = [token_times(tokenizer, e.text, t[:-1], e.word_times) if guide is not None else None
                   for e, t in zip(train_examples, train_targets)]  # fmt: skip

    named = trainable_parameters(model, settings.train)
    params = list(named.values())
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = warmup_decay_schedule(optimizer, settings.warmup_steps, settings.max_steps, settings.schedule,
                                      settings.min_lr_ratio)  # fmt: skip
    modules, states = {"trained": TrainedTensors(named)}, {"optimizer": optimizer, "scheduler": scheduler}
    root.mkdir(parents=True, exist_ok=True)
    data = {"train": [str(Path(m).resolve()) for m in train_manifests], "examples": len(train_examples),
            "total_s": round(sum(durations), 3)}  # fmt: skip
    recorded = {k: list(v) if isinstance(v, tuple) else v for k in RESUME_KEYS if (v := getattr(settings, k)) is not None}
    fresh = new_position(settings=recorded, data=data, train_loss_sum=0.0)
    start_event = {"model": began.source, "trainable_parameters": sum(p.numel() for p in params),
                   "device": str(device), "left_out": len(left_out)}  # fmt: skip
    torch.manual_seed(settings.seed)  # the data order and dropout; a resumed run restores its own state
    resumed = resume(root, fresh, modules, states, start=start_event, match=("settings", "data"))
    baseline, start_read = resumed.position.get("baseline"), None
    if baseline is None and valid_examples:  # greedy and in eval mode: draws no random numbers
        start_read = evaluate(model, feature_extractor, tokenizer, valid_examples, valid_targets, device, settings,
                              pace)  # fmt: skip
        baseline = {k: start_read[k] for k in ("loss", "cer", "wer")}
    position = {**resumed.position, "baseline": baseline}
    model.train()

    encoded: dict[int, tuple[torch.Tensor, int]] = {}

    def encoder_outputs(index: list[int], audio) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Mode decoder with cache_frames: the frozen encoder's output of each clip, computed once."""
        if not settings.cache_frames:
            return None
        missing = [k for k, i in enumerate(index) if i not in encoded]
        if missing:
            with torch.no_grad():
                frames = encode_each(model, feature_extractor, [audio[k] for k in missing], device)
            for k, clip in zip(missing, frames):
                encoded[index[k]] = (clip.to("cpu", copy=True), len(clip))
        width = max(encoded[i][1] for i in index)
        hidden = torch.zeros(len(index), width, encoded[index[0]][0].shape[-1])
        mask = torch.zeros(len(index), width, dtype=torch.int)  # frames, as the encoder returns it
        for row, i in enumerate(index):
            hidden[row, : encoded[i][1]] = encoded[i][0]
            mask[row, : encoded[i][1]] = 1
        return hidden.to(device), mask.to(device)

    def batches_of_epoch(epoch: int) -> list[list[int]]:
        return duration_batches(durations, settings.seed, epoch, settings.batch_seconds * settings.accumulate,
                                settings.max_batch_size * settings.accumulate, settings.max_clip_s)  # fmt: skip

    scaler = grad_scaler(device)
    regularized = bool(settings.label_smoothing or settings.start_kl)

    def train_step(index: list[int]) -> StepResult:
        micro = pack_batches(index, durations, settings.batch_seconds, settings.max_batch_size)
        total = sum(len(train_targets[i]) for i in index)
        optimizer.zero_grad(set_to_none=True)
        loss_sum, guided_sum, added_sum = 0.0, 0.0, 0.0
        for batch in micro:
            audio = None if settings.cache_frames and all(i in encoded for i in batch) else \
                [load_audio(train_examples[i]) for i in batch]  # fmt: skip
            with autocast(device):  # bf16 on CUDA; full precision on CPU and MPS
                summed, tokens, guided, added = batch_loss(model, feature_extractor, audio,
                                                           [train_targets[i] for i in batch], device,
                                                           encoder_outputs(batch, audio), guide,
                                                           [train_times[i] for i in batch], settings.label_smoothing,
                                                           settings.start_kl)  # fmt: skip
            loss_sum += float(summed.detach())
            objective = summed if added is None else summed + added
            added_sum += 0.0 if added is None else float(added.detach())
            if guided is not None:  # weighted by the batch's tokens, as the cross-entropy is
                guided_sum += float(guided.detach()) * tokens
                objective = objective + guide.weight * guided * tokens
            scaler.scale(objective / total).backward()
        grad_norm, stepping = optimizer_step(optimizer, scheduler, scaler, params, settings.max_grad_norm)
        losses = {"loss": loss_sum / total, **({"guided_loss": guided_sum / total} if guide is not None else {}),
                  **({"regularized_loss": (loss_sum + added_sum) / total} if regularized else {})}  # fmt: skip
        return StepResult(losses, {"lr": scheduler.get_last_lr()[0], "grad_norm": round(float(grad_norm), 4)},
                          audio_s=sum(durations[i] for i in index), skipped=not stepping)  # fmt: skip

    def run_eval(step: int) -> Evaluation:
        if step == 0 and start_read is not None:  # evaluate_start: the start was read above (the baseline)
            result = start_read
        else:
            result = evaluate(model, feature_extractor, tokenizer, valid_examples, valid_targets, device, settings,
                              pace)  # fmt: skip
        return Evaluation({k: result[k] for k in ("loss", "cer", "wer")},
                          {"reread": result["reread"], "examples": result["examples"]})

    losses: list[float] = []

    def after_step(step: int, result: StepResult) -> None:
        losses.append(result.losses["loss"])
        if on_step is not None:
            on_step(step, result.losses["loss"])

    cadence = Cadence(settings.max_steps, settings.log_every, settings.eval_every, settings.checkpoint_every,
                      settings.keep_checkpoints)  # fmt: skip
    position, final = run_keeping_best(root, position, cadence, batches_of_epoch, train_step,
                                       run_eval if valid_examples else None, modules, states,
                                       metric=settings.best_metric, patience=settings.patience,
                                       min_delta=settings.min_delta, on_step=after_step,
                                       progress=progress, desc=f"moonshine ({settings.train})",
                                       evaluate_start=settings.evaluate_start)  # fmt: skip
    final_eval = None if final is None else {**final.metrics, **final.details}
    train_loss = _mean_train_loss(root / CORE_LOG)
    metrics = {"train_loss": train_loss,
               "baseline_eval_loss": None if baseline is None else baseline["loss"],
               "tuned_eval_loss": None if final_eval is None else final_eval["loss"],
               "baseline": baseline,
               "tuned": None if final_eval is None else {k: final_eval[k] for k in ("loss", "cer", "wer")},
               "steps": position["step"], "train_clips": len(train_examples),
               "valid_clips": len(valid_examples)}  # fmt: skip
    model.to("cpu").eval()
    with atomic_dir(out) as tmp:
        write_moonshine(tmp, model, feature_extractor, tokenizer, began.config)
        copy_log_without_timing(root / CORE_LOG, tmp / LOG_FILE)
        write_json_atomic(tmp / METRICS_FILE, metrics)
        tested = None
        if test_examples:
            tested = artifact_test(tmp, test_examples, "cpu", models_dir, str(out), settings.num_beams,
                                   settings.part_seconds)
            write_json_atomic(tmp / ARTIFACT_FILE, tested)
        lora = hasattr(model, "peft_config")
        stacks = " and ".join(settings.lora_parts or MODEL_PARTS)
        write_text_atomic(tmp / "README.md", recognizer_card(
            title=f"Moonshine {'with LoRA ' if lora else ''}fine-tuned by tala",
            what=(f"`{began.config.base}` with LoRA adapters on its {stacks}: a speech recognizer of the clips below."
                  if lora else f"`{began.source}` fine-tuned ({settings.train}): a speech recognizer of the clips below."),
            base=began.config.base if lora else began.source, generator="tala.finetune.moonshine",
            settings=asdict(settings),
            train=split_of(train_manifests, train_all, left_out_clips(train_parts, train_examples)),
            valid=split_of(valid_manifests, valid_all, len(valid_left_out)) if valid_manifests else None,
            start=baseline, final=final_eval, best=position.get("best"), steps=position["step"], artifact=tested,
            start_name=f"`{began.source}`", lora=lora, unwritable=unwritable, tags=("moonshine",),
            load=MOONSHINE_LOAD.replace("BASE", f'"{began.config.base}"') if lora else MOONSHINE_WHOLE_LOAD))  # fmt: skip
        write_json_atomic(tmp / INFO_FILE, {
            "generator": "tala.finetune.moonshine",
            "tala_version": tala.__version__,
            "start_model": began.source,
            "settings": asdict(settings),
            "train_manifests": [str(m) for m in train_manifests],
            "valid_manifests": [str(m) for m in valid_manifests],
            "test_manifests": [str(m) for m in test_manifests],
            "examples": len(train_examples),
            "left_out": left_out + valid_left_out,
            "unwritable": unwritable,
            "steps": position["step"],
            "best": position.get("best"),
            "stopped_early_at": position.get("stopped_at"),
            "final_eval": None if final_eval is None else {k: final_eval[k] for k in ("loss", "cer", "wer")},
            "versions": {"torch": torch.__version__, "transformers": _version("transformers"),
                         "peft": _version("peft")},
        })  # fmt: skip
    if not keep_checkpoint_dir:
        shutil.rmtree(root, ignore_errors=True)
    return TrainResult(out, position["step"], resumed.step, final_eval, metrics, position["elapsed_s"])


def _mean_train_loss(log: Path) -> float | None:
    """The mean training loss over the run's steps, from the log's records (each the mean of its
    window of steps), weighted by their steps: a resumed run gives what an uninterrupted one does."""
    from tala.fileio import read_jsonl

    total = steps = 0.0
    last = 0
    for _, record in read_jsonl(log):
        if "loss" in record and "epoch" in record:  # a training record (evaluations log eval_loss)
            width = record["step"] - last
            total, steps, last = total + record["loss"] * width, steps + width, record["step"]
    return None if not steps else total / steps


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = MoonshineSettings()
    parser = recognizer_parser("python -m tala.finetune.moonshine", __doc__.splitlines()[0], d, TRAIN_MODES)
    parser.add_argument("--start", required=True, help="Moonshine: hub id or folder, or a saved recognizer")
    parser.add_argument("--test", nargs="*", default=[], metavar="JSONL", help="the artifact test's clips")
    parser.add_argument("--accumulate", type=int, default=d.accumulate, help="micro-batches per optimizer step")
    parser.add_argument("--max-clip-s", type=float, default=d.max_clip_s)
    parser.add_argument("--label-smoothing", type=float, default=d.label_smoothing, metavar="EPS",
                        help="label smoothing of the training targets (default: none)")
    parser.add_argument("--lora-parts", nargs="+", choices=MODEL_PARTS, default=d.lora_parts,
                        help="the stacks whose layers get LoRA adapters (default: both)")
    parser.add_argument("--start-kl", type=float, default=d.start_kl, metavar="W",
                        help="weight of the KL divergence of the start's next-token distributions (adapters off) "
                             "from the tuned model's, per training token (default: none)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.no_progress:
        quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = MoonshineSettings(**shared_settings(args), accumulate=args.accumulate, max_clip_s=args.max_clip_s,
                                 label_smoothing=args.label_smoothing, start_kl=args.start_kl,
                                 lora_parts=args.lora_parts and tuple(args.lora_parts))  # fmt: skip
    try:
        settings.check()
    except ValueError as err:
        raise InputError("settings", str(err)) from None
    result = train(args.train_manifests, args.out, settings, args.start, valid_manifests=args.valid,
                   test_manifests=args.test, checkpoint_dir=args.checkpoint_dir, progress=not args.no_progress,
                   keep_checkpoint_dir=args.keep_checkpoint_dir, models_dir=args.models_dir)  # fmt: skip
    m = result.metrics
    losses = "" if m["tuned_eval_loss"] is None else (f", eval loss {m['baseline_eval_loss']:.3f} -> "
                                                      f"{m['tuned_eval_loss']:.3f}")  # fmt: skip
    resumed = "" if result.resumed_from is None else f" (resumed at step {result.resumed_from})"
    print(f"{result.out}: {result.steps} steps{resumed}, {result.elapsed_s:.0f} s{losses}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
