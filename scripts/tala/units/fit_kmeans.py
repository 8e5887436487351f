"""Fit the k-means that defines a language's acoustic units, streaming the features of a sample of
its speech segments (step ``fit_kmeans``).

    python -m tala.units.fit_kmeans OUT.npy OUT.json --language L --wavs A.wav ... --segments A.tsv ...
        --model M --layer 14 --k 100 [--fit-hours 10] [--passes 1] [--seed 0]

The sample: every speech segment of the language (``segments/{rec}.tsv``, in recording order) when
they add up to less than ``--fit-hours``; otherwise segments drawn at random (seeded) until they
do, then read in recording order. Each pass computes the layer's features segment by segment
(:mod:`tala.units.features`) and feeds them to :class:`tala.units.kmeans.StreamingKMeans`
(k-means++ on the first frames, then mini-batch updates): no step holds the features of more than
one segment and one k-means batch, so memory is flat in the size of the sample.

Checkpoints and resuming: every ``--checkpoint-s`` seconds (after a segment) the k-means state and
the position (pass, segment) are saved atomically beside the outputs as the hidden
``.kmeans.checkpoint.npz`` (numeric arrays, loaded without pickle), outside the rule's declared
outputs. A rerun with the same settings and sample continues from it and ends with the same
centroids as an uninterrupted run (the k-means state includes its buffered frames and random
state); other settings start over. The checkpoint is removed once the outputs are written.

``--centroids PATH`` uses an existing ``k x dim`` float32 ``.npy`` (one k-means shared across
corpora) instead of fitting: it is checked against the model's layer and copied.

Outputs: ``OUT.npy`` (float32 k x dim centroids, no pickle) and ``OUT.json`` (model, layer, k,
frames and hours used, inertia, library and versions, seed, sample), written last.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import tala
from tala.errors import InputError, run_cli
from tala.fileio import atomic_path, write_json_atomic
from tala.hub import weights_signature
from tala.units.features import FRAME_S, FeatureModel, Segment, log, open_wav, read_segment_audio, read_segments
from tala.units.kmeans import KMeansError, StreamingKMeans

CHECKPOINT_NAME = ".kmeans.checkpoint.npz"
CHECKPOINT_S = 300.0
FORMAT = 1  # bumped when the checkpoint layout changes


def sample_segments(segments: list[Segment], fit_hours: float | None, seed: int) -> list[Segment]:
    """All segments if they last at most ``fit_hours``; else a seeded random draw of segments
    until their duration reaches ``fit_hours``, kept in the original (recording) order."""
    total = sum(s.duration for s in segments)
    if fit_hours is None or total <= fit_hours * 3600:
        return list(segments)
    order = np.random.default_rng(seed).permutation(len(segments))
    chosen, seconds = [], 0.0
    for index in order:
        if seconds >= fit_hours * 3600:
            break
        chosen.append(int(index))
        seconds += segments[index].duration
    return [segments[i] for i in sorted(chosen)]


def save_npy_atomic(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path, ".npy") as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)


def _settings_hash(settings: dict, sample: list[Segment]) -> str:
    text = json.dumps([settings, [[s.recording, s.start, s.end] for s in sample]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _save_checkpoint(path: Path, kmeans: StreamingKMeans, digest: str, pass_index: int, next_segment: int) -> None:
    state = {f"kmeans.{key}": value for key, value in kmeans.state_dict().items()}
    state.update({"fit.format": np.array(FORMAT), "fit.settings": np.array(digest),
                  "fit.position": np.array([pass_index, next_segment], np.int64)})
    with atomic_path(path, ".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **state)


def _load_checkpoint(path: Path, digest: str) -> tuple[StreamingKMeans, int, int] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data["fit.format"]) != FORMAT or str(data["fit.settings"]) != digest:
                log(f"fit_kmeans: {path.name} is from other settings or inputs; starting over")
                return None
            pass_index, next_segment = (int(v) for v in data["fit.position"])
            state = {key[len("kmeans."):]: data[key] for key in data.files if key.startswith("kmeans.")}
        return StreamingKMeans.from_state_dict(state), pass_index, next_segment
    except (OSError, ValueError, KeyError) as err:
        log(f"fit_kmeans: cannot use the checkpoint {path.name} ({err}); starting over")
        return None


def fit(model: FeatureModel, sample: list[Segment], wavs: dict[str, Path], *, k: int, passes: int, seed: int,
        batch_frames: int, checkpoint: Path | None, checkpoint_s: float = CHECKPOINT_S, digest: str = "",
        language: str = "", on_segment=None) -> StreamingKMeans:
    """The k-means of ``sample``'s features after ``passes`` passes, resuming from ``checkpoint``."""
    resumed = _load_checkpoint(checkpoint, digest) if checkpoint is not None else None
    if resumed is not None:
        kmeans, first_pass, first_segment = resumed
        log(f"fit_kmeans: resuming pass {first_pass + 1}/{passes} at segment {first_segment + 1}/{len(sample)}")
    else:
        kmeans, first_pass, first_segment = StreamingKMeans(k, model.dim, seed=seed, batch_frames=batch_frames), 0, 0
    total_s = sum(s.duration for s in sample)
    last_save = time.monotonic()
    for pass_index in range(first_pass, passes):
        start_at = first_segment if pass_index == first_pass else 0
        done_s = sum(s.duration for s in sample[:start_at])
        handle, handle_of = None, None
        try:
            for index in range(start_at, len(sample)):
                segment = sample[index]
                if handle_of != segment.recording:
                    if handle is not None:
                        handle.close()
                    handle, handle_of = open_wav(wavs[segment.recording]), segment.recording
                kmeans.add(model.features(read_segment_audio(handle, segment)))
                done_s += segment.duration
                if on_segment is not None:
                    on_segment(pass_index, index)
                now = time.monotonic()
                if checkpoint is not None and now - last_save >= checkpoint_s:
                    _save_checkpoint(checkpoint, kmeans, digest, pass_index, index + 1)
                    last_save = now
                    log(f"fit_kmeans: pass {pass_index + 1}/{passes}: {done_s / 60:.1f} of {total_s / 60:.1f} min "
                        f"of speech, {kmeans.frames_seen:,} frames so far (checkpoint saved)")
        finally:
            if handle is not None:
                handle.close()
        try:
            kmeans.end_pass()
        except KMeansError as err:
            raise InputError(language or "fit_kmeans", f"units.k = {k}: {err}; lower units.k or add speech "
                                                       f"(units.fit_hours, more recordings)") from None
        if checkpoint is not None and pass_index + 1 < passes:
            _save_checkpoint(checkpoint, kmeans, digest, pass_index + 1, 0)
            last_save = time.monotonic()
        log(f"fit_kmeans: pass {pass_index + 1}/{passes} done: inertia per frame "
            f"{kmeans.last_pass_inertia / max(1, _pass_frames(kmeans, pass_index + 1)):.4f}")
    return kmeans


def _pass_frames(kmeans: StreamingKMeans, passes_done: int) -> int:
    return kmeans.frames_seen // max(1, passes_done)


def load_centroids(path: str | Path, dim: int, model_label: str, layer: int) -> np.ndarray:
    """Existing centroids (``units.kmeans``): a float ``k x dim`` .npy matching the model's layer."""
    try:
        centroids = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read the centroids (a k x dim float .npy): {err}") from None
    if centroids.ndim != 2 or not np.issubdtype(centroids.dtype, np.floating) or len(centroids) < 2:
        raise InputError(path, f"expected a k x dim float array of centroids, got {centroids.dtype} {centroids.shape}")
    if centroids.shape[1] != dim:
        raise InputError(path, f"centroids of dimension {centroids.shape[1]}, but layer {layer} of {model_label} "
                               f"gives {dim}-dimensional features: made with another model or layer?")
    if not np.isfinite(centroids).all():
        raise InputError(path, "the centroids contain NaN or infinite values")
    return centroids.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tala.units.fit_kmeans", description=__doc__.splitlines()[0])
    parser.add_argument("out_npy", type=Path)
    parser.add_argument("out_json", type=Path)
    parser.add_argument("--language", required=True)
    parser.add_argument("--wavs", nargs="*", type=Path, default=[], help="16 kHz WAVs, one per recording")
    parser.add_argument("--segments", nargs="*", type=Path, default=[],
                        help="their segments TSVs, in the same order (recording = file stem)")
    parser.add_argument("--model", required=True, help="Hugging Face id or local folder of a wav2vec2-family model")
    parser.add_argument("--models-dir", default=None, help="where download_models put hub models")
    parser.add_argument("--layer", type=int, required=True, help="transformer block whose output is clustered (1-based)")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--fit-hours", type=float, default=None, help="speech to fit on (default: all)")
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-frames", type=int, default=10_000)
    parser.add_argument("--checkpoint-s", type=float, default=CHECKPOINT_S)
    parser.add_argument("--centroids", type=Path, default=None, help="use these centroids (.npy) instead of fitting")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args(argv)
    if len(args.wavs) != len(args.segments):
        parser.error(f"--wavs ({len(args.wavs)}) and --segments ({len(args.segments)}) must pair up")
    if args.k < 2 or args.passes < 1 or args.batch_frames < 1 or (args.fit_hours is not None and args.fit_hours <= 0):
        parser.error("--k must be >= 2, --passes and --batch-frames >= 1, --fit-hours > 0")
    started = time.perf_counter()
    model = FeatureModel(args.model, args.layer, models_dir=args.models_dir, device=args.device, dtype=args.dtype)
    record = {"language": args.language, **model.describe()}
    if args.centroids is not None:
        centroids = load_centroids(args.centroids, model.dim, args.model, args.layer)
        save_npy_atomic(args.out_npy, centroids)
        record.update({"k": int(len(centroids)), "source": str(args.centroids),
                       "sha256": hashlib.sha256(centroids.tobytes()).hexdigest(), "tool": tala.tool("numpy")})
        write_json_atomic(args.out_json, record)
        log(f"fit_kmeans: {args.language}: using {len(centroids)} centroids from {args.centroids}")
        return 0

    segments, wavs = [], {}
    for wav, tsv in zip(args.wavs, args.segments):
        wavs[tsv.stem] = wav
        segments += read_segments(tsv, tsv.stem)
    sample = sample_segments(segments, args.fit_hours, args.seed)
    if not sample:
        raise InputError(args.language, "no speech segments to fit the units on (every recording is silent "
                                        "or excluded)")
    settings = {"model": args.model, "layer": args.layer, "k": args.k, "passes": args.passes, "seed": args.seed,
                "batch_frames": args.batch_frames, "device": str(model.device), "dtype": str(model.dtype),
                "weights": weights_signature(model.source) if Path(model.source).is_dir() else model.source}
    digest = _settings_hash(settings, sample)
    checkpoint = args.out_npy.parent / CHECKPOINT_NAME
    args.out_npy.parent.mkdir(parents=True, exist_ok=True)
    sample_s = sum(s.duration for s in sample)
    log(f"fit_kmeans: {args.language}: k={args.k} on layer {args.layer} of {args.model} ({model.dim} dims, "
        f"{model.device_label}), {len(sample)} of {len(segments)} segments, {sample_s / 3600:.2f} h, "
        f"{args.passes} pass(es)")
    kmeans = fit(model, sample, wavs, k=args.k, passes=args.passes, seed=args.seed, batch_frames=args.batch_frames,
                 checkpoint=checkpoint, checkpoint_s=args.checkpoint_s, digest=digest, language=args.language)
    centroids = kmeans.centroids.astype(np.float32)
    frames = _pass_frames(kmeans, kmeans.passes_done)
    save_npy_atomic(args.out_npy, centroids)
    record.update({
        "k": args.k, "seed": args.seed, "passes": args.passes, "batch_frames": args.batch_frames,
        "fit_hours": args.fit_hours, "segments": len(sample), "segments_available": len(segments),
        "recordings": len({s.recording for s in sample}), "frames": frames,
        "hours": round(frames * FRAME_S / 3600, 4),
        "inertia": float(kmeans.last_pass_inertia), "inertia_per_frame": round(kmeans.last_pass_inertia / max(frames, 1), 6),
        "library": "tala.units.kmeans.StreamingKMeans (k-means++ init, mini-batch updates, blocked BLAS nearest-centroid search)",
        "sha256": hashlib.sha256(centroids.tobytes()).hexdigest(),
        "tool": tala.tool("numpy", "scipy", "torch", "transformers"),
    })
    write_json_atomic(args.out_json, record)
    checkpoint.unlink(missing_ok=True)
    log(f"fit_kmeans: {args.language}: {frames:,} frames per pass, inertia per frame {record['inertia_per_frame']}, "
        f"{time.perf_counter() - started:.1f} s -> {args.out_npy}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(run_cli(main))
