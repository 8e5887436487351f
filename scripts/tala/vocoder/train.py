"""Train the unit vocoder of a language (step ``train_vocoder``): ``GeneratorV2`` from its units and
pitch to its 16 kHz speech, mel loss first, then with HiFi-GAN's discriminators.

    python -m tala.vocoder.train OUT_DIR --units U.json... --pitch P.npy... --wavs W.wav... \\
        --kmeans kmeans.json --valid valid.jsonl --test test.jsonl [--epochs 500 --batch-size 16 ...]

Data (:mod:`tala.vocoder.data`): random 1 s windows of every speech segment of the recordings that
the dataset did not hold out; the dataset's validation recordings give fixed 2 s windows for the
validation loss (45 × mean |log-mel difference|, :mod:`tala.vocoder.mel`), its test recordings are
left for ``test_vocoder``. An epoch is ``samples_per_epoch`` windows (the seed's definition).

Schedule (HiFi-GAN practice): ``mel_only_epochs`` epochs of the L1 log-mel loss alone, then the
least-squares adversarial and feature-matching losses of ``DiscriminatorV2`` (MPD + MSD) with their
own optimizer. AdamW (β 0.8, 0.99) for both, the learning rate decayed by a cosine to 10 % over the
run. A discriminator whose mean loss per sub-discriminator stays under 0.02 has collapsed (it tells
real from generated perfectly and gives the generator no gradient): the log says so
(``discriminator_collapse`` events and a line on stderr).

Checkpoints (:mod:`tala.training`, in ``OUT_DIR.checkpoints/``): every ``save_every`` epochs, at each
new best validation loss and at the end, each with a sample WAV of the first validation window;
a rerun after a kill continues from the newest one. Early stopping: ``patience`` epochs without a
validation loss better by ``min_delta``. The output holds the best generator. A loss that is not
finite stops training with one error naming the step and the last good checkpoint (nothing is
saved after it, so ``best`` is never overwritten by a diverged model).

Output ``OUT_DIR/``: ``generator.safetensors``, ``config.json`` (generator, mel and pitch settings,
the units' k-means, training summary), ``training_log.json`` (the log's lines as one JSON list) and
``samples/`` (validation windows: ``NN_original.wav`` / ``NN_synth.wav``, and the per-save samples
in ``samples/training/``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from tala.device import ensure_mps_fallback

ensure_mps_fallback()

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import tala  # noqa: E402
from tala.device import describe_device, pick_device  # noqa: E402
from tala.errors import InputError, run_cli  # noqa: E402
from tala.fileio import atomic_dir, atomic_path, read_json_object, write_json_atomic  # noqa: E402
from tala.models.vocoder import (  # noqa: E402
    DiscriminatorV2,
    GeneratorV2,
    GeneratorV2Config,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    pitch_to_bins,
)
from tala.training import (  # noqa: E402
    LOG_FILE,
    TIMING_FIELDS,
    Cadence,
    Evaluation,
    StepResult,
    StopRule,
    autocast,
    checkpoint_dirs,
    checkpoint_root,
    grad_scaler,
    new_position,
    restore_best,
    resume,
    run_loop,
    warmup_decay_schedule,
)
from tala.vocoder.data import (  # noqa: E402
    SAMPLE_RATE,
    Corpus,
    WindowSampler,
    check_units,
    fixed_windows,
    load_recording,
    split_recordings,
)
from tala.vocoder.mel import MEL, MEL_LOSS_WEIGHT, LogMel  # noqa: E402
from tala.vocoder.pitch import FRAME_S  # noqa: E402

COLLAPSE_LOSS = 0.02  # mean LSGAN loss per sub-discriminator under which D has collapsed
COLLAPSE_STEPS = 50  # ... as an exponential mean over about this many steps
SAMPLE_WINDOWS = 4  # validation windows written to OUT/samples
SHIFT_RANGE = (0.6, 1.7)  # pitch-shift ratios, drawn log-uniformly: most of an octave around the voice


@dataclass(frozen=True)
class VocoderSettings:
    epochs: int = 500
    batch_size: int = 16
    lr: float = 2e-4
    samples_per_epoch: int = 10_000
    patience: int = 50  # epochs without a better validation loss; 0: never stop early
    min_delta: float = 0.5  # on the validation loss (45 x mean |log-mel difference|)
    save_every: int = 20  # epochs
    mel_only_epochs: int = 10  # before the discriminators join
    segment_s: float = 1.0
    pitch_shift: float = 0.5  # share of training windows whose pitch is shifted (data.shift_pitch)
    valid_windows: int = 24
    valid_s: float = 2.0
    keep_checkpoints: int = 2
    log_every: int = 25
    seed: int = 0
    channels: int = 256
    embed_dim: int = 128
    resblock_kernels: tuple[int, ...] = (3, 7, 11)  # HiFi-GAN V1's; (3,) is ~6x faster to train on a CPU
    harmonic_head: int = 64  # harmonics of the given F0 with learned amplitudes (0: none)
    pitch_bins: int = 64
    f0_min: float = 50.0
    f0_max: float = 500.0
    device: str = "auto"

    @property
    def window_frames(self) -> int:
        return max(1, int(round(self.segment_s / FRAME_S)))

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.samples_per_epoch // self.batch_size)

    @property
    def max_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def mel_only_steps(self) -> int:
        return self.mel_only_epochs * self.steps_per_epoch

    @property
    def adversarial(self) -> bool:
        """Whether the discriminators join (after the mel-only epochs)."""
        return self.mel_only_epochs < self.epochs

    def check(self) -> None:
        for name in ("epochs", "batch_size", "samples_per_epoch", "save_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.samples_per_epoch < self.batch_size:
            raise ValueError("samples_per_epoch must be at least batch_size")
        if not self.lr > 0 or self.segment_s <= 0 or self.valid_s <= 0:
            raise ValueError("lr, segment_s and valid_s must be positive")
        if not 0 < self.f0_min < self.f0_max:
            raise ValueError("need 0 < f0_min < f0_max")
        if not 0 <= self.pitch_shift <= 1:
            raise ValueError("pitch_shift is a share of the windows, between 0 and 1")


# Settings that decide which steps a run takes: a checkpoint made with others is not resumed.
RESUME_KEYS = ("epochs", "batch_size", "lr", "samples_per_epoch", "mel_only_epochs", "segment_s", "pitch_shift", "seed",
               "channels", "embed_dim", "resblock_kernels", "harmonic_head", "pitch_bins", "f0_min", "f0_max")  # fmt: skip


@dataclass(frozen=True)
class Material:
    train: Corpus
    valid: Corpus
    held_out: list[str]  # test recordings, left for test_vocoder
    k: int
    kmeans: dict


def load_material(units: list[Path], pitch: list[Path], wavs: list[Path], kmeans_json: Path,
                  valid_manifests: list[Path], test_manifests: list[Path]) -> Material:
    """The recordings' units, pitch and audio, split by the dataset's held-out recordings."""
    kmeans = read_json_object(kmeans_json)
    if not isinstance(kmeans.get("k"), int) or kmeans["k"] < 1:
        raise InputError(kmeans_json, "no number of clusters 'k' (written by tala.units.fit_kmeans)")
    by_name = {}
    for kind, paths in (("units", units), ("pitch", pitch), ("wav", wavs)):
        for path in paths:
            by_name.setdefault(Path(path).stem, {})[kind] = Path(path)
    valid_names, test_names = split_recordings(valid_manifests), split_recordings(test_manifests)
    train, valid = [], []
    for name in sorted(by_name):
        files = by_name[name]
        if len(files) < 3:
            missing = sorted({"units", "pitch", "wav"} - set(files))
            raise InputError(next(iter(files.values())), f"recording {name} has no {' or '.join(missing)} file")
        recording = load_recording(files["units"], files["pitch"], files["wav"])
        check_units(recording, files["units"], kmeans["k"])
        if name in test_names:
            continue
        (valid if name in valid_names else train).append(recording)
    return Material(Corpus(train), Corpus(valid), sorted(test_names & set(by_name)), kmeans["k"], kmeans)


def build_generator(settings: VocoderSettings, k: int, init_from: Path | None) -> tuple[GeneratorV2, dict]:
    """A fresh generator, or one started from ``init_from`` (a train_vocoder output): its
    architecture, and every weight whose shape fits (a different number of units re-draws the unit
    embedding)."""
    from safetensors.torch import load_file

    kernels = tuple(settings.resblock_kernels)
    config = GeneratorV2Config(n_units=k, n_pitch_bins=settings.pitch_bins, f0_min=settings.f0_min,
                               f0_max=settings.f0_max, embed_dim=settings.embed_dim, channels=settings.channels,
                               resblock_kernels=kernels, resblock_dilations=((1, 3, 5),) * len(kernels),
                               harmonic_head=settings.harmonic_head)  # fmt: skip
    notes = {}
    if init_from is None:
        torch.manual_seed(settings.seed)
        return GeneratorV2(config), notes
    init_from = Path(init_from)
    try:
        saved = json.loads((init_from / "config.json").read_text(encoding="utf-8"))["generator"]
        weights = load_file(str(init_from / "generator.safetensors"))
    except (OSError, KeyError, ValueError) as err:
        raise InputError(init_from, f"not a vocoder folder (generator.safetensors + config.json): {err}") from None
    config = GeneratorV2Config.from_dict({**saved, "n_units": k, "n_pitch_bins": settings.pitch_bins,
                                         "f0_min": settings.f0_min, "f0_max": settings.f0_max})  # fmt: skip
    torch.manual_seed(settings.seed)
    generator = GeneratorV2(config)
    own = generator.state_dict()
    fitting = {name: t for name, t in weights.items() if name in own and own[name].shape == t.shape}
    generator.load_state_dict(fitting, strict=False)
    notes = {"init_from": str(init_from), "weights_loaded": len(fitting),
             "weights_drawn": sorted(set(own) - set(fitting))}  # fmt: skip
    return generator, notes


def _write_wav(path: Path, audio: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16", format="WAV")


CPU_STEPS_WARNING = 20_000  # make vocoder-long's 8,000 steps take ~50 min on 2 CPU cores


def cpu_budget_warning(settings: VocoderSettings, device: torch.device) -> str | None:
    """One line for a run whose budget is a GPU's but whose device is the CPU (config/config.yaml's
    defaults: 312,500 steps of 16 windows, the discriminators from the start), else None."""
    if device.type != "cpu" or settings.max_steps <= CPU_STEPS_WARNING:
        return None
    phase = (f", the discriminators from step {settings.mel_only_steps:,} (~100x slower per step on a CPU)"
             if settings.adversarial else "")
    return (f"warning: {settings.max_steps:,} training steps on the CPU{phase}: this budget is a GPU's and "
            f"will take hours to days here; config/demo.yaml's vocoder settings or make vocoder-long's suit a CPU")


def train(out: str | Path, material: Material, settings: VocoderSettings, init_from: Path | None = None,
          checkpoint_dir: str | Path | None = None, progress: bool = True, keep_checkpoint_dir: bool = False,
          on_step=None) -> dict:
    """Train (resuming from ``OUT.checkpoints`` when it holds a run of the same settings) and write
    ``out``; returns the summary written to config.json's ``training``."""
    settings.check()
    out = Path(out)
    root = checkpoint_root(out, checkpoint_dir)
    frames = settings.window_frames
    lengths = tuple(s.frames for s in material.train.segments)
    sampler = WindowSampler(lengths or (0,), frames, settings.samples_per_epoch, settings.batch_size, settings.seed)
    if not material.train.segments or not len(sampler.eligible()):
        raise InputError(out, f"no speech segment of {settings.segment_s:g} s in the training recordings "
                              f"({material.train.hours * 60:.1f} min of units): too little audio for one batch")  # fmt: skip
    if sampler.positions() < settings.batch_size:
        raise InputError(out, f"only {sampler.positions()} distinct {settings.segment_s:g} s windows in the "
                              f"training recordings, fewer than one batch of {settings.batch_size}")  # fmt: skip
    device = pick_device(settings.device)
    if warning := cpu_budget_warning(settings, device):
        print(warning, file=sys.stderr)
    generator, init_notes = build_generator(settings, material.k, init_from)
    generator.to(device)
    adversarial = settings.adversarial
    discriminator = DiscriminatorV2().to(device) if adversarial else None
    log_mel = LogMel(MEL).to(device)
    g_opt = torch.optim.AdamW(generator.parameters(), settings.lr, betas=(0.8, 0.99))
    g_sched = warmup_decay_schedule(g_opt, 0, settings.max_steps, "cosine", 0.1)
    g_scaler = grad_scaler(device)
    modules: dict[str, torch.nn.Module] = {"generator": generator}
    states: dict = {"generator_optimizer": g_opt, "generator_scheduler": g_sched, "generator_scaler": g_scaler}
    if adversarial:
        d_opt = torch.optim.AdamW(discriminator.parameters(), settings.lr, betas=(0.8, 0.99))
        d_sched = warmup_decay_schedule(d_opt, 0, settings.max_steps - settings.mel_only_steps, "cosine", 0.1)
        modules["discriminator"] = discriminator
        d_scaler = grad_scaler(device)
        states.update(discriminator_optimizer=d_opt, discriminator_scheduler=d_sched, discriminator_scaler=d_scaler)
    root.mkdir(parents=True, exist_ok=True)
    data_signature = {"train": [r.name for r in material.train.recordings],
                      "valid": [r.name for r in material.valid.recordings], "frames": material.train.frames}  # fmt: skip
    # Through JSON, as a checkpoint holds them (a tuple would never equal the list read back).
    resume_settings = json.loads(json.dumps({k: getattr(settings, k) for k in RESUME_KEYS}))
    fresh = new_position(settings=resume_settings, data=data_signature,
                         collapse={"ema": None, "events": 0})  # fmt: skip
    start_event = {"train_hours": round(material.train.hours, 4), "valid_hours": round(material.valid.hours, 4),
                   "generator_parameters": sum(p.numel() for p in generator.parameters()),
                   "discriminator_parameters": sum(p.numel() for p in discriminator.parameters()) if adversarial else 0,
                   "device": describe_device(device), **init_notes}  # fmt: skip
    resumed = resume(root, fresh, modules, states, start=start_event, match=("settings", "data"))
    position_ref = {"step": resumed.position["step"], "collapse": dict(resumed.position.get("collapse") or {})}
    valid_windows = fixed_windows(material.valid, int(round(settings.valid_s / FRAME_S)), settings.valid_windows,
                                  settings.seed)  # fmt: skip
    samples_dir = root / "samples"

    def bins(pitch: torch.Tensor) -> torch.Tensor:
        return pitch_to_bins(pitch, settings.pitch_bins, settings.f0_min, settings.f0_max)

    def shift_ratios(step: int, n: int) -> list[float] | None:
        """Per window, 1 or a log-uniform ratio in SHIFT_RANGE: a function of (seed, step)."""
        if settings.pitch_shift <= 0:
            return None
        rng = np.random.default_rng([settings.seed, step, 1])
        ratios = np.exp(rng.uniform(*np.log(SHIFT_RANGE), n))
        return np.where(rng.random(n) < settings.pitch_shift, ratios, 1.0).tolist()

    def train_step(ids: list[int]) -> StepResult:
        step = position_ref["step"]
        batch = material.train.batch(sampler.decode(ids), frames, shift_ratios(step, len(ids)),
                                     (settings.f0_min, settings.f0_max), seed=(settings.seed * 1_000_003 + step) * 64)  # fmt: skip
        units, audio = batch.units.to(device), batch.audio.to(device)
        pitch_bins = bins(batch.pitch).to(device)
        with autocast(device):  # bf16 (or fp16 with a scaler) on CUDA; full precision elsewhere
            fake = generator(units, pitch_bins).float()
        mel_loss = MEL_LOSS_WEIGHT * F.l1_loss(log_mel(fake), log_mel(audio))  # the STFT in float32
        losses = {"mel_loss": mel_loss}
        g_loss = mel_loss
        if adversarial and step >= settings.mel_only_steps:
            n = len(audio)
            with autocast(device):
                scores, _ = discriminator(torch.cat([audio, fake.detach()]))
                d_loss = discriminator_loss([s[:n].float() for s in scores], [s[n:].float() for s in scores])
            if not torch.isfinite(d_loss):
                diverged(step + 1, "discriminator")
            d_opt.zero_grad(set_to_none=True)
            d_scaler.scale(d_loss).backward()
            d_scaler.unscale_(d_opt)
            torch.nn.utils.clip_grad_norm_(discriminator.parameters(), 10.0)
            d_scaler.step(d_opt)
            d_scaler.update()
            d_sched.step()
            with autocast(device):
                scores, features = discriminator(torch.cat([audio, fake]))
                adv = generator_adversarial_loss([s[n:].float() for s in scores])
                fm = feature_matching_loss([[f[:n].float() for f in fs] for fs in features],
                                           [[f[n:].float() for f in fs] for fs in features])  # fmt: skip
            g_loss = mel_loss + adv + fm
            losses.update(d_loss=d_loss, adv_loss=adv, fm_loss=fm)
            track_collapse(step + 1, float(d_loss.detach()) / len(scores))
        if not torch.isfinite(g_loss):
            diverged(step + 1, "generator")
        g_opt.zero_grad(set_to_none=True)
        g_scaler.scale(g_loss).backward()
        g_scaler.unscale_(g_opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(generator.parameters(), 100.0)
        g_scaler.step(g_opt)
        g_scaler.update()
        g_sched.step()
        position_ref["step"] = step + 1
        return StepResult({k: float(v.detach()) for k, v in losses.items()},
                          {"lr": g_opt.param_groups[0]["lr"], "grad_norm": round(float(grad_norm), 3)},
                          audio_s=len(ids) * frames * FRAME_S)  # fmt: skip

    def diverged(step: int, which: str) -> None:
        found = checkpoint_dirs(root)
        last = f"{found[-1][1]}" if found else "none (no checkpoint yet)"
        raise InputError(root, f"the {which} loss is not finite at step {step}; training stopped, nothing saved "
                               f"after the last good checkpoint: {last} (lower vocoder.lr, then rerun to resume)")  # fmt: skip

    def track_collapse(step: int, per_sub: float) -> None:
        state = position_ref["collapse"]
        ema = per_sub if state.get("ema") is None else state["ema"] + (per_sub - state["ema"]) / COLLAPSE_STEPS
        state["ema"] = ema
        if ema < COLLAPSE_LOSS and step % (settings.log_every * 10) == 0:
            state["events"] = state.get("events", 0) + 1
            from tala.training import append_log

            append_log(root / LOG_FILE, {"step": step, "event": "discriminator_collapse", "d_loss_per_sub": round(ema, 5)})
            print(f"warning: step {step}: the discriminator has collapsed (mean loss {ema:.4f} per sub-discriminator: "
                  "it separates real from generated perfectly); lower its lr or restart from a mel-only checkpoint",
                  file=sys.stderr)  # fmt: skip

    def synthesize_window(segment: int, offset: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        units, pitch, audio = material.valid.window(segment, offset, n)
        with torch.no_grad():
            wave = generator(torch.from_numpy(units)[None].to(device), bins(torch.from_numpy(pitch)[None]).to(device),
                             generator=torch.Generator(device=device).manual_seed(0))  # fmt: skip
        return wave[0, 0].float().cpu().numpy(), audio

    def evaluate(step: int) -> Evaluation:
        generator.eval()
        total, weight = 0.0, 0
        for segment, offset, n in valid_windows:
            synth, audio = synthesize_window(segment, offset, n)
            with torch.no_grad():
                diff = F.l1_loss(log_mel(torch.from_numpy(synth)[None].to(device)),
                                 log_mel(torch.from_numpy(audio)[None].to(device)))  # fmt: skip
            total += float(diff) * n
            weight += n
        generator.train()
        return Evaluation({"mel_loss": MEL_LOSS_WEIGHT * total / max(1, weight)})

    def after_step(step: int, result: StepResult) -> None:
        position_ref["step"] = step
        if valid_windows and (step % (settings.save_every * settings.steps_per_epoch) == 0 or step == cadence.max_steps):
            generator.eval()
            synth, _ = synthesize_window(*valid_windows[0])
            generator.train()
            _write_wav(samples_dir / f"sample_step_{step:06d}.wav", synth)
        if on_step is not None:
            on_step(step, result)

    cadence = Cadence(settings.max_steps, settings.log_every, settings.steps_per_epoch if valid_windows else 0,
                      settings.save_every * settings.steps_per_epoch, settings.keep_checkpoints)  # fmt: skip
    stop_rule = StopRule("mel_loss", "min", settings.patience, settings.min_delta) if valid_windows else None
    generator.train()
    t0 = time.perf_counter()
    position, final = run_loop(root, resumed.position, cadence, sampler.batches, train_step,
                               evaluate if valid_windows else None, modules, states, stop_rule=stop_rule,
                               on_step=after_step, progress=progress, desc="train vocoder")  # fmt: skip
    if stop_rule is not None and final is not None:
        final = restore_best(root, position, final, modules, stop_rule, evaluate)
    generator.eval()
    summary = {
        "settings": asdict(settings), "steps": position["step"], "epochs_done": round(position["step"] / settings.steps_per_epoch, 2),
        "stopped_early_at": position.get("stopped_at"), "best": position.get("best"),
        "valid_mel_loss": None if final is None else round(final.metrics["mel_loss"], 5),
        "train_hours": round(material.train.hours, 4), "valid_hours": round(material.valid.hours, 4),
        "median_f0": median_f0(material.train),
        "train_recordings": len(material.train.recordings), "valid_recordings": len(material.valid.recordings),
        "held_out": material.held_out, "collapse_events": position_ref["collapse"].get("events", 0),
        "resumed_at": resumed.step, "device": describe_device(device), **init_notes,
    }  # fmt: skip
    write_outputs(out, generator, material, settings, summary, root, valid_windows, synthesize_window)
    summary["this_run_s"] = round(time.perf_counter() - t0, 1)
    if not keep_checkpoint_dir:
        shutil.rmtree(root, ignore_errors=True)
    return summary


def median_f0(corpus: Corpus) -> float | None:
    """The median F0 (Hz) of the voiced frames: synthesis's flat contour when it is given none."""
    voiced = [r.pitch[r.pitch > 0] for r in corpus.recordings]
    voiced = np.concatenate(voiced) if voiced else np.zeros(0)
    return round(float(np.median(voiced)), 1) if len(voiced) else None


def write_outputs(out: Path, generator: GeneratorV2, material: Material, settings: VocoderSettings, summary: dict,
                  root: Path, valid_windows, synthesize_window) -> None:
    """The declared outputs, each written whole (the generator last)."""
    from safetensors.torch import save_model

    # Without the timings (in the job's log and benchmark instead): two runs write the same bytes.
    log = [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS}
           for line in (root / LOG_FILE).read_text(encoding="utf-8").splitlines() if line.strip()]  # fmt: skip
    write_json_atomic(out / "training_log.json", log)
    with atomic_dir(out / "samples") as tmp:
        for i, window in enumerate(valid_windows[:SAMPLE_WINDOWS]):
            synth, audio = synthesize_window(*window)
            sf.write(str(tmp / f"{i:02d}_original.wav"), audio, SAMPLE_RATE, subtype="PCM_16")
            sf.write(str(tmp / f"{i:02d}_synth.wav"), np.clip(synth, -1, 1), SAMPLE_RATE, subtype="PCM_16")
        if (root / "samples").is_dir():
            shutil.copytree(root / "samples", tmp / "training")
    config = {"generator": generator.config.to_dict(), "mel": MEL.to_dict(),
              "pitch": {"tracker": "praat-parselmouth to_pitch_ac", "frame_s": FRAME_S, "bins": settings.pitch_bins,
                        "f0_min": settings.f0_min, "f0_max": settings.f0_max},
              "units": {key: material.kmeans.get(key) for key in ("model", "layer", "k")},
              "training": summary, "tool": tala.tool("torch", "praat-parselmouth", "librosa")}  # fmt: skip
    write_json_atomic(out / "config.json", config)
    with atomic_path(out / "generator.safetensors") as tmp:
        save_model(generator, str(tmp), metadata={"format": "pt"})


def settings_from_args(args: argparse.Namespace) -> VocoderSettings:
    values = {f.name: getattr(args, f.name) for f in fields(VocoderSettings)}
    return VocoderSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tala.vocoder.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    parser.add_argument("out", type=Path, help="output folder (results/{lang}/vocoder)")
    parser.add_argument("--units", type=Path, nargs="+", required=True, help="results/{lang}/units/{rec}.json")
    parser.add_argument("--pitch", type=Path, nargs="+", required=True, help="results/{lang}/pitch/{rec}.npy")
    parser.add_argument("--wavs", type=Path, nargs="+", required=True, help="results/{lang}/audio/{rec}.wav")
    parser.add_argument("--kmeans", type=Path, required=True, help="results/{lang}/units/kmeans.json")
    parser.add_argument("--valid", type=Path, nargs="*", default=[], help="dataset/valid.jsonl: validation recordings")
    parser.add_argument("--test", type=Path, nargs="*", default=[], help="dataset/test.jsonl: recordings left out")
    parser.add_argument("--init-from", type=Path, help="start from this train_vocoder output")
    parser.add_argument("--checkpoint-dir", type=Path, help="default: OUT.checkpoints beside OUT")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (the log still has every line)")
    defaults = VocoderSettings()
    for f in fields(VocoderSettings):
        default = getattr(defaults, f.name)
        if isinstance(default, tuple):
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=int, nargs="+", default=default)
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(default), default=default)
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
        settings.check()
    except ValueError as err:
        parser.error(str(err))
    threads = torch.get_num_threads()
    material = load_material(args.units, args.pitch, args.wavs, args.kmeans, args.valid, args.test)
    print(f"train {material.train.hours * 60:.1f} min in {len(material.train.recordings)} recordings, validation "
          f"{material.valid.hours * 60:.1f} min in {len(material.valid.recordings)}, held out {len(material.held_out)}; "
          f"{settings.max_steps} steps of {settings.batch_size} x {settings.segment_s:g} s, {threads} threads",
          file=sys.stderr)  # fmt: skip
    summary = train(args.out, material, settings, args.init_from, args.checkpoint_dir, progress=not args.no_progress)
    resumed = f" (resumed at step {summary['resumed_at']})" if summary["resumed_at"] is not None else ""
    print(f"{args.out}: {summary['steps']} steps{resumed} in {summary['this_run_s']:.0f} s, validation mel loss "
          f"{summary['valid_mel_loss']}, best {summary['best']}", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
