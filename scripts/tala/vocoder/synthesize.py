"""Units (+ pitch) -> speech with a trained vocoder (step usable by hand, and ``test_vocoder``'s).

    python -m tala.vocoder.synthesize VOCODER_DIR UNITS OUT.wav [--pitch P] [--f0 HZ]

``UNITS`` is a text file of space-separated unit ids (one utterance; the format of
``all_units_for_bpe.txt``'s lines), a JSON list of ids, or a units file of :mod:`tala.units.quantize`
with ``--segment N`` (0-based). Pitch: ``--pitch`` an ``.npy`` or text file of Hz per unit frame (0
unvoiced; as :mod:`tala.vocoder.pitch` writes), else a flat contour at ``--f0`` Hz (default: the
median F0 of the vocoder's training data, or 120 Hz), voiced throughout. Units generated elsewhere
must come from the same k-means as the vocoder's (``config.json`` names it); an id the generator
does not know is one clear error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from tala.errors import InputError, run_cli
from tala.fileio import atomic_path
from tala.models.vocoder import GeneratorV2, GeneratorV2Config, pitch_to_bins

SAMPLE_RATE = 16_000
DEFAULT_F0 = 120.0


class Vocoder:
    """A ``train_vocoder`` output folder, loaded: ``synthesize(units, f0)`` -> float32 waveform."""

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu"):
        from safetensors.torch import load_model

        self.folder = Path(folder)
        try:
            self.config = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
            generator_config = GeneratorV2Config.from_dict(self.config["generator"])
        except (OSError, KeyError, TypeError, ValueError) as err:
            raise InputError(self.folder / "config.json", f"not a vocoder's config ({err})") from None
        self.generator = GeneratorV2(generator_config)
        weights = self.folder / "generator.safetensors"
        if not weights.is_file():
            raise InputError(weights, "no such file (a train_vocoder output holds it)")
        load_model(self.generator, str(weights))
        self.device = torch.device(device)
        self.generator.to(self.device).eval()
        self.hop = generator_config.hop
        self.default_f0 = float(self.config.get("training", {}).get("median_f0") or DEFAULT_F0)

    @property
    def n_units(self) -> int:
        return self.generator.config.n_units

    def check_units(self, units: np.ndarray, where: str | Path) -> None:
        if len(units) and (int(units.max()) >= self.n_units or int(units.min()) < 0):
            bad = int(units.max()) if int(units.max()) >= self.n_units else int(units.min())
            raise InputError(where, f"unit id {bad} is outside this vocoder's {self.n_units} units "
                                    f"(units of another k-means? the vocoder's: {self.config.get('units')})")  # fmt: skip

    def synthesize(self, units: np.ndarray, f0: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
        """One utterance: ``units`` (frames) and ``f0`` (Hz per frame, 0 unvoiced; None: flat at the
        default F0) -> ``frames * hop`` samples at 16 kHz."""
        units = np.asarray(units, dtype=np.int64)
        if f0 is None:
            f0 = np.full(len(units), self.default_f0, dtype=np.float32)
        f0 = np.asarray(f0, dtype=np.float32)
        if len(f0) != len(units):
            raise ValueError(f"{len(units)} units but {len(f0)} pitch values")
        if not len(units):
            return np.zeros(0, dtype=np.float32)
        c = self.generator.config
        bins = pitch_to_bins(torch.from_numpy(f0)[None], c.n_pitch_bins, c.f0_min, c.f0_max)
        with torch.no_grad():
            wave = self.generator(torch.from_numpy(units)[None].to(self.device), bins.to(self.device),
                                  generator=torch.Generator(device=self.device).manual_seed(seed))  # fmt: skip
        return wave[0, 0].float().cpu().numpy()


def read_unit_sequence(path: str | Path, segment: int | None = None) -> np.ndarray:
    """Unit ids from a text line file, a JSON list, or segment ``segment`` of a units file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read ({err})") from None
    try:
        if text.startswith("{"):
            record = json.loads(text)
            if segment is None:
                raise InputError(path, "a units file: pass --segment N")
            if not 0 <= segment < len(record.get("segments", [])):
                raise InputError(path, f"no segment {segment} (it has {len(record.get('segments', []))})")
            ids = record["segments"][segment]["units"]
        elif text.startswith("["):
            ids = json.loads(text)
        else:
            ids = [int(token) for token in text.split()]
        return np.asarray(ids, dtype=np.int64)
    except (ValueError, TypeError) as err:
        raise InputError(path, f"not a sequence of unit ids ({err})") from None


def read_pitch(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        values = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, ndmin=1)
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read pitch values ({err})") from None
    return np.nan_to_num(np.asarray(values, dtype=np.float32).ravel())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tala.vocoder.synthesize", description=__doc__.split("\n\n")[0])
    parser.add_argument("vocoder", type=Path, help="a train_vocoder output folder (results/{lang}/vocoder)")
    parser.add_argument("units", type=Path, help="unit ids: a text line, a JSON list, or a units file (--segment)")
    parser.add_argument("out", type=Path, help="the WAV to write (16 kHz)")
    parser.add_argument("--segment", type=int, help="which segment of a units file")
    parser.add_argument("--pitch", type=Path, help="Hz per unit frame (.npy or text; 0 unvoiced)")
    parser.add_argument("--f0", type=float, help="a flat contour at this F0 (Hz) when no --pitch")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    vocoder = Vocoder(args.vocoder, args.device)
    units = read_unit_sequence(args.units, args.segment)
    vocoder.check_units(units, args.units)
    if args.pitch is not None:
        f0 = read_pitch(args.pitch)
        if len(f0) != len(units):
            raise InputError(args.pitch, f"{len(f0)} pitch values for {len(units)} units")
    else:
        f0 = np.full(len(units), args.f0 if args.f0 else vocoder.default_f0, dtype=np.float32)
    wave = vocoder.synthesize(units, f0)
    with atomic_path(args.out) as tmp:
        sf.write(str(tmp), np.clip(wave, -1, 1), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    print(f"{args.out}: {len(wave) / SAMPLE_RATE:.2f} s from {len(units)} units", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
