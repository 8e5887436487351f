"""Build the demo's tiny MMS-style CTC ASR model, reproducibly, from synthesized speech only.

The demo corpus (``resources/demo``) is read by espeak-ng; so is everything this model learns
from, but never a sentence of the demo chapters: the training texts are random sentences made
of common words and of pseudo-words drawn from each language's syllable structure and spelling,
and any sentence that shares four consecutive words with a demo verse or heading is dropped.

Stages (each is skipped when its output exists; training resumes from its checkpoints)::

    data      synthesize easy/train/valid utterances per language -> <work>/data/<lang>/<split>.jsonl
    easy      curriculum: random weights, short sentences, joint vocabulary mul -> <work>/models/easy
    base      all parameters, the full data of both languages, mul           -> <work>/models/base
    scripture two passes more, with Portuguese narrative prose             -> <work>/models/scripture{,-2}
    adapters  per language: adapter layers + lm_head on the frozen base      -> <work>/models/{smo,por}
    pack      the shipped HF folder, adapter.<lang>.safetensors, card; eval  -> --out (eval.json)

Each training stage is one :func:`tala.finetune.train_ctc.train` run. ``<work>`` is ``.cache/demo_model``.

    PYTHONPATH=scripts python -m tala.demo.model --out resources/demo/model

The model is MMS-shaped (stable layer norm, attention adapters in every layer, a nested per-language
``vocab.json``), so the workflow loads it exactly as it loads ``facebook/mms-1b-all``::

    model = Wav2Vec2ForCTC.from_pretrained(path); model.load_adapter("smo")
    processor = Wav2Vec2Processor.from_pretrained(path); processor.tokenizer.set_target_lang("smo")

The parts: training texts (``tala.demo.sentences``) and speech (``tala.demo.training_speech``),
the recipe (``tala.demo.ctc_recipe``), the evaluation (``tala.demo.evaluate``), the shipped
folder (``tala.demo.pack``, ``tala.demo.card``).
"""

from __future__ import annotations

import os

# On a laptop shared with other work, OpenMP threads that spin while waiting for a busy core make
# training several times slower; passive waiting costs little when the cores are free. Set before
# torch starts (torch is imported lazily below).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import shutil
import sys
from pathlib import Path

from tala.demo import DEMO_ROOT
from tala.demo.ctc_recipe import DEFAULT_SEED, DEFAULT_WORK, Recipe, run_recipe
from tala.demo.evaluate import evaluate_demo, print_eval
from tala.demo.pack import pack
from tala.errors import InputError, run_cli


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tala.demo.model",
        description="Synthesize training speech, train the demo's tiny MMS-style CTC model (base, then one adapter "
        "per language), evaluate it on the demo chapters and write the shipped model folder.",
    )
    parser.add_argument("--out", type=Path, default=Path("resources/demo/model"), help="default: %(default)s")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="scratch: data, stages, checkpoints (default: %(default)s)")
    parser.add_argument("--demo", type=Path, default=DEMO_ROOT, help="the demo corpus (default: resources/demo)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=2, help="synthesis processes (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate --out on the demo chapters")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.eval_only:
        report = evaluate_demo(args.out, args.demo, args.work / "eval")
        print_eval(report)
        return 0
    for tool in ("espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            raise InputError(tool, "not found on PATH: the demo model is trained on espeak-ng speech, stored as MP3/MP4 "
                                   "with ffmpeg (Debian/Ubuntu: apt-get install espeak-ng ffmpeg)")
    recipe = Recipe()
    command = "PYTHONPATH=scripts python -m tala.demo.model --out " + str(args.out)
    if args.seed != DEFAULT_SEED:
        command += f" --seed {args.seed}"
    run = run_recipe(args.work, recipe, args.seed, args.workers)
    report = pack(args.out, args.work, run, recipe, args.seed, args.demo, command)
    print_eval(report)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
