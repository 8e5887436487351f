"""Turn one recording's speech into acoustic units: the layer's features of each speech segment, each
frame replaced by the id of its nearest k-means centroid (step ``quantize_units``).

    python -m tala.units.quantize WAV SEGMENTS.tsv KMEANS.npy OUT.json --model M --layer 14

The features are computed as the fit computed them (:mod:`tala.units.features`: same model,
layer and per-segment normalization), one segment at a time, and only the unit ids are kept: 50
units per second, unit i of a segment covering ``[start + i * frame_s, start + (i + 1) * frame_s)``.

Output (``OUT.json``): recording, audio, frame_s, units_per_s, model, layer, k, kmeans (the
centroids' sha256), segments (``{"start", "end", "units": [ids]}`` in time order; a recording
without speech has none), frames, tool. No wall times: two runs give the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

import tala
from tala.errors import InputError, run_cli
from tala.fileio import write_json_atomic
from tala.units.features import FRAME_S, FeatureModel, Segment, log, read_segments, segment_features
from tala.units.fit_kmeans import load_centroids
from tala.units.kmeans import assign


def quantize_segments(model: FeatureModel, wav: str | Path, segments: list[Segment],
                      centroids: np.ndarray) -> list[dict]:
    """``{"start", "end", "units"}`` of each segment (units: nearest centroid of each frame)."""
    out = []
    for segment, features in segment_features(model, wav, segments):
        labels = assign(features, centroids)
        out.append({"start": round(segment.start, 3), "end": round(segment.end, 3),
                    "units": [int(u) for u in labels]})
    return out


def quantize_file(wav: str | Path, segments_tsv: str | Path, kmeans_npy: str | Path, out_json: str | Path, *,
                  model: str, layer: int, models_dir: str | Path | None = None, device: str = "auto",
                  dtype: str = "auto", feature_model: FeatureModel | None = None) -> dict:
    wav, segments_tsv = Path(wav), Path(segments_tsv)
    recording = segments_tsv.stem
    if not wav.is_file():
        raise InputError(wav, "no such audio file")
    feature_model = feature_model or FeatureModel(model, layer, models_dir=models_dir, device=device, dtype=dtype)
    centroids = load_centroids(kmeans_npy, feature_model.dim, model, layer)
    segments = read_segments(segments_tsv, recording)
    quantized = quantize_segments(feature_model, wav, segments, centroids)
    record = {
        "recording": recording, "audio": str(wav), "frame_s": FRAME_S, "units_per_s": round(1 / FRAME_S),
        "model": model, "layer": layer, "k": int(len(centroids)),
        "kmeans": hashlib.sha256(centroids.tobytes()).hexdigest(),
        "frames": sum(len(s["units"]) for s in quantized), "segments": quantized,
        "tool": tala.tool("numpy", "scipy", "torch", "transformers"),
    }
    write_json_atomic(out_json, record)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tala.units.quantize", description=__doc__.splitlines()[0])
    parser.add_argument("wav", type=Path, help="16 kHz mono WAV of the recording")
    parser.add_argument("segments", type=Path, help="its segments TSV (start, end): the speech to quantize")
    parser.add_argument("kmeans", type=Path, help="the centroids (k x dim float32 .npy) from fit_kmeans")
    parser.add_argument("out_json", type=Path)
    parser.add_argument("--model", required=True)
    parser.add_argument("--models-dir", default=None)
    parser.add_argument("--layer", type=int, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    record = quantize_file(args.wav, args.segments, args.kmeans, args.out_json, model=args.model, layer=args.layer,
                           models_dir=args.models_dir, device=args.device, dtype=args.dtype)
    used = len({u for s in record["segments"] for u in s["units"]})
    log(f"quantize: {record['recording']}: {len(record['segments'])} segments, {record['frames']:,} units "
        f"({used} of {record['k']} ids), {time.perf_counter() - started:.1f} s -> {args.out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
