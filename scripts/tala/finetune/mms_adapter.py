"""Fine-tune an MMS language adapter on a language's dataset, in two phases, resumable.

    python -m tala.finetune.mms_adapter --language tuvaluan --lang tvl --start-adapter smo \\
        --model facebook/mms-1b-all --train results/tuvaluan/dataset/train.jsonl \\
        --valid results/tuvaluan/dataset/valid.jsonl --out results/tuvaluan/models/mms_adapter

As the MMS recipe (and seed 000's ``finetune_mms.py``) does it:

1. phase ``lm_head``: the output layer alone, adapters and base frozen, ``--lm-head-epochs`` at
   ``--lm-head-lr``;
2. phase ``adapter``: the attention adapters of every layer and the output layer, ``--epochs`` at
   ``--lr``.

The model starts with the adapter ``--start-adapter`` (default ``--lang``): for a language the
model already has, its own adapter; for a new code (``tvl``), a neighbour's (``smo``), with a
vocabulary made of the characters of the training texts and an output layer whose rows for the
letters both alphabets share start from the neighbour's. Each phase is :func:`tala.finetune.train_ctc.train`
(the shared training core: checkpoints, resume, log): its validation CER is measured every
``--eval-every`` steps (default: once an epoch) and at the end, the best weights are kept and
``--patience`` evaluations without a better CER stop the phase early. Epochs become steps with the
duration-bucketed batches of the training split (``--batch-seconds`` of padded audio, at most
``--max-batch-size`` clips); the warm-up is ``--warmup-epochs`` of each phase (at most a quarter of
it).

Work happens in ``<out>.checkpoints/`` (``phase1-lm_head/`` the first phase's model,
``phase1-lm_head.checkpoints/``, ``phase2-adapter.checkpoints/``): a rerun after a kill skips a
finished phase and resumes the other from its newest checkpoint. The output folder appears,
complete, at the end: the second phase's model (``save_pretrained`` files, the processor,
``adapter.<lang>.safetensors``), so that ``Wav2Vec2ForCTC.from_pretrained(out)`` +
``load_adapter(lang)`` loads it and ``transcribe.model: <out>`` with ``mms_lang: <lang>`` uses it;
``training.json`` with both phases, and ``training_log.jsonl`` (both phases' logs, each line with
its ``phase``, without wall times: two runs give the same bytes; the step's stderr has the speed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

from tala.device import ensure_mps_fallback

ensure_mps_fallback()

import tala  # noqa: E402
from tala.errors import InputError, run_cli  # noqa: E402
from tala.fileio import atomic_dir, write_json_atomic, write_text_atomic  # noqa: E402
from tala.finetune.card import recognizer_card, split_of, start_evaluation  # noqa: E402

PHASE1, PHASE2 = "phase1-lm_head", "phase2-adapter"
INFO_FILE = "training.json"
LOG_FILE = "training_log.jsonl"
TEXT_FIELD = "normalized"  # tala's datasets: the text spelled with the model's letters


def phase_steps(epochs: float, steps_per_epoch: int) -> int:
    return max(1, round(epochs * steps_per_epoch))


def warmup(warmup_epochs: float, steps_per_epoch: int, steps: int) -> int:
    return min(round(warmup_epochs * steps_per_epoch), steps // 4)


def _complete(folder: Path) -> bool:
    return (folder / INFO_FILE).is_file()


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link (a billion-parameter model is not copied), a copy across file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _merge_logs(parts: list[tuple[str, Path]], target: Path) -> None:
    """Both phases' logs in one, each line with its phase, without the wall times (so that two runs
    give the same bytes; the step's own log has them)."""
    from tala.training import TIMING_FIELDS

    with target.open("w", encoding="utf-8") as out:
        for phase, log in parts:
            for line in log.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    record = {k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS}
                    out.write(json.dumps({"phase": phase, **record}, ensure_ascii=False) + "\n")


def _throughput(log: Path) -> str:
    """The phase's speed from its log's last line with one (for the step's own log)."""
    timed = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if "steps_per_s" in line]
    if not timed:
        return ""
    last = timed[-1]
    return f"{last['elapsed_s']:.0f} s of training, {last['step'] / max(last['elapsed_s'], 1e-9):.2f} steps/s"


def finetune(args: argparse.Namespace) -> dict:
    from tala.finetune.train_ctc import TrainSettings, epoch_batches, read_manifest, train

    train_path, valid_path = Path(args.train), Path(args.valid) if args.valid else None
    train_examples = read_manifest(train_path, TEXT_FIELD, allow_empty=True)
    if not train_examples:
        raise InputError(train_path, f"{args.language}: the train split is empty (every clip was dropped upstream; "
                                     f"see the dataset card beside it): nothing to fine-tune on")  # fmt: skip
    valid_examples = read_manifest(valid_path, TEXT_FIELD, allow_empty=True) if valid_path is not None else []
    valid = [valid_path] if valid_examples else []
    if valid_path is not None and not valid:
        print(f"{args.language}: the valid split is empty: no validation, the last weights are kept", file=sys.stderr)
    start_adapter = args.start_adapter or args.lang
    out = Path(args.out)
    root = out.with_name(out.name + ".checkpoints")
    root.mkdir(parents=True, exist_ok=True)

    base = TrainSettings(
        max_duration_s=args.max_duration, batch_seconds=args.batch_seconds, max_batch_size=args.max_batch_size,
        seed=args.seed, weight_decay=args.weight_decay, text_field=TEXT_FIELD, patience=args.patience,
        min_delta=args.min_delta, checkpoint_every=args.checkpoint_every, log_every=args.log_every,
        device=args.device, schedule="linear", evaluate_start=True,
        gradient_checkpointing=args.gradient_checkpointing,
    )  # fmt: skip
    durations = [e.duration for e in train_examples]
    steps_per_epoch = len(epoch_batches(durations, base, 0))
    if steps_per_epoch == 0:
        raise InputError(train_path, f"{args.language}: no training clip is at most {args.max_duration} s long")
    plans = []
    for phase, name, epochs, lr in (("lm_head", PHASE1, args.lm_head_epochs, args.lm_head_lr),
                                    ("adapter", PHASE2, args.epochs, args.lr)):  # fmt: skip
        steps = phase_steps(epochs, steps_per_epoch)
        every = args.eval_every or steps_per_epoch
        plans.append((name, replace(base, phase=phase, max_steps=steps, learning_rate=lr,
                                    warmup_steps=warmup(args.warmup_epochs, steps_per_epoch, steps),
                                    eval_every=every if valid else 0)))  # fmt: skip
    print(f"{args.language}: {len(durations)} training clips ({sum(durations) / 60:.1f} min), {steps_per_epoch} "
          f"batches an epoch; {plans[0][1].max_steps} lm_head steps, then {plans[1][1].max_steps} adapter steps "
          f"({args.lang} from the {start_adapter} adapter of {args.model})", file=sys.stderr)  # fmt: skip

    results = {}
    phase1_out, phase2_out = root / PHASE1, root / "phase2-adapter.model"
    (name1, settings1), (name2, settings2) = plans
    if _complete(phase1_out):
        print(f"{args.language}: phase 1 done before ({phase1_out}), skipped", file=sys.stderr)
    else:
        train([train_path], phase1_out, args.lang, settings1, valid_manifests=valid, model=args.model,
              checkpoint_dir=root / f"{name1}.checkpoints", start_adapter=start_adapter,
              progress=not args.no_progress)  # fmt: skip
    results[name1] = json.loads((phase1_out / INFO_FILE).read_text(encoding="utf-8"))
    if not _complete(phase2_out):
        train([train_path], phase2_out, args.lang, settings2, valid_manifests=valid, model=str(phase1_out),
              checkpoint_dir=root / f"{name2}.checkpoints", progress=not args.no_progress)  # fmt: skip
    results[name2] = json.loads((phase2_out / INFO_FILE).read_text(encoding="utf-8"))
    for name, folder in ((name1, phase1_out), (name2, phase2_out)):
        print(f"{args.language}: {name}: {results[name]['steps']} steps, best validation CER at step "
              f"{(results[name].get('best') or {}).get('step')}; {_throughput(folder / LOG_FILE)}", file=sys.stderr)

    info = {
        "generator": "tala.finetune.mms_adapter", "tala_version": tala.__version__, "language": args.language,
        "lang": args.lang, "start_model": args.model_given, "start_adapter": start_adapter,
        "train": str(train_path), "valid": str(valid_path) if valid else None,
        "train_clips": len(durations), "train_hours": round(sum(durations) / 3600, 4),
        "steps_per_epoch": steps_per_epoch,
        "settings": {"epochs": args.epochs, "lm_head_epochs": args.lm_head_epochs, "lr": args.lr,
                     "lm_head_lr": args.lm_head_lr, "warmup_epochs": args.warmup_epochs,
                     **{k: v for k, v in asdict(base).items() if k not in ("phase", "max_steps", "learning_rate",
                                                                            "warmup_steps", "eval_every")}},
        "phases": {name: {key: result.get(key) for key in ("steps", "best", "stopped_early_at", "final_eval",
                                                           "start_notes", "settings")}
                   for name, result in results.items()},
        "valid_cer": (results[name2].get("final_eval") or {}).get("cer"),
        "versions": results[name2].get("versions"),
    }  # fmt: skip
    kept = (results[name2].get("best") or {}).get("step")
    with atomic_dir(out) as tmp:
        for path in phase2_out.iterdir():
            if path.name not in (INFO_FILE, LOG_FILE):
                _link_or_copy(path, tmp / path.name)
        _merge_logs([("lm_head", phase1_out / LOG_FILE), ("adapter", phase2_out / LOG_FILE)], tmp / LOG_FILE)
        write_json_atomic(tmp / INFO_FILE, info)
        write_text_atomic(tmp / "README.md", recognizer_card(
            title=f"MMS with a `{args.lang}` adapter fine-tuned by tala",
            what=(f"`{args.model_given}` (wav2vec2, CTC) with its `{args.lang}` language adapter trained from the "
                  f"`{start_adapter}` one: the output layer first ({name1}), then the adapters with it ({name2}). "
                  f"The folder is the whole model with `adapter.{args.lang}.safetensors` beside it, as MMS ships."),
            base=args.model_given, generator="tala.finetune.mms_adapter",
            settings=info["settings"],
            train=split_of([train_path], train_examples),
            valid=split_of([valid_path], valid_examples) if valid_path is not None else None,
            start=start_evaluation(phase1_out / LOG_FILE), final=results[name2].get("final_eval"),
            best=None if kept is None else {"step": kept, "label": f"step {kept} of {name2}, the best validation CER"
                                            if kept else f"the end of {name1}; {name2} read no better"},
            steps=sum(r["steps"] for r in results.values()),
            start_name=f"`{args.model_given}`, adapter `{start_adapter}`", lora=False, tags=("mms", "wav2vec2", "ctc"),
            load=MMS_LOAD.replace("LANG", f'"{args.lang}"')))  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)
    return info


MMS_LOAD = """
from transformers import AutoProcessor, Wav2Vec2ForCTC

model = Wav2Vec2ForCTC.from_pretrained(".")  # this folder
model.load_adapter(LANG)
processor = AutoProcessor.from_pretrained(".")
processor.tokenizer.set_target_lang(LANG)
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tala.finetune.mms_adapter",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--language", required=True, help="the workflow's language name (for messages)")
    parser.add_argument("--lang", required=True, help="the adapter to train (MMS code; a new one gets a new adapter)")
    parser.add_argument("--start-adapter", help="the adapter to start from (default: --lang)")
    parser.add_argument("--model", required=True, help="the model folder or Hugging Face id to start from")
    parser.add_argument("--models-dir", help="where download_models put hub models (default: the hub cache)")
    parser.add_argument("--train", required=True, type=Path, help="the dataset's train.jsonl")
    parser.add_argument("--valid", type=Path, help="the dataset's valid.jsonl (validation CER, best weights)")
    parser.add_argument("--out", required=True, type=Path, help="the output model folder (written at the end)")
    parser.add_argument("--lm-head-epochs", type=float, default=1.0, help="phase 1 (default: %(default)s)")
    parser.add_argument("--epochs", type=float, default=4.0, help="phase 2 (default: %(default)s)")
    parser.add_argument("--lm-head-lr", type=float, default=1e-3, help="phase 1 peak lr (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3, help="phase 2 peak lr (default: %(default)s)")
    parser.add_argument("--warmup-epochs", type=float, default=1.0,
                        help="linear warm-up of each phase, at most a quarter of it (default: %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="default: %(default)s")
    parser.add_argument("--batch-seconds", type=float, default=100.0,
                        help="padded audio seconds per batch (default: %(default)s)")
    parser.add_argument("--max-batch-size", type=int, default=16, help="default: %(default)s")
    parser.add_argument("--max-duration", type=float, default=35.0,
                        help="leave out longer clips, seconds (default: %(default)s)")
    parser.add_argument("--eval-every", type=int, help="validation every N steps (default: once an epoch)")
    parser.add_argument("--patience", type=int, default=0,
                        help="stop a phase after N evaluations without a better CER; 0: never (default: %(default)s)")
    parser.add_argument("--min-delta", type=float, default=0.0, help="default: %(default)s")
    parser.add_argument("--checkpoint-every", type=int, default=200, help="steps (default: %(default)s)")
    parser.add_argument("--log-every", type=int, default=25, help="steps (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cuda, mps or cpu")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=False,
                        help="recompute each layer's activations in the backward pass: less GPU memory (MMS-1B's"
                             " 48 layers), more compute, the same steps")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from tala.training import quiet_libraries

    if args.no_progress:
        quiet_libraries()

    if args.threads:
        torch.set_num_threads(args.threads)
    from tala.hub import resolve_model

    args.model_given, args.model = args.model, resolve_model(args.model, args.models_dir)
    info = finetune(args)
    cer = info["valid_cer"]
    steps = " + ".join(f"{p['steps']}" for p in info["phases"].values())
    print(f"{args.out}: {args.lang} adapter, {steps} steps, valid CER "
          f"{'-' if cer is None else f'{100 * cer:.2f} %'}", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
