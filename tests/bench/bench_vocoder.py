"""Benchmark of the unit vocoder (tala.vocoder): synthesis speed and training throughput on a CPU.

    PYTHONPATH=scripts .venv/bin/python tests/bench/bench_vocoder.py [--seconds 10] [--json OUT.json]

1. Synthesis, one thread, ``--seconds`` of random units and a pitch contour (best of 3): the demo's
   generator (128 channels, one residual block per stage, 32 harmonics) and the default one (256
   channels, HiFi-GAN V1's three blocks, 64 harmonics), as seconds of audio per second (x real time), beside the peer that
   needs no training, Griffin-Lim (librosa, 32 iterations) from a log-mel of the same length.
   Goal: the demo generator >= 20x real time on a CPU.
2. Training, one thread, batches of 8 one-second windows: steps/s with the mel loss alone and with
   the MPD + MSD discriminators (the two phases of train_vocoder), for the demo generator; the
   ratio says what the adversarial phase costs on a CPU.

Prints a table; writes the numbers as JSON with ``--json``; exits 0 always.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import print_table  # noqa: E402
from tala.models.vocoder import (  # noqa: E402
    DiscriminatorV2,
    GeneratorV2,
    GeneratorV2Config,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from tala.vocoder.mel import LogMel, log_mel, mel_to_audio  # noqa: E402

GENERATORS = {
    "demo (128 ch, blocks [3], 32 harmonics)": GeneratorV2Config(
        channels=128, resblock_kernels=(3,), resblock_dilations=((1, 3, 5),), harmonic_head=32),
    "default (256 ch, blocks [3, 7, 11], 64 harmonics)": GeneratorV2Config(harmonic_head=64),
}
DEMO = next(iter(GENERATORS))


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def synthesis(seconds: float) -> dict:
    frames = int(seconds * 50)
    rng = np.random.default_rng(0)
    units = torch.from_numpy(rng.integers(0, 100, (1, frames)))
    bins = torch.from_numpy(rng.integers(20, 40, (1, frames)))
    out = {}
    for name, config in GENERATORS.items():
        torch.manual_seed(0)
        generator = GeneratorV2(config).eval()
        with torch.no_grad():
            generator(units[:, :50], bins[:, :50])  # warm-up
            wall = best_of(3, lambda: generator(units, bins))
        out[name] = seconds / wall
    t = np.arange(int(seconds * 16000)) / 16000
    audio = (0.1 * np.sin(2 * np.pi * 120 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    mel = log_mel(audio)
    out["Griffin-Lim, 32 iterations (librosa)"] = seconds / best_of(3, lambda: mel_to_audio(mel, length=len(audio)))
    return out


def training(steps: int = 6) -> dict:
    config = GENERATORS[DEMO]
    torch.manual_seed(0)
    generator, discriminator, mel = GeneratorV2(config), DiscriminatorV2(), LogMel()
    g_opt = torch.optim.AdamW(generator.parameters(), 1e-3, betas=(0.8, 0.99))
    d_opt = torch.optim.AdamW(discriminator.parameters(), 1e-3, betas=(0.8, 0.99))
    units, bins = torch.randint(0, 100, (8, 50)), torch.randint(0, 65, (8, 50))
    audio = 0.1 * torch.randn(8, 1, 16000)

    def mel_step():
        loss = 45 * (mel(generator(units, bins)) - mel(audio)).abs().mean()
        g_opt.zero_grad()
        loss.backward()
        g_opt.step()

    def gan_step():
        fake = generator(units, bins)
        scores, _ = discriminator(torch.cat([audio, fake.detach()]))
        d_loss = discriminator_loss([s[:8] for s in scores], [s[8:] for s in scores])
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        scores, features = discriminator(torch.cat([audio, fake]))
        loss = (45 * (mel(fake) - mel(audio)).abs().mean() + generator_adversarial_loss([s[8:] for s in scores])
                + feature_matching_loss([[f[:8] for f in fs] for fs in features],
                                        [[f[8:] for f in fs] for fs in features]))  # fmt: skip
        g_opt.zero_grad()
        loss.backward()
        g_opt.step()

    mel_step()
    mel_rate = steps / best_of(1, lambda: [mel_step() for _ in range(steps)])
    gan_step()
    gan_rate = max(2, steps // 3) / best_of(1, lambda: [gan_step() for _ in range(max(2, steps // 3))])
    return {"mel_only_steps_per_s": mel_rate, "with_discriminators_steps_per_s": gan_rate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started, load = time.perf_counter(), os.getloadavg()[0]
    torch.set_num_threads(1)
    speed = synthesis(args.seconds)
    train = training()
    rows = [("measure", "value", "goal")]
    for name, x in speed.items():
        goal = ">= 20x" if name.startswith("demo") else ""
        rows.append((f"synthesis x real time, {name}", f"{x:.1f}x", goal))
    rows.append(("training steps/s, mel loss only (batch 8 x 1 s)", f"{train['mel_only_steps_per_s']:.2f}", ""))
    rows.append(("training steps/s, with MPD + MSD", f"{train['with_discriminators_steps_per_s']:.2f}",
                 f"({train['mel_only_steps_per_s'] / train['with_discriminators_steps_per_s']:.1f}x slower)"))  # fmt: skip
    print_table(rows, load, started)
    if args.json:
        args.json.write_text(json.dumps({"synthesis_x_realtime": speed, "training": train}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
