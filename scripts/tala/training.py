"""The shared core of tala's trainers: checkpoints, resume, the training log, lr schedules,
duration-bucketed batches, early stopping and the step loop. Nothing here knows a model.

A trainer (``tala.finetune.train_ctc``; the vocoder's generator + discriminator) supplies its
modules and stateful objects by name, a function that takes one optimizer step on a batch of
example indices, and an evaluation; :func:`run_loop` does the rest::

    modules = {"generator": generator, "discriminator": discriminator}
    states = {"generator_optimizer": g_opt, "discriminator_optimizer": d_opt,
              "generator_scheduler": g_sched, "discriminator_scheduler": d_sched}
    resumed = resume(root, new_position(settings=...), modules, states, start={...}, match=("settings",))
    position, final = run_loop(root, resumed.position, cadence, batches_of_epoch, train_step, evaluate,
                               modules, states)

Layout of ``<out>.checkpoints/`` (outside the output folder, which a workflow manager deletes when
a job fails)::

    training_log.jsonl        one JSON object per line, each with its "step"
    step-000200/
        <module>.safetensors  the weights of each named module (safetensors' save_model: shared
                              tensors, such as tied embeddings, are stored once)
        trainer_state.pt      every named optimizer, scheduler and scaler's state_dict, the
                              position and the RNG states (python, numpy, torch, CUDA, MPS);
                              read with torch.load(weights_only=True)
        state.json            the position (step, epoch, batch, loss window, early-stopping state,
                              what the trainer adds): written last, so it marks a complete checkpoint

A checkpoint is written into a temporary folder, flushed to disk (fsync), and renamed into place;
a folder without ``state.json`` is never resumed. The newest ``keep`` checkpoints and the best one
(by the early-stopping metric) are kept. A resumed run restores everything and cuts the log back
to the checkpoint's step, so that it ends with the same weights and the same log (but for the
``resume`` event and the timings) as a run that was never interrupted.

Hugging Face ``Trainer`` runs (the speech-LLM, Moonshine + LoRA) keep the Trainer's own
``checkpoint-N/`` folders, in the same ``<out>.checkpoints/`` root: its resume restores the
optimizer, scheduler, scaler and RNG states and skips the batches its sampler already gave, and
peft saves the adapters in its own format; a second resume mechanism beside it would have to be
kept in step with every Trainer release. What the Trainer does not give, the core does:
``trainer_state.json`` is written last into ``checkpoint-N/``, so ``checkpoint_dirs(root,
"checkpoint-", "trainer_state.json")`` finds the newest *complete* one to pass as
``resume_from_checkpoint`` (the Trainer's own ``get_last_checkpoint`` takes a half-written one);
a ``TrainerCallback`` writes the same training log (:func:`append_log` in ``on_log`` and
``on_evaluate``, :func:`trim_log` at resume) and applies the same early-stopping rule
(:class:`StopRule`, :func:`update_stopping`; its state rides in ``trainer_state.json`` as an
``ExportableState`` callback); :func:`warmup_decay_schedule` is passed through ``optimizers=``;
and the output folder is the same (``save_pretrained`` files, ``training.json``,
``training_log.jsonl``, renamed into place at the end).
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tala.device import ensure_mps_fallback

ensure_mps_fallback()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tala.errors import InputError  # noqa: E402
from tala.fileio import atomic_dir, write_text_atomic  # noqa: E402

CHECKPOINT_PREFIX = "step-"
POSITION_FILE = "state.json"  # written last: the completion marker
STATE_FILE = "trainer_state.pt"
LOG_FILE = "training_log.jsonl"
# The log records' wall-clock fields: left out of the copy in a trained model's folder, so that two
# runs give the same bytes (the checkpoint folder's log keeps them).
TIMING_FIELDS = ("steps_per_s", "audio_s_per_s", "elapsed_s")
DECAYS = ("linear", "cosine", "constant")
MODES = ("min", "max")
_RESERVED = ("position", "rng")
_NAME = re.compile(r"[A-Za-z0-9_]+")


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> Any: ...


def checkpoint_root(out: str | Path, checkpoint_dir: str | Path | None = None) -> Path:
    """``checkpoint_dir``, or ``<out>.checkpoints`` beside the output folder."""
    out = Path(out)
    return Path(checkpoint_dir) if checkpoint_dir is not None else out.with_name(out.name + ".checkpoints")


# %% [markdown]
# ## Checkpoints

# %%


def checkpoint_dirs(root: str | Path, prefix: str = CHECKPOINT_PREFIX,
                    marker: str = POSITION_FILE) -> list[tuple[int, Path]]:
    """Complete checkpoints ``(step, folder)`` under ``root``, oldest first: folders named
    ``<prefix><step>`` that hold ``marker``, the file written last."""
    root = Path(root)
    found = []
    if root.is_dir():
        for path in root.iterdir():
            match = re.fullmatch(rf"{re.escape(prefix)}(\d+)", path.name)
            if match and (path / marker).is_file():
                found.append((int(match.group(1)), path))
    return sorted(found)


def rng_states() -> dict:
    """The global generators' states (python, numpy, torch, every CUDA device, MPS) in types
    that ``torch.load(weights_only=True)`` reads back."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states = {"python": [version, list(internal), gauss], "torch": torch.get_rng_state(),
              "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}  # fmt: skip
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        states["mps"] = torch.mps.get_rng_state()
    return states


def set_rng_states(states: Mapping) -> None:
    """Restore what :func:`rng_states` saved (a device this machine lacks is skipped)."""
    torch.set_rng_state(states["torch"])
    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in states:
        name, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if "mps" in states and torch.backends.mps.is_available():
        torch.mps.set_rng_state(states["mps"])


def _check_names(modules: Mapping, states: Mapping) -> None:
    for name in [*modules, *states]:
        if not _NAME.fullmatch(name):
            raise ValueError(f"checkpoint names are letters, digits and _ (they name files): {name!r}")
    if clash := (set(modules) & set(states)) | (set(states) & set(_RESERVED)):
        raise ValueError(f"names used twice or reserved ({', '.join(_RESERVED)}): {sorted(clash)}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        # Some network and FUSE file systems refuse fsync on a folder; its files are on disk already.
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def save_checkpoint(root: str | Path, step: int, modules: Mapping[str, torch.nn.Module],
                    states: Mapping[str, Stateful], position: Mapping, keep: int,
                    best_step: int | None = None) -> Path:
    """Write ``root/step-NNNNNN`` atomically, then delete all but the newest ``keep`` (at least
    one) and ``best_step``'s. ``position`` must be JSON-able; it comes back from :func:`load_checkpoint`."""
    from safetensors.torch import save_model

    _check_names(modules, states)
    # Through JSON, so that the checkpoint holds what state.json says, in plain types that
    # weights_only loads (a numpy float would not).
    text = json.dumps(position, indent=2) + "\n"
    position = json.loads(text)
    root = Path(root)
    final = root / f"{CHECKPOINT_PREFIX}{step:06d}"
    with atomic_dir(final) as tmp:
        for name, module in modules.items():
            save_model(module, str(tmp / f"{name}.safetensors"), metadata={"format": "pt"})
        torch.save({**{name: obj.state_dict() for name, obj in states.items()}, "position": position,
                    "rng": rng_states()}, tmp / STATE_FILE)  # fmt: skip
        for path in tmp.iterdir():
            _fsync(path)
        (tmp / POSITION_FILE).write_text(text, encoding="utf-8")
        _fsync(tmp / POSITION_FILE)
        _fsync(tmp)
    _fsync(root)
    prune_checkpoints(root, keep, best_step)
    return final


def prune_checkpoints(root: str | Path, keep: int, best_step: int | None = None) -> None:
    """Delete complete checkpoints but the newest ``keep`` (at least one) and ``best_step``'s,
    and what killed runs left half-written (hidden ``.step-*`` folders, folders without the marker)."""
    root = Path(root)
    found = checkpoint_dirs(root)
    complete = {path for _, path in found}
    for step, path in found[: -max(1, keep)]:
        if step != best_step:
            shutil.rmtree(path, ignore_errors=True)
    for path in root.iterdir():
        leftover = path.name.startswith(f".{CHECKPOINT_PREFIX}") or (
            re.fullmatch(rf"{CHECKPOINT_PREFIX}\d+", path.name) and path not in complete)
        if leftover and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def read_position(path: str | Path) -> dict:
    """A checkpoint's position (its ``state.json``), without loading anything else."""
    return json.loads((Path(path) / POSITION_FILE).read_text(encoding="utf-8"))


def load_checkpoint(path: str | Path, modules: Mapping[str, torch.nn.Module],
                    states: Mapping[str, Stateful]) -> dict:
    """Load every named module and state from the checkpoint folder ``path``, restore the RNG
    states, and return the position. InputError naming the folder if one is missing."""
    from safetensors.torch import load_model

    _check_names(modules, states)
    path = Path(path)
    for name, module in modules.items():
        weights = path / f"{name}.safetensors"
        if not weights.is_file():
            raise InputError(path, f"checkpoint has no {weights.name}")
        load_model(module, str(weights))
    saved = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    for name, obj in states.items():
        if name not in saved:
            raise InputError(path, f"checkpoint has no {name!r} state")
        # A disabled GradScaler saves {} and an enabled one refuses to load that: a run resumed
        # on a device that needs scaling starts its scaler afresh.
        if saved[name] != {}:
            obj.load_state_dict(saved[name])
    set_rng_states(saved["rng"])
    return saved["position"]


# %% [markdown]
# ## Resume and the training log

# %%


def new_position(**extra) -> dict:
    """Where a fresh run starts; ``extra`` (JSON-able) rides along in every checkpoint.

    ``window``: the losses summed since the last log line and their count, so that a resumed
    run logs the same means as an uninterrupted one."""
    return {"step": 0, "epoch": 0, "batch": 0, "elapsed_s": 0.0, "audio_s": 0.0,
            "window": {"steps": 0, "sums": {}}, **extra}  # fmt: skip


@dataclass(frozen=True)
class Resumed:
    position: dict
    checkpoint: Path | None  # None: a fresh start

    @property
    def step(self) -> int | None:
        """The step resumed at, None for a fresh start."""
        return None if self.checkpoint is None else self.position["step"]


def resume(root: str | Path, position: dict, modules: Mapping[str, torch.nn.Module], states: Mapping[str, Stateful],
           start: Mapping, match: Sequence[str] = ()) -> Resumed:
    """Continue from the newest complete checkpoint under ``root``, or start afresh.

    Resuming loads everything (:func:`load_checkpoint`), cuts the log back to the checkpoint's
    step and logs a ``resume`` event; a fresh start empties the log and logs ``start`` (with the
    fields of ``start``). The ``match`` fields of ``position`` (settings that decide which steps
    a run takes, the data) must equal the checkpoint's, else InputError.
    """
    root = Path(root)
    log_path = root / LOG_FILE
    found = checkpoint_dirs(root)
    if not found:
        trim_log(log_path, None)
        append_log(log_path, {"step": 0, "event": "start", **start})
        return Resumed(position, None)
    _, path = found[-1]
    saved = read_position(path)
    if any(saved.get(key) != position.get(key) for key in match):
        raise InputError(path, f"checkpoint made with other settings or data; delete {root} to start afresh")
    restored = load_checkpoint(path, modules, states)
    trim_log(log_path, restored["step"])
    append_log(log_path, {"step": restored["step"], "event": "resume", "checkpoint": str(path)})
    return Resumed(restored, path)


def trim_log(path: str | Path, up_to_step: int | None) -> None:
    """Keep the log's lines up to a resumed step (what came after is done again); ``None``: none.

    A line that does not parse is one a kill cut short; it came after the checkpoint, so it goes.
    """
    path = Path(path)
    kept = []
    if up_to_step is not None and path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                step = json.loads(line).get("step", 0)
            except ValueError:
                continue
            if step <= up_to_step:
                kept.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def append_log(path: str | Path, record: Mapping) -> None:
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def copy_log_without_timing(source: str | Path, target: str | Path) -> None:
    """The training log for a model's folder: every record without its wall-clock fields."""
    lines = []
    for line in Path(source).read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = {k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS}
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    write_text_atomic(target, "".join(lines))


# %% [markdown]
# ## Learning rate, mixed precision

# %%


def warmup_decay_factor(step: int, warmup_steps: int, max_steps: int, decay: str = "cosine",
                        min_ratio: float = 0.0) -> float:
    """Linear warm-up to 1, then linear or cosine decay to ``min_ratio`` at ``max_steps`` (or none:
    ``constant``)."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if decay == "constant":
        return 1.0
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    shape = 1.0 - progress if decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_ratio + (1.0 - min_ratio) * shape


def warmup_decay_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, max_steps: int,
                          decay: str = "cosine", min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR of :func:`warmup_decay_factor` (its state_dict holds no function: it loads with
    ``weights_only``)."""
    if decay not in DECAYS:
        raise ValueError(f"decay must be one of {DECAYS}, not {decay!r}")

    def factor(step: int) -> float:
        return warmup_decay_factor(step, warmup_steps, max_steps, decay, min_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def autocast(device: torch.device):
    """bf16 autocast on CUDA (fp16 where bf16 is missing); full precision elsewhere."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler that scales only where :func:`autocast` uses fp16 (disabled otherwise)."""
    return torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())


def checkpoint_activations(model: torch.nn.Module) -> int:
    """Activation ("gradient") checkpointing on a Hugging Face model, peft-wrapped or not, and on
    the Hugging Face models inside another module: each layer keeps only its input in training
    and recomputes the rest in the backward pass, trading compute for activation memory that no
    longer grows with the layers (the speech-LLM with a SmolLM2-135M-shaped decoder, 4 clips of 20 s
    a step: 0.60-0.62x the peak memory at 1.14-1.30x the step time in two runs on 2 CPU cores,
    ``tests/bench/bench_checkpointing.py``). Non-reentrant, with the RNG state kept, so that a
    step's loss and gradients are those of a run without it (and a run may resume with it
    switched, e.g. after running out of GPU memory). Says on stderr how many layers it covers and
    returns that number; none is an error."""
    from transformers import PreTrainedModel
    from transformers.modeling_layers import GradientCheckpointingLayer

    outermost: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, PreTrainedModel) and module.supports_gradient_checkpointing and \
                not any(name.startswith(f"{o}.") or not o for o in outermost):
            module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            outermost.append(name)
    layers = sum(isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing for m in model.modules())
    if not layers:
        raise InputError(type(model).__name__, "has no layer that supports activation checkpointing "
                                               "(gradient_checkpointing)")  # fmt: skip
    print(f"activation checkpointing: {layers} layers", file=sys.stderr)
    return layers


# %% [markdown]
# ## Batches

# %%


def optimizer_step(optimizer: torch.optim.Optimizer, scheduler, scaler: torch.amp.GradScaler,
                   params: Sequence[torch.nn.Parameter], max_grad_norm: float) -> tuple[float, bool]:
    """After the backward pass(es): unscale, clip, step (a non-finite gradient skips the step: a
    GradScaler does so itself, without one it is skipped here), advance the schedule. Returns the
    gradient norm and whether the optimizer stepped."""
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    stepping = scaler.is_enabled() or bool(torch.isfinite(grad_norm))
    if stepping:
        scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return float(grad_norm), stepping


def pack_batches(order: Sequence[int], durations: Sequence[float], batch_seconds: float,
                 max_batch_size: int) -> list[list[int]]:
    """Cut ``order`` (sorted by duration, shortest first) into consecutive batches of at most
    ``max_batch_size`` examples and ``batch_seconds`` of padded audio (size x longest); a
    longer single example is a batch of its own."""
    batches: list[list[int]] = []
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) + 1 > max_batch_size or (len(batch) + 1) * durations[i] > batch_seconds):
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    return batches


def duration_batches(durations: Sequence[float], seed: int, epoch: int, batch_seconds: float,
                     max_batch_size: int, max_duration_s: float = math.inf,
                     bucket_batches: int = 50) -> list[list[int]]:
    """The batches of one epoch, a pure function of (durations, seed, epoch): shuffled, sorted by
    length inside buckets of ``bucket_batches`` full batches (little padding, some mixing), packed
    by :func:`pack_batches`, and the batches shuffled. Longer than ``max_duration_s``: left out."""
    rng = np.random.default_rng([seed, epoch])
    order = [i for i in rng.permutation(len(durations)) if durations[i] <= max_duration_s]
    bucket = bucket_batches * max_batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start : start + bucket], key=lambda i: durations[i])
        batches.extend(pack_batches(chunk, durations, batch_seconds, max_batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


@dataclass(frozen=True)
class DataPosition:
    epoch: int = 0
    batch: int = 0  # batches of the epoch already taken


def iterate_batches(batches_of_epoch: Callable[[int], list[list[int]]],
                    start: DataPosition = DataPosition()) -> Iterator[tuple[DataPosition, list[int], DataPosition]]:
    """``(where, batch, next position)`` for every batch from ``start`` on, epoch after epoch.

    ``batches_of_epoch`` must be a pure function of the epoch (:func:`duration_batches`), so that
    a run resumed from a saved position gets the batches an uninterrupted run would have.
    """
    epoch, taken = start.epoch, start.batch
    while True:
        batches = batches_of_epoch(epoch)
        if not batches:
            raise ValueError(f"epoch {epoch} has no batches")
        for index in range(taken, len(batches)):
            after = DataPosition(epoch, index + 1) if index + 1 < len(batches) else DataPosition(epoch + 1, 0)
            yield DataPosition(epoch, index), batches[index], after
        epoch, taken = epoch + 1, 0


# %% [markdown]
# ## Early stopping

# %%


@dataclass(frozen=True)
class StopRule:
    metric: str  # a key of Evaluation.metrics, e.g. "cer"
    mode: str = "min"
    patience: int = 0  # evaluations without improvement before stopping; 0: never stop, only track the best
    min_delta: float = 0.0  # an improvement must beat the best by more than this

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.patience < 0 or self.min_delta < 0:
            raise ValueError("patience and min_delta must not be negative")


@dataclass(frozen=True)
class StopState:
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the best


def improves(rule: StopRule, best: float | None, value: float) -> bool:
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - rule.min_delta if rule.mode == "min" else value > best + rule.min_delta


def update_stopping(rule: StopRule, state: StopState, step: int, value: float) -> StopState:
    """The state after an evaluation at ``step`` gave ``value``."""
    if improves(rule, state.best, value):
        return StopState(float(value), step, 0)
    return StopState(state.best, state.best_step, state.bad_evals + 1)


def should_stop(rule: StopRule, state: StopState) -> bool:
    return rule.patience > 0 and state.bad_evals >= rule.patience


def restore_best(root: str | Path, position: dict, final: "Evaluation", modules: Mapping[str, torch.nn.Module],
                 rule: StopRule, evaluate: Callable[[int], "Evaluation"]) -> "Evaluation":
    """After :func:`run_loop` with ``rule``: load the best checkpoint's modules when an earlier
    evaluation beat the final one on ``rule.metric`` (ties keep the final weights), and return the
    evaluation of the weights kept. ``position["best"]`` records which step won and its value."""
    from safetensors.torch import load_model

    stopping = position.get("stopping") or {}
    best, best_step = stopping.get("best"), stopping.get("best_step")
    last, value = position["step"], final.metrics[rule.metric]
    position["best"] = {"step": last, rule.metric: value}
    strictly = StopRule(rule.metric, rule.mode)
    if best is None or best_step is None or best_step == last or not improves(strictly, value, best):
        return final
    folder = Path(root) / f"{CHECKPOINT_PREFIX}{best_step:06d}"
    if not all((folder / f"{name}.safetensors").is_file() for name in modules):
        return final
    for name, module in modules.items():
        load_model(module, str(folder / f"{name}.safetensors"))
    append_log(Path(root) / LOG_FILE, {"step": last, "event": "best", "best_step": best_step,
                                       f"eval_{rule.metric}": best, f"final_{rule.metric}": round(value, 5)})  # fmt: skip
    position["best"] = {"step": best_step, rule.metric: best}
    return evaluate(best_step)


# %% [markdown]
# ## The step loop

# %%


@dataclass(frozen=True)
class Cadence:
    max_steps: int
    log_every: int = 25
    eval_every: int = 0  # 0: only at the end
    checkpoint_every: int = 200  # and at the last step
    keep_checkpoints: int = 2


@dataclass(frozen=True)
class StepResult:
    losses: Mapping[str, float]  # logged as their mean over the steps since the last log line
    logged: Mapping[str, Any] = field(default_factory=dict)  # logged as they are (lr, grad norm)
    audio_s: float = 0.0  # seconds of audio in the batch, for the throughput
    skipped: bool = False  # the optimizer skipped the step (gradients not finite)


@dataclass(frozen=True)
class Evaluation:
    metrics: Mapping[str, float]  # logged as eval_<name>, to 5 decimals; a StopRule watches one
    details: Mapping[str, Any] = field(default_factory=dict)  # logged as they are (a few transcripts)


def progress_bar(total: int, initial: int, desc: str, enabled: bool = True):
    """tqdm on stderr, redrawn at most every 2 s (a log file of a batch job stays short)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", file=sys.stderr, disable=not enabled,
                mininterval=2.0, dynamic_ncols=True)  # fmt: skip


def quiet_libraries() -> None:
    """For a run whose output is a log (``--no-progress``, a workflow job): no Hugging Face progress
    bars (transformers' "Loading weights", "Writing model shards": carriage returns that make one
    long line of each bar in a log file) and not the FutureWarning peft (0.21) raises by reading
    transformers 5's deprecated ``is_gradient_checkpointing`` (nothing a user can change). Our own
    lines and every other warning stay."""
    import warnings

    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # a run without transformers (the vocoder's) has no such bars
        return
    hf_logging.disable_progress_bar()


def eval_line(step: int, evaluation: Evaluation) -> str:
    return f"step {step}: " + ", ".join(f"eval {name} {value:.4f}" for name, value in evaluation.metrics.items())


def run_loop(
    root: str | Path,
    position: Mapping,
    cadence: Cadence,
    batches_of_epoch: Callable[[int], list[list[int]]],
    train_step: Callable[[list[int]], StepResult],
    evaluate: Callable[[int], Evaluation] | None,
    modules: Mapping[str, torch.nn.Module],
    states: Mapping[str, Stateful],
    stop_rule: StopRule | None = None,
    on_step: Callable[[int, StepResult], None] | None = None,
    progress: bool = True,
    desc: str = "train",
    evaluate_start: bool = False,
) -> tuple[dict, Evaluation | None]:
    """Train from ``position`` (:func:`new_position` or :func:`resume`'s) to ``cadence.max_steps``;
    return the final position and the final evaluation.

    After each step, in this order: a log line every ``log_every`` steps and at the last; an
    evaluation every ``eval_every`` steps before the last (logged, and a line on stderr); a
    checkpoint every ``checkpoint_every`` steps, at the last, and (with ``stop_rule``) at each new
    best; then ``on_step(step, result)``. At the end, an evaluation of the final weights. With
    ``stop_rule``, training ends early when its patience runs out; that evaluation is the final one.
    ``evaluate_start`` (with ``stop_rule``): a fresh run first evaluates the starting weights and
    checkpoints them as step 0, so that they compete for the best (fine-tuning that never beats
    the model it started from keeps it).
    """
    root = Path(root)
    position = copy.deepcopy(dict(position))
    log_path = root / LOG_FILE
    if stop_rule is not None:
        position.setdefault("stopping", asdict(StopState()))

    def run_eval(step: int) -> Evaluation | None:
        if evaluate is None:
            return None
        result = evaluate(step)
        append_log(log_path, {"step": step, **{f"eval_{k}": round(v, 5) for k, v in result.metrics.items()},
                              "elapsed_s": round(position["elapsed_s"], 1), **result.details})  # fmt: skip
        bar.write(eval_line(step, result), file=sys.stderr)
        return result

    def due(every: int, step: int) -> bool:
        return step == cadence.max_steps or (every > 0 and step % every == 0)

    bar = progress_bar(cadence.max_steps, position["step"], desc, progress)
    if evaluate_start and stop_rule is not None and evaluate is not None and position["step"] == 0 \
            and position["stopping"]["best"] is None:
        evaluation = run_eval(0)
        position["stopping"] = asdict(update_stopping(stop_rule, StopState(), 0, evaluation.metrics[stop_rule.metric]))
        save_checkpoint(root, 0, modules, states, position, cadence.keep_checkpoints, 0)
    batches = iterate_batches(batches_of_epoch, DataPosition(position["epoch"], position["batch"]))
    window_steps, window_audio, window_t0 = 0, 0.0, time.perf_counter()  # this process's, for the rates
    try:
        while position["step"] < cadence.max_steps and "stopped_at" not in position:
            at, indices, after = next(batches)
            t0 = time.perf_counter()
            result = train_step(indices)
            if result.skipped:
                position["skipped"] = position.get("skipped", 0) + 1
            step = position["step"] = position["step"] + 1
            position["epoch"], position["batch"] = after.epoch, after.batch
            position["elapsed_s"] += time.perf_counter() - t0
            position["audio_s"] += float(result.audio_s)
            window = position["window"]
            window["steps"] += 1
            for name, value in result.losses.items():
                window["sums"][name] = window["sums"].get(name, 0.0) + value
            window_steps += 1
            window_audio += float(result.audio_s)
            bar.update()
            bar.set_postfix({**{k: f"{v:.3f}" for k, v in result.losses.items()},
                             **{k: f"{v:.2e}" for k, v in result.logged.items() if k.startswith("lr")}},
                            refresh=False)  # fmt: skip
            if due(cadence.log_every, step):
                wall = time.perf_counter() - window_t0
                append_log(log_path, {"step": step, "epoch": at.epoch,
                                      **{k: round(s / window["steps"], 5) for k, s in window["sums"].items()},
                                      **result.logged, "steps_per_s": round(window_steps / wall, 3),
                                      "audio_s_per_s": round(window_audio / wall, 2),
                                      "elapsed_s": round(position["elapsed_s"], 1)})  # fmt: skip
                position["window"] = {"steps": 0, "sums": {}}
                window_steps, window_audio, window_t0 = 0, 0.0, time.perf_counter()
            save = due(cadence.checkpoint_every, step)
            if cadence.eval_every and step % cadence.eval_every == 0 and step < cadence.max_steps:
                evaluation = run_eval(step)
                if stop_rule is not None and evaluation is not None:
                    stopping = update_stopping(stop_rule, StopState(**position["stopping"]), step,
                                               evaluation.metrics[stop_rule.metric])  # fmt: skip
                    position["stopping"] = asdict(stopping)
                    save = save or stopping.best_step == step
                    if should_stop(stop_rule, stopping):
                        position["stopped_at"] = step
                        position["stop_eval"] = {"metrics": dict(evaluation.metrics),
                                                 "details": dict(evaluation.details)}  # fmt: skip
                        append_log(log_path, {"step": step, "event": "early_stop", "metric": stop_rule.metric,
                                              "best": stopping.best, "best_step": stopping.best_step})  # fmt: skip
                        save = True
            if save:
                best_step = position["stopping"]["best_step"] if stop_rule is not None else None
                save_checkpoint(root, step, modules, states, position, cadence.keep_checkpoints, best_step)
            if on_step is not None:
                on_step(step, result)
        final = Evaluation(**position["stop_eval"]) if "stopped_at" in position else run_eval(position["step"])
    finally:
        bar.close()
    return position, final


def run_keeping_best(
    root: str | Path,
    position: Mapping,
    cadence: Cadence,
    batches_of_epoch: Callable[[int], list[list[int]]],
    train_step: Callable[[list[int]], StepResult],
    evaluate: Callable[[int], Evaluation] | None,
    modules: Mapping[str, torch.nn.Module],
    states: Mapping[str, Stateful],
    *,
    metric: str = "cer",
    mode: str = "min",
    patience: int = 0,
    min_delta: float = 0.0,
    **loop_options,
) -> tuple[dict, Evaluation | None]:
    """:func:`run_loop` for a trainer that keeps its best weights: with ``evaluate``, early stopping on
    ``metric`` (``patience`` evaluations without an improvement beyond ``min_delta``; 0 = never) and,
    at the end, the best checkpoint's weights restored (:func:`restore_best`) and their evaluation
    returned; without, the last weights and no evaluation. ``loop_options`` go to :func:`run_loop`."""
    stop_rule = StopRule(metric, mode, patience, min_delta) if evaluate is not None else None
    position, final = run_loop(root, position, cadence, batches_of_epoch, train_step, evaluate, modules, states,
                               stop_rule=stop_rule, **loop_options)  # fmt: skip
    if final is not None and stop_rule is not None:
        final = restore_best(root, position, final, modules, stop_rule, evaluate)
    return position, final
