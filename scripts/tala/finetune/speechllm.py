"""Fine-tune the speech-LLM recognizer (:class:`tala.models.speechllm.SpeechLLMV1`) on a language's
dataset: LoRA adapters on the decoder's attention projections and the audio projector learn, the
Whisper encoder and the decoder's base stay frozen; resumable.

    python -m tala.finetune.speechllm --start resources/demo/speechllm \\
        --train results/L/dataset/train.jsonl --valid results/L/dataset/valid.jsonl \\
        --out results/L/models/speechllm
    python -m tala.finetune.speechllm --encoder openai/whisper-small --decoder HuggingFaceTB/SmolLM2-135M ...

``--start`` is a saved recognizer (``speechllm.json``, its projector, a whole decoder or a LoRA
adapter, which then trains on); ``--encoder`` and ``--decoder`` start from two hub checkpoints (or
folders) with a new projector. ``--train all`` trains the whole decoder instead of adapters (how a
stand-in is pre-trained). The target text is the manifest's ``--text-field`` (tala's datasets:
``normalized``, as ``evaluate_asr`` scores), tokenized by the decoder's tokenizer; the loss is on the
transcript and its end-of-sequence token only.

A clip longer than the encoder's window (Whisper: 30 s) or whose transcript does not fit the
decoder's positions is left out with one line naming it (never cut: its words would stay in the
target and leave the audio); ``training.json`` counts them. Validation decodes greedily and scores
CER and WER with :mod:`tala.ctc_text` (the best validation CER is kept; ``--patience`` stops early).

Checkpoints, resume, the log, the schedule, the batches and the step loop are the shared core
(:mod:`tala.training`): ``<out>.checkpoints/step-NNNNNN/`` hold only what trains (the projector and
the adapters: a few MB for SmolLM2), a rerun resumes from the newest complete one. The output folder
appears, complete, at the end: what :func:`tala.models.speechllm.load_speechllm` reads (plain
transformers + peft), ``training.json`` and ``training_log.jsonl``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from tala.device import ensure_mps_fallback, pick_device

ensure_mps_fallback()

import numpy as np  # noqa: E402
import torch  # noqa: E402

import tala  # noqa: E402
from tala.ctc_text import error_rates, normalize_for_scoring  # noqa: E402
from tala.errors import InputError, run_cli  # noqa: E402
from tala.fileio import atomic_dir, atomic_path, write_json_atomic, write_text_atomic  # noqa: E402
from tala.finetune.card import recognizer_card, split_of, start_evaluation  # noqa: E402
from tala.finetune.evaluate_asr import read_in_parts, train_pace  # noqa: E402
from tala.finetune.guided import aligned_span, eager_attention, guided_attention_loss, token_times  # noqa: E402
from tala.finetune.options import check_shared_settings, recognizer_parser, shared_settings  # noqa: E402
from tala.finetune.parts import left_out_clips, training_parts  # noqa: E402
from tala.finetune.tokens import report_unwritable  # noqa: E402
from tala.finetune.train_ctc import (NO_VALIDATION, Example, TrainedTensors, load_audio, read_held_out,  # noqa: E402
                                     read_manifest)
from tala.models.speechllm import (  # noqa: E402
    ENCODER_HOP,
    LORA_DIR,
    SAMPLE_RATE,
    AudioProjectorV1,
    SpeechLLMConfig,
    SpeechLLMError,
    SpeechLLMV1,
    check_clip,
    check_lora_targets,
    check_sequence,
    decoder_limit,
    encoder_window_samples,
    feature_extractor_for,
    generation_budget,
    load_speechllm,
    load_whisper_encoder,
    log_mel,
    prompt_for,
    read_clip,
    write_speechllm,
)
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

TRAIN_MODES = ("lora", "all")
INFO_FILE = "training.json"
LOG_FILE = "training_log.jsonl"
RESUME_KEYS = ("train", "max_steps", "learning_rate", "warmup_steps", "batch_seconds", "max_batch_size", "seed",
               "lora_r", "lora_alpha", "lora_targets", "stack", "instruction", "text_field", "guided_attention",
               "guided_attention_width", "part_seconds", "best_metric")  # fmt: skip
# (a setting left at None is not recorded: checkpoints made before it existed still resume)


@dataclass(frozen=True)
class SpeechLLMSettings:
    train: str = "lora"  # lora: adapters + projector; all: the whole decoder + projector
    max_steps: int = 1000
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    batch_seconds: float = 60.0  # audio per batch (the decoder sees ~12.5 tokens a second)
    max_batch_size: int = 8
    seed: int = 0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    stack: int = 4  # a new projector's frames per audio token
    instruction: str = ""  # a new recognizer's text between the audio and the transcript
    text_field: str = "normalized"
    eval_every: int = 200
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
    max_new_tokens: int | None = None  # validation's longest transcript; None: by the clip (generation_budget)
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    log_every: int = 25
    device: str = "auto"
    # activation checkpointing of every layer (tala.training.checkpoint_activations): less memory, more
    # compute, the same steps (so not a resume key: switch it on to resume after running out of memory)
    gradient_checkpointing: bool = False
    # Keep each training clip's encoder frames after its first batch (the encoder is frozen, so they
    # never change): later epochs, and a run resumed after a kill, skip the encoder. Disk, in the
    # checkpoint folder (removed at the end): frames x d_model x 4 bytes (whisper-small: 154 kB per
    # second of audio, 0.55 GB an hour).
    cache_frames: bool = False
    # a prior on where the transcript reads the audio (tala.finetune.guided: the clip's diagonal, or
    # the manifest's word_times), for a decoder trained from scratch
    guided_attention: float = 0.0
    guided_attention_width: float = 0.1

    def check(self) -> None:
        check_shared_settings(self, TRAIN_MODES)
        if self.max_steps < 1 or self.warmup_steps < 0 or self.max_batch_size < 1 or self.batch_seconds <= 0:
            raise ValueError("max_steps >= 1, warmup_steps >= 0, max_batch_size >= 1 and batch_seconds > 0 are required")
        if self.learning_rate <= 0 or self.lora_r < 1 or self.stack < 1:
            raise ValueError("learning_rate, lora_r and stack must be positive")


@dataclass
class Start:
    model: SpeechLLMV1
    tokenizer: object
    config: SpeechLLMConfig
    source: str


def load_start(settings: SpeechLLMSettings, start: str | Path | None, encoder: str | None,
               decoder: str | None, models_dir=None) -> Start:
    """The recognizer training starts from: a saved one (``start``), or two bases and a new
    projector (hub ids read from ``models_dir`` when download_models put them there)."""
    if start is not None:
        try:
            model, tokenizer, config = load_speechllm(Path(start), trainable_lora=True, models_dir=models_dir)
        except SpeechLLMError as err:
            raise InputError("--start", str(err)) from None
        return Start(model, tokenizer, config, str(start))
    if not encoder or not decoder:
        raise InputError("--start", "give a saved recognizer (--start) or both --encoder and --decoder")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tala.hub import resolve_model

    whisper = load_whisper_encoder(resolve_model(encoder, models_dir))
    decoder_path = resolve_model(decoder, models_dir)
    lm = AutoModelForCausalLM.from_pretrained(decoder_path)
    tokenizer = AutoTokenizer.from_pretrained(decoder_path)
    config = SpeechLLMConfig(encoder=encoder, decoder=decoder, stack=settings.stack, instruction=settings.instruction,
                             lora_r=settings.lora_r, lora_alpha=settings.lora_alpha,
                             lora_dropout=settings.lora_dropout, lora_targets=tuple(settings.lora_targets))  # fmt: skip
    projector = AudioProjectorV1(whisper.config.d_model, lm.config.hidden_size, settings.stack)
    model = SpeechLLMV1(whisper, projector, lm, prompt_for(tokenizer, settings.instruction))
    return Start(model, tokenizer, config, f"{encoder} + {decoder}")


def add_lora(start: Start, settings: SpeechLLMSettings) -> None:
    """Wrap the decoder with new LoRA adapters (a decoder that has adapters keeps training them)."""
    if hasattr(start.model.decoder, "peft_config"):
        return
    from peft import LoraConfig, get_peft_model

    try:
        check_lora_targets(start.model.decoder, settings.lora_targets)
    except SpeechLLMError as err:
        raise InputError("--lora-targets", str(err)) from None
    lora = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                      target_modules=list(settings.lora_targets), task_type="CAUSAL_LM")  # fmt: skip
    start.model.decoder = get_peft_model(start.model.decoder, lora)
    start.config = SpeechLLMConfig(**{**{k: v for k, v in asdict(start.config).items() if k != "class_name"},
                                      "lora_r": settings.lora_r, "lora_alpha": settings.lora_alpha,
                                      "lora_dropout": settings.lora_dropout,
                                      "lora_targets": tuple(settings.lora_targets)})  # fmt: skip


def trainable_parameters(model: SpeechLLMV1, mode: str) -> dict[str, torch.nn.Parameter]:
    """The parameters that learn, by name: the projector, and the LoRA adapters or the whole decoder."""
    model.decoder.requires_grad_(False)
    model.projector.requires_grad_(True)
    for name, param in model.decoder.named_parameters():
        if mode == "all" or "lora_" in name:
            param.requires_grad_(True)
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def usable_examples(examples: list[Example], tokenizer, model: SpeechLLMV1, window: int,
                    log=sys.stderr) -> tuple[list[Example], list[list[int]], list[str]]:
    """The examples the recognizer can learn from, their target ids, and one line per example left
    out (too long for the encoder's window, or transcript too long for the decoder)."""
    limit = int(getattr(model.decoder.config, "max_position_embeddings", 1 << 30))
    kept, targets, left_out = [], [], []
    for example in examples:
        ids = tokenizer(example.text, add_special_tokens=False).input_ids
        n_samples = round(example.duration * 16_000)
        try:
            check_clip(n_samples, window, example.where)
            check_sequence(len(ids), n_samples, model.projector.stack, model.prompt, limit, example.where)
        except SpeechLLMError as err:
            left_out.append(f"left out: {err}")
            print(left_out[-1], file=log)
            continue
        kept.append(example)
        targets.append(ids)
    return kept, targets, left_out


def encoder_key(encoder, name: str) -> str:
    """A short digest of the encoder's name and configuration: cached frames of another encoder are
    never read."""
    import hashlib
    import json

    text = json.dumps([name, encoder.config.to_dict()], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def clip_key(example: Example) -> str:
    """A cached clip's file name: a digest of its audio file (path, size, modification time), its
    span in it (a part) and duration, so a manifest reordered or rewritten between a kill and the
    resume never reads another clip's frames."""
    import hashlib

    stat = example.audio.stat()
    span = "" if example.span is None else f"|{example.span[0]}-{example.span[1]}"
    text = f"{example.audio}|{stat.st_size}|{stat.st_mtime_ns}|{example.duration}{span}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def encode_clips(model: SpeechLLMV1, feature_extractor, examples: list[Example], device) -> list[torch.Tensor]:
    return encode_audio(model, feature_extractor, [load_audio(e) for e in examples], device)


def encode_audio(model: SpeechLLMV1, feature_extractor, audio: list[np.ndarray], device) -> list[torch.Tensor]:
    return model.encode(log_mel(feature_extractor, audio).to(device), [len(a) for a in audio])


def evaluate(model: SpeechLLMV1, tokenizer, feature_extractor, examples: list[Example], targets: list[list[int]],
             device, settings: SpeechLLMSettings, pace=None) -> dict:
    """Validation loss (mean over clips), CER and WER (tala.ctc_text; decoded with
    ``settings.num_beams``) and a few transcripts; each batch of clips is encoded once for both.
    A clip longer than ``settings.part_seconds`` is read in parts, and with a ``pace``
    (:class:`tala.finetune.evaluate_asr.Pace`) each clip's reading is checked, as evaluate_asr
    reads and checks it (``reread``: the clips read again)."""
    was_training = model.training
    model.eval()
    loss_sum, reread = 0.0, 0
    hyps: dict[int, str] = {}
    order = sorted(range(len(examples)), key=lambda i: examples[i].duration)
    limit = decoder_limit(model)  # as evaluate_asr's

    def budget(n_samples: int, frames: torch.Tensor) -> int:
        b = generation_budget(n_samples, model.prefix_positions(frames.shape[0]), limit)
        return min(b, settings.max_new_tokens) if settings.max_new_tokens else b

    def read_part(piece: np.ndarray) -> str:  # one part alone, as evaluate_asr reads it
        return read_clip(model, tokenizer, feature_extractor, piece, device, settings.max_new_tokens,
                         settings.num_beams)

    with torch.inference_mode():
        for batch in pack_batches(order, [e.duration for e in examples], settings.batch_seconds,
                                  settings.max_batch_size):
            with autocast(device):
                audio = [load_audio(examples[i]) for i in batch]
                frames = encode_audio(model, feature_extractor, audio, device)
                loss_sum += float(model.loss(frames, [targets[i] for i in batch])) * len(batch)
                # a clip read in parts (settings.part_seconds) is read below; the others in one batch
                whole = [k for k, samples in enumerate(audio)
                         if not settings.part_seconds or len(samples) <= settings.part_seconds * SAMPLE_RATE]
                budgets = [budget(round(examples[batch[k]].duration * SAMPLE_RATE), frames[k]) for k in whole]
                ids_of = model.generate([frames[k] for k in whole], max(budgets), settings.num_beams) if whole else []
                firsts = {k: tokenizer.decode(ids[:b], skip_special_tokens=True)
                          for k, ids, b in zip(whole, ids_of, budgets)}  # fmt: skip
                for k, (i, samples) in enumerate(zip(batch, audio)):
                    hyps[i], _, parts = read_in_parts(samples, read_part, pace, settings.part_seconds, firsts.get(k))
                    reread += parts > 0
    model.train(was_training)
    refs = [normalize_for_scoring(e.text) for e in examples]
    predictions = [normalize_for_scoring(hyps[i]) for i in range(len(examples))]
    rates = error_rates(refs, predictions)
    return {"loss": loss_sum / len(examples), "cer": rates["cer"], "wer": rates["wer"], "reread": reread,
            "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, predictions))[:2]]}


@dataclass(frozen=True)
class TrainResult:
    out: Path
    steps: int
    resumed_from: int | None
    final_eval: dict | None
    elapsed_s: float


def train(train_manifests, out: str | Path, settings: SpeechLLMSettings, valid_manifests=(), start=None,
          encoder: str | None = None, decoder: str | None = None, checkpoint_dir=None, progress: bool = True,
          keep_checkpoint_dir: bool = False, on_step=None, models_dir=None) -> TrainResult:
    """Train to ``settings.max_steps`` (or early stop), resuming from ``<out>.checkpoints``; write ``out`` last."""
    settings.check()
    out = Path(out)
    root = checkpoint_root(out, checkpoint_dir)
    torch.manual_seed(settings.seed)  # a new projector's and new adapters' initial weights
    began = load_start(settings, start, encoder, decoder, models_dir)
    if settings.train == "lora":
        add_lora(began, settings)
    model, tokenizer = began.model, began.tokenizer
    device = pick_device(settings.device)
    model.to(device)
    guided = settings.guided_attention > 0
    if guided:
        eager_attention(model.decoder)
    if settings.gradient_checkpointing:
        checkpoint_activations(model.decoder)
    window = encoder_window_samples(model.encoder.config)
    feature_extractor = feature_extractor_for(model.encoder.config)
    train_all = [e for m in train_manifests for e in read_manifest(m, settings.text_field)]
    valid_all = read_held_out(valid_manifests, settings.text_field, NO_VALIDATION)
    # a long clip is learned in the parts it is read in (part_seconds); the pace is the whole clips'
    train_parts = training_parts(train_all, settings.part_seconds)
    train_examples, train_targets, left_out = usable_examples(train_parts, tokenizer, model, window)
    valid_examples, valid_targets, valid_left_out = usable_examples(valid_all, tokenizer, model, window)
    pace = train_pace(train_all) if settings.reread else None
    unwritable = report_unwritable(tokenizer, began.config.decoder, {"train": (train_all, train_manifests),
                                                                      "valid": (valid_all, valid_manifests)})
    if not train_examples:
        raise InputError(train_manifests[0], "no clip fits the encoder's window and the decoder's positions")
    durations = [e.duration for e in train_examples]
    # guided: each token's time where the manifest gives its words' times (else the diagonal)
    train_times = [token_times(tokenizer, e.text, t, e.word_times) if guided else None
                   for e, t in zip(train_examples, train_targets)]  # fmt: skip

    named = trainable_parameters(model, settings.train)
    params = list(named.values())
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = warmup_decay_schedule(optimizer, settings.warmup_steps, settings.max_steps, settings.schedule,
                                      settings.min_lr_ratio)  # fmt: skip
    modules, states = {"trained": TrainedTensors(named)}, {"optimizer": optimizer, "scheduler": scheduler}
    torch.manual_seed(settings.seed)
    root.mkdir(parents=True, exist_ok=True)
    data = {"train": [str(Path(m).resolve()) for m in train_manifests], "examples": len(train_examples),
            "total_s": round(sum(durations), 3)}  # fmt: skip
    recorded = {k: list(v) if isinstance(v, tuple) else v for k in RESUME_KEYS if (v := getattr(settings, k)) is not None}
    fresh = new_position(settings=recorded, data=data)
    start_event = {"model": began.source, "trainable_parameters": sum(p.numel() for p in params),
                   "device": str(device), "left_out": len(left_out)}  # fmt: skip
    resumed = resume(root, fresh, modules, states, start=start_event, match=("settings", "data"))
    model.train()

    def batches_of_epoch(epoch: int) -> list[list[int]]:
        return duration_batches(durations, settings.seed, epoch, settings.batch_seconds, settings.max_batch_size,
                                float(window) / 16_000)  # fmt: skip

    frames_dir = root / f"frames-{encoder_key(model.encoder, began.config.encoder)}"

    def frames_of(index: list[int]) -> list[torch.Tensor]:
        """The clips' encoder frames; with cache_frames each clip's are encoded once, kept as .npy in
        the checkpoint folder (a resumed run reads them back instead of encoding again)."""
        if not settings.cache_frames:
            return encode_clips(model, feature_extractor, [train_examples[i] for i in index], device)
        paths = {i: frames_dir / f"{clip_key(train_examples[i])}.npy" for i in index}
        missing = [i for i in index if not paths[i].exists()]
        if missing:
            frames_dir.mkdir(exist_ok=True)
            for i, f in zip(missing, encode_clips(model, feature_extractor, [train_examples[i] for i in missing],
                                                  device)):  # fmt: skip
                with atomic_path(paths[i]) as tmp, open(tmp, "wb") as handle:
                    np.save(handle, f.float().cpu().numpy())
        return [torch.from_numpy(np.load(paths[i])).to(device) for i in index]

    scaler = grad_scaler(device)

    def train_step(index: list[int]) -> StepResult:
        with autocast(device):  # bf16 on CUDA; full precision on CPU and MPS
            out, spans = model.scored(frames_of(index), [train_targets[i] for i in index], guided)
            losses = {"loss": out.loss}
            if guided:
                per_s = SAMPLE_RATE / (ENCODER_HOP * model.projector.stack)  # audio tokens a second
                spans = [aligned_span(*span, train_times[i], per_s) for span, i in zip(spans, index)]
                losses["guided_loss"] = guided_attention_loss(out.attentions, spans, settings.guided_attention_width)
        optimizer.zero_grad(set_to_none=True)
        objective = losses["loss"] + settings.guided_attention * losses["guided_loss"] if guided else losses["loss"]
        scaler.scale(objective).backward()
        grad_norm, stepping = optimizer_step(optimizer, scheduler, scaler, params, settings.max_grad_norm)
        return StepResult({k: v.detach().item() for k, v in losses.items()},
                          {"lr": scheduler.get_last_lr()[0], "grad_norm": round(float(grad_norm), 4)},
                          audio_s=sum(durations[i] for i in index), skipped=not stepping)  # fmt: skip

    def run_eval(step: int) -> Evaluation:
        result = evaluate(model, tokenizer, feature_extractor, valid_examples, valid_targets, device, settings, pace)
        return Evaluation({k: result[k] for k in ("loss", "cer", "wer")},
                          {"reread": result["reread"], "examples": result["examples"]})

    def after_step(step: int, result: StepResult) -> None:
        if on_step is not None:
            on_step(step, result.losses["loss"])

    cadence = Cadence(settings.max_steps, settings.log_every, settings.eval_every, settings.checkpoint_every,
                      settings.keep_checkpoints)  # fmt: skip
    position, final = run_keeping_best(root, resumed.position, cadence, batches_of_epoch, train_step,
                                       run_eval if valid_examples else None, modules, states,
                                       metric=settings.best_metric, patience=settings.patience,
                                       min_delta=settings.min_delta, on_step=after_step,
                                       progress=progress, desc=f"speechllm ({settings.train})",
                                       evaluate_start=settings.evaluate_start)  # fmt: skip
    final_eval = None if final is None else {**final.metrics, **final.details}
    model.to("cpu").eval()
    with atomic_dir(out) as tmp:
        write_speechllm(tmp, model, began.config, tokenizer)
        copy_log_without_timing(root / CORE_LOG, tmp / LOG_FILE)
        (tmp / LORA_DIR / "README.md").unlink(missing_ok=True)  # peft's empty template: the card is below
        lora = hasattr(model.decoder, "peft_config")
        config = began.config
        write_text_atomic(tmp / "README.md", recognizer_card(
            title="Speech-LLM (Whisper encoder, projector, causal LM) fine-tuned by tala",
            what=(f"The frozen encoder of `{config.encoder}`, a projector ({config.stack} frames stacked) and the "
                  f"causal LM `{config.decoder}`" + (" with LoRA adapters" if lora else f", trained ({settings.train})")
                  + f" (the start: `{began.source}`): a speech recognizer of the clips below."),
            base=config.decoder, generator="tala.finetune.speechllm", settings=asdict(settings),
            train=split_of(train_manifests, train_all, left_out_clips(train_parts, train_examples)),
            valid=split_of(valid_manifests, valid_all, len(valid_left_out)) if valid_manifests else None,
            start=start_evaluation(root / CORE_LOG), final=final_eval, best=position.get("best"),
            steps=position["step"], start_name=f"`{began.source}`", lora=lora, unwritable=unwritable,
            tags=("whisper", "speech-llm"),
            load=SPEECHLLM_LOAD))  # fmt: skip
        write_json_atomic(tmp / INFO_FILE, {
            "generator": "tala.finetune.speechllm",
            "tala_version": tala.__version__,
            "start_model": began.source,
            "settings": asdict(settings),
            "train_manifests": [str(m) for m in train_manifests],
            "valid_manifests": [str(m) for m in valid_manifests],
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
    else:  # the checkpoints and log stay; the frame cache only served this run (~0.55 GB an hour of audio)
        shutil.rmtree(frames_dir, ignore_errors=True)
    return TrainResult(out, position["step"], resumed.step, final_eval, position["elapsed_s"])


SPEECHLLM_LOAD = """
from tala.models.speechllm import load_speechllm

# SpeechLLMV1: transformers' Whisper encoder and causal LM (the adapter in lora/ with peft), the
# projector from projector.safetensors, the bases as speechllm.json names them
model, tokenizer, config = load_speechllm(".")
"""


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = SpeechLLMSettings()
    parser = recognizer_parser("python -m tala.finetune.speechllm", __doc__.splitlines()[0], d, TRAIN_MODES)
    parser.add_argument("--start", type=Path, help="a saved recognizer folder (speechllm.json)")
    parser.add_argument("--encoder", help="Whisper checkpoint (hub id or folder), with --decoder")
    parser.add_argument("--decoder", help="causal LM checkpoint with its tokenizer (hub id or folder)")
    parser.add_argument("--stack", type=int, default=d.stack, help="a new projector's frames per audio token")
    parser.add_argument("--instruction", default=d.instruction, help="a new recognizer's prompt after the audio")
    parser.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.no_progress:
        quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = SpeechLLMSettings(**shared_settings(args), stack=args.stack, instruction=args.instruction,
                                 max_new_tokens=args.max_new_tokens)
    try:
        settings.check()
    except ValueError as err:
        raise InputError("settings", str(err)) from None
    result = train(args.train_manifests, args.out, settings, valid_manifests=args.valid, start=args.start,
                   encoder=args.encoder, decoder=args.decoder, checkpoint_dir=args.checkpoint_dir,
                   progress=not args.no_progress, keep_checkpoint_dir=args.keep_checkpoint_dir,
                   models_dir=args.models_dir)  # fmt: skip
    rates = "" if result.final_eval is None else (f", valid CER {100 * result.final_eval['cer']:.2f} %"
                                                   f" WER {100 * result.final_eval['wer']:.2f} %")  # fmt: skip
    resumed = "" if result.resumed_from is None else f" (resumed at step {result.resumed_from})"
    print(f"{result.out}: {result.steps} steps{resumed}, {result.elapsed_s:.0f} s{rates}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
