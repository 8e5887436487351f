"""The command-line options the LoRA recognizer trainers share (``tala.finetune.speechllm``,
``tala.finetune.moonshine``), with each trainer's own defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

# What picks the weights a run keeps among its validations (and what early stopping watches), each
# the lower the better: the validation clips' WER, CER, or the loss of their transcripts.
BEST_METRICS = ("wer", "cer", "loss")


def recognizer_parser(prog: str, description: str, defaults, modes: tuple[str, ...]) -> argparse.ArgumentParser:
    """A parser with the shared options; ``defaults`` is the trainer's settings dataclass."""
    d = defaults
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--train", nargs="+", required=True, metavar="JSONL", dest="train_manifests")
    parser.add_argument("--valid", nargs="*", default=[], metavar="JSONL")
    parser.add_argument("--out", type=Path, required=True, help="output folder (written at the end)")
    parser.add_argument("--models-dir", help="where download_models put hub models (used before the hub)")
    parser.add_argument("--checkpoint-dir", type=Path, help="default: <out>.checkpoints")
    parser.add_argument("--keep-checkpoint-dir", action="store_true")
    parser.add_argument("--mode", choices=modes, default=d.train, help="what learns (default: %(default)s)")
    parser.add_argument("--max-steps", type=int, default=d.max_steps)
    parser.add_argument("--lr", type=float, default=d.learning_rate)
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    parser.add_argument("--batch-seconds", type=float, default=d.batch_seconds)
    parser.add_argument("--max-batch-size", type=int, default=d.max_batch_size)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--lora-r", type=int, default=d.lora_r)
    parser.add_argument("--lora-alpha", type=int, default=d.lora_alpha)
    parser.add_argument("--lora-dropout", type=float, default=d.lora_dropout)
    parser.add_argument("--lora-targets", nargs="+", default=list(d.lora_targets))
    parser.add_argument("--text-field", default=d.text_field)
    parser.add_argument("--eval-every", type=int, default=d.eval_every)
    parser.add_argument("--patience", type=int, default=d.patience,
                        help="validations without a better --best-metric before stopping; 0 = never")
    parser.add_argument("--best-metric", choices=BEST_METRICS, default=d.best_metric,
                        help="the validation metric that picks the weights kept (default: %(default)s)")
    parser.add_argument("--evaluate-start", action=argparse.BooleanOptionalAction, default=d.evaluate_start,
                        help="evaluate the start first, so that it competes for the weights kept")
    parser.add_argument("--reread", action=argparse.BooleanOptionalAction, default=d.reread,
                        help="validation reads as evaluate_asr --pace does: a part that ends too early for the "
                             "train split's letters a second, or loops, is read again in halves")
    parser.add_argument("--num-beams", type=int, default=d.num_beams,
                        help="validation's decoding: 1 greedy, more a beam search (as evaluate_asr --num-beams)")
    parser.add_argument("--part-seconds", type=float, default=d.part_seconds, metavar="S",
                        help="validation reads a clip longer than S seconds in parts of at most S, cut at quiet"
                             " points (as evaluate_asr --part-seconds), and a training clip that long is cut"
                             " between its words (the manifest's word_times) into such parts; default: whole clips")
    parser.add_argument("--guided-attention", type=float, default=d.guided_attention, metavar="W",
                        help="weight of guided attention (tala.finetune.guided): half the heads that read the audio"
                             " are rewarded for reading each token where the manifest's word_times put its word"
                             " (else the clip's diagonal); default: none")
    parser.add_argument("--guided-attention-width", type=float, default=d.guided_attention_width, metavar="F",
                        help="its prior's width, a fraction of the clip (default: %(default)s)")
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    parser.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints)
    parser.add_argument("--log-every", type=int, default=d.log_every)
    parser.add_argument("--cache-frames", action=argparse.BooleanOptionalAction, default=d.cache_frames,
                        help="compute the frozen encoder's output of each training clip once (the speech-LLM keeps"
                             " it in the checkpoint folder, Moonshine's decoder mode in host memory)")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction,
                        default=d.gradient_checkpointing,
                        help="recompute each layer's activations in the backward pass: less memory, more compute"
                             " (make bench: ~0.6x the peak at 1.1-1.3x the step time), the same steps (a run may"
                             " resume with it switched)")
    parser.add_argument("--device", default=d.device)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def shared_settings(args: argparse.Namespace) -> dict:
    """The settings fields the shared options give."""
    return dict(train=args.mode, max_steps=args.max_steps, learning_rate=args.lr, warmup_steps=args.warmup_steps,
                batch_seconds=args.batch_seconds, max_batch_size=args.max_batch_size, seed=args.seed,
                lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                lora_targets=tuple(args.lora_targets), text_field=args.text_field, eval_every=args.eval_every,
                patience=args.patience, best_metric=args.best_metric, evaluate_start=args.evaluate_start,
                reread=args.reread, num_beams=args.num_beams, part_seconds=args.part_seconds,
                checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints,
                log_every=args.log_every, cache_frames=args.cache_frames,
                guided_attention=args.guided_attention, guided_attention_width=args.guided_attention_width,
                gradient_checkpointing=args.gradient_checkpointing, device=args.device)  # fmt: skip


def check_shared_settings(settings, modes: tuple[str, ...]) -> None:
    """The checks of the fields :func:`shared_settings` gives that both trainers' settings make
    alike (each trainer's ``check`` adds its own); a ValueError names the field."""
    if settings.train not in modes:
        raise ValueError(f"train must be one of {modes}, not {settings.train!r}")
    if settings.best_metric not in BEST_METRICS:
        raise ValueError(f"best_metric must be one of {BEST_METRICS}, not {settings.best_metric!r}")
    if settings.num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, not {settings.num_beams}")
    if settings.part_seconds is not None and not settings.part_seconds > 0:
        raise ValueError(f"part_seconds must be > 0, not {settings.part_seconds}")
    if settings.guided_attention < 0 or settings.guided_attention_width <= 0:
        raise ValueError("guided_attention must be >= 0 and guided_attention_width positive")
