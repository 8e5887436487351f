"""The demo model's shipped folder: the base with the default adapter, one file per adapter, the
processor, the recorded training log, ``training.json`` (recipe, data, stages, versions), the
evaluation on the demo chapters (``eval.json``) and the model card (``README.md``)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

import tala
from tala.demo.card import model_card
from tala.demo.ctc_recipe import Recipe, RecipeRun
from tala.demo.evaluate import evaluate_demo
from tala.demo.speech import tool_version
from tala.demo.text import LANGUAGES, demo_truths, nested_vocab, normalize_text
from tala.fileio import atomic_dir, read_jsonl, write_json_atomic, write_text_atomic

DEFAULT_ADAPTER = "por"  # held in model.safetensors, as MMS ships English there


def data_summary(manifests: dict, demo_root: Path) -> dict:
    """Hours per language, and how much of the demo chapters' vocabulary the training texts contain
    (whole sentences never: see ``tala.demo.sentences.overlaps_demo``)."""
    summary = {}
    for lang, splits in manifests.items():
        records = {split: [record for _, record in read_jsonl(path)] for split, path in splits.items()}
        train_words = {w for split in ("easy", "train", "narrative", "more") for r in records.get(split, [])
                       for w in r["text"].split()}  # fmt: skip
        demo_tokens = [w for truth in demo_truths(demo_root, lang) for v in truth["verses"]
                       for w in normalize_text(v["text"], lang).split()]  # fmt: skip
        stats = {}
        for split, path in splits.items():
            stats_path = path.with_name(f"{split}.stats.json")
            if stats_path.exists():
                stats[split] = json.loads(stats_path.read_text(encoding="utf-8"))
        summary[lang] = {
            "voice": LANGUAGES[lang].voice,
            **{f"{split}_utterances": len(rows) for split, rows in records.items()},
            **{f"{split}_hours": round(sum(r["duration"] for r in rows) / 3600, 3) for split, rows in records.items()},
            "train_word_types": len(train_words),
            "demo_word_types_seen_in_training": round(len(set(demo_tokens) & train_words) / len(set(demo_tokens)), 3),
            "demo_word_tokens_seen_in_training": round(sum(w in train_words for w in demo_tokens) / len(demo_tokens), 3),
            "synthesis": stats,
        }
    return summary


def split_utterances(data: dict, split: str) -> str:
    """"4,000 samoan, 6,000 portuguese": a split's utterances per language, from
    :func:`data_summary`'s output (the languages without the split left out)."""
    return ", ".join(f"{d[f'{split}_utterances']:,} {LANGUAGES[lang].name}" for lang, d in data.items()
                     if f"{split}_utterances" in d)  # fmt: skip


def _stage_info(folder: Path) -> dict:
    info = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    stage = {k: info[k] for k in ("lang", "start_model", "start_notes", "settings", "steps", "epoch",
                                  "train_audio_s_seen", "final_eval")}  # fmt: skip
    # training.json holds no wall time (results are byte-reproducible); the log's records do.
    timed = [record for _, record in read_jsonl(folder / "training_log.jsonl") if "elapsed_s" in record]
    stage["elapsed_s"] = timed[-1]["elapsed_s"] if timed else 0.0
    return stage


def check_same_base(folders: Sequence[Path]) -> None:
    """The adapter stages froze the base: every non-adapter tensor must be identical."""
    from safetensors.torch import load_file

    reference = None
    for folder in folders:
        weights = load_file(str(folder / "model.safetensors"))
        base = {k: v for k, v in weights.items() if "adapter_layer" not in k and not k.startswith("lm_head")}
        if reference is None:
            reference = base
        elif base.keys() != reference.keys() or any(not bool((base[k] == reference[k]).all()) for k in base):
            raise RuntimeError(f"{folder}: the base weights differ from the other adapters' base")


def pack(out: Path, work: Path, run: RecipeRun, recipe: Recipe, seed: int, demo_root: Path, command: str) -> dict:
    """Assemble the shipped folder beside ``out``, evaluate it there, write the card, rename it in;
    returns the evaluation."""
    from tala.finetune.train_ctc import build_processor

    check_same_base(list(run.adapters.values()))
    trained = {**run.stages, **{f"adapter-{lang}": folder for lang, folder in run.adapters.items()}}
    with atomic_dir(out) as tmp:
        default = run.adapters[DEFAULT_ADAPTER]
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(default / name, tmp / name)
        processor = build_processor(nested_vocab(LANGUAGES), DEFAULT_ADAPTER, work / "models" / "tokenizer")
        processor.save_pretrained(tmp)
        for lang, folder in run.adapters.items():
            shutil.copyfile(folder / f"adapter.{lang}.safetensors", tmp / f"adapter.{lang}.safetensors")
        write_text_atomic(tmp / "training_log.jsonl", recorded_log(trained))
        stages = {name: _stage_info(folder) for name, folder in trained.items()}
        info = {
            "generator": "tala.demo.model",
            "tala_version": tala.__version__,
            "command": command,
            "seed": seed,
            "recipe": asdict(recipe),
            "default_adapter": DEFAULT_ADAPTER,
            "adapters": sorted(run.adapters),
            "parameters": _parameter_count(tmp),
            "files_bytes": {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.suffix == ".safetensors"},
            "data": data_summary(run.manifests, demo_root),
            "stages": stages,
            "training_s": round(sum(s["elapsed_s"] for s in stages.values()), 1),
            "versions": _versions(),
        }
        write_json_atomic(tmp / "training.json", info)
        report = evaluate_demo(tmp, demo_root, work / "eval")
        report["model"] = str(out)
        write_json_atomic(tmp / "eval.json", report)
        write_text_atomic(tmp / "README.md", model_card(info, report))
    return report


def recorded_log(trained: dict[str, Path]) -> str:
    """Every stage's training log in one JSONL, each record tagged with its stage."""
    lines = [json.dumps({"stage": stage, **record}, ensure_ascii=False)
             for stage, folder in trained.items() for _, record in read_jsonl(folder / "training_log.jsonl")]
    return "\n".join(lines) + "\n"


def _versions() -> dict:
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "espeak-ng": tool_version("espeak-ng")}  # fmt: skip


def _parameter_count(folder: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        return sum(int(np.prod(weights.get_slice(k).get_shape())) for k in weights.keys())
