"""The model card (README.md) of a fine-tuned recognizer, in place of peft's empty template: what it
was tuned from and on, with which settings, how it and its start read the validation clips, and how
to load it with plain transformers + peft."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tala
from tala.fileio import read_jsonl

# the settings a card lists, as the trainers name them (those a trainer lacks are skipped)
CARD_SETTINGS = ("train", "max_steps", "learning_rate", "schedule", "warmup_steps", "batch_seconds", "max_batch_size",
                 "accumulate", "lora_r", "lora_alpha", "lora_dropout", "lora_targets", "lora_parts", "label_smoothing",
                 "start_kl", "guided_attention", "part_seconds", "num_beams", "eval_every", "seed",
                 "lm_head_epochs", "lm_head_lr", "epochs", "lr", "warmup_epochs")  # fmt: skip
OFF_AT_ZERO = ("guided_attention",)  # listed only when on


@dataclass(frozen=True)
class Split:
    """A split the recognizer was tuned or validated on."""

    manifests: tuple[str, ...]
    clips: int
    seconds: float
    left_out: int = 0


def start_evaluation(log: Path) -> dict | None:
    """The start's validation (step 0 of a run with evaluate_start) from a trainer's log."""
    for _, record in read_jsonl(log):
        if record.get("step") == 0 and "eval_cer" in record and "event" not in record:
            return {"loss": record.get("eval_loss"), "cer": record["eval_cer"], "wer": record.get("eval_wer")}
    return None


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _loss(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _split_row(name: str, split: Split | None) -> str:
    if split is None or not split.clips:
        return f"| {name} | {', '.join(split.manifests) if split else '–'} | 0 | – | – |"
    return (f"| {name} | {', '.join(f'`{m}`' for m in split.manifests)} | {split.clips} | {split.seconds / 60:.1f} | "
            f"{split.left_out} |")


def recognizer_card(*, title: str, what: str, base: str, generator: str, settings: dict, train: Split,
                    valid: Split | None, start: dict | None, final: dict | None, best: dict | None, steps: int,
                    load: str, start_name: str, lora: bool = True, tags: tuple[str, ...] = (),
                    artifact: dict | None = None, unwritable: dict | None = None) -> str:
    """The card's Markdown: YAML front matter as the hub reads it, then the sections. ``base``: the
    model the weights apply to; ``start_name``: what training began from (Markdown); ``best``: the
    kept step (``{"step": ...}``, 0 the start; a ``label`` says it otherwise); ``unwritable``: per
    split, the characters its tokenizer cannot write (:func:`tala.finetune.tokens.report_unwritable`)."""
    lines = ["---", f"base_model: {base}", f"library_name: {'peft' if lora else 'transformers'}",
             "pipeline_tag: automatic-speech-recognition", "tags:",
             *(f"- {t}" for t in ("tala", *(("lora",) if lora else ()), *tags)), "---", "", f"# {title}", "", what, "",
             "## Data", "", "| split | manifests | clips | minutes | left out |", "|---|---|---:|---:|---:|",
             _split_row("train", train), _split_row("validation", valid), ""]  # fmt: skip
    if train.left_out or (valid and valid.left_out):
        lines += ["Left-out clips (too long for the model, or their transcript for its decoder; a clip counts "
                  "once when some of the parts it is learned in were left out) are named in `training.json`.",
                  ""]  # fmt: skip
    for split, found in (unwritable or {}).items():
        if found["clips"]:
            chars = ", ".join(f"`{ch}` ({n})" for ch, n in list(found["characters"].items())[:12])
            lines += [f"{found['clips']} {split} clips hold characters the tokenizer cannot write: {chars}. The "
                      "model writes nothing for them (`<unk>`); `training.json` lists them all.", ""]  # fmt: skip
    listed = ", ".join(f"{k} {'/'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                       for k in CARD_SETTINGS if (v := settings.get(k)) is not None and (v or k not in OFF_AT_ZERO))
    lines += ["## Training", "", f"`python -m {generator}` (tala {tala.__version__}), {steps} steps"
              + (f": {listed}." if listed else "."),
              "The log of every step and validation is `training_log.jsonl`; all settings are in `training.json`.", ""]
    lines += ["## Validation", ""]
    if final is None:
        lines += ["No validation clips: the last step's weights were kept, and nothing here says how well it "
                  "reads.", ""]  # fmt: skip
    else:
        kept = ""
        if best is not None:
            metric = next((k for k in best if k not in ("step", "label")), "cer")  # what picked it
            metric = {"cer": "CER", "wer": "WER"}.get(metric, metric)
            kept = best.get("label") or f"step {best['step']}, the best validation {metric}"
            if best["step"] == 0 and "label" not in best:
                kept = "step 0: the start read best and is what was kept"
            kept = f" ({kept})"
        lines += ["| model | loss | CER | WER |", "|---|---:|---:|---:|"]
        if start is not None:
            lines.append(f"| the start ({start_name}) | {_loss(start.get('loss'))} | {_pct(start.get('cer'))} | "
                         f"{_pct(start.get('wer'))} |")  # fmt: skip
        lines += [f"| fine-tuned{kept} | {_loss(final.get('loss'))} | {_pct(final.get('cer'))} | "
                  f"{_pct(final.get('wer'))} |", "",
                  "The held-out test split is judged by the workflow's `evaluate_asr`, not here.", ""]  # fmt: skip
    if artifact is not None:
        lines += ["## Artifact test", "", f"This folder loaded back and run on {len(artifact['samples'])} test "
                  f"clips (`artifact_test.json`): WER {_pct(artifact['wer'])}.", ""]  # fmt: skip
    lines += ["## Use", "", "```python", load.strip(), "```", ""]
    return "\n".join(lines)


def split_of(manifests, examples, left_out: int = 0) -> Split:
    return Split(tuple(str(m) for m in manifests), len(examples), sum(e.duration for e in examples), left_out)
