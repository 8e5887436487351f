"""What the demo stand-ins' command lines share (``python -m tala.demo.speechllm``, ``... .moonshine``):
the options, the checks before hours of work, the stage times, the closing lines."""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tala.demo import DEMO_ROOT
from tala.demo.text import LANGUAGES
from tala.errors import InputError

DEFAULT_SEED = 20_240_611  # the demo CTC model's: the training speech's first utterances are its
DEFAULT_WORK = Path(".cache/demo_speechllm")  # shared by the stand-ins' recipes (data, teacher, tokenizer)
TEACHER = Path("resources/demo/model")


class Stopwatch:
    """Runs a recipe's stages and keeps each one's seconds (a skipped stage takes ~0)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn: Callable, *args, **kwargs):
        began = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - began, 1)
        return result


def last_made(folders: Iterable[Path], marker: str) -> int:
    """The index of the last stage folder holding its finished output (``marker``), -1 when none:
    a recipe runs only the stages after it (a work folder may keep only its last stage)."""
    return max((i for i, out in enumerate(folders) if (out / marker).exists()), default=-1)


def parse_args(argv, module: str, description: str, default_out: str,
               options: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The stand-ins' shared options, and a recipe's own (``options`` adds them)."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--out", type=Path, default=Path(default_out), help="default: %(default)s")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="scratch (data, stages, checkpoints), shared by the stand-ins' recipes")
    parser.add_argument("--demo", type=Path, default=DEMO_ROOT)
    parser.add_argument("--teacher", type=Path, default=TEACHER, help="the demo CTC model (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--workers", type=int, default=2, help="synthesis processes")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")
    if options is not None:
        options(parser)
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace, module: str) -> str:
    """Torch threads, the tools and the teacher checked; the command that remakes the result."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    for tool in ("espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            raise InputError(tool, "not found on PATH: the stand-in is trained on espeak-ng speech (apt-get install "
                                   "espeak-ng ffmpeg)")
    if not (args.teacher / "vocab.json").is_file():
        raise InputError(args.teacher, "not the demo CTC model (no vocab.json): run `make demo-model` or give --teacher")
    command = f"PYTHONPATH=scripts python -m {module} --out {args.out}"
    return command if args.seed == DEFAULT_SEED else f"{command} --seed {args.seed}"


def print_summary(report: dict) -> None:
    for lang, rates in report["summary"].items():
        print(f"{LANGUAGES[lang].name}: {rates['verses']} verses, CER {100 * rates['cer']:.2f} %, "
              f"WER {100 * rates['wer']:.2f} %")
