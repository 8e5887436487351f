"""Transcribe a recording with a CTC model: greedy text, word times, and the frame log-probabilities.

    python -m tala.asr.transcribe IN.wav OUT.json OUT.emissions.npy --model M [--adapter smo]
        [--models-dir resources/models] [--device auto] [--dtype auto]
        [--chunk-s 30] [--context-s 2] [--batch-size N] [--no-progress]

The emissions (log-softmax, float16, frames x vocabulary) are what the aligner works on; the JSON
holds the greedy transcript, word times in seconds, and everything needed to read the emissions
(vocabulary, blank id, frame duration). It is written last.

The windowed inference in bounded memory, the recording-wide input normalization and the resumable
``.npy`` writer are :mod:`tala.frames` (read its docstring); decoding is :mod:`tala.ctc_text`. A
rerun with the same settings (input, model files, adapter, device, dtype, windowing) continues
after the last completed batch; different settings start over.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tala.device import ensure_mps_fallback

ensure_mps_fallback()

import numpy as np  # noqa: E402
import torch  # noqa: E402

import tala  # noqa: E402
from tala import frames  # noqa: E402
from tala.audio_io import SAMPLE_RATE  # noqa: E402
from tala.ctc_text import CtcVocabulary, Word, collapse, greedy_labels, greedy_words, spans_text  # noqa: E402
from tala.device import describe_device, pick_device, pick_dtype  # noqa: E402
from tala.errors import InputError, run_cli  # noqa: E402
from tala.fileio import write_json_atomic  # noqa: E402
from tala.frames import CHUNK_S, CONTEXT_S  # noqa: E402
from tala.hub import ModelError, load_ctc_model, model_revision, resolve_model, weights_signature  # noqa: E402

# Windows per forward pass when not given: batches pay off on a GPU; on a CPU one window at a time
# is faster (9.2 vs 8.4 audio s/s on a base-sized model, 2 cores) and needs ~300 MB less.
BATCH_SIZE_GPU = 4
BATCH_SIZE_CPU = 1
EMISSIONS_DTYPE = np.float16
PROGRESS_MIN_S = 60.0
WORD_TIMES = ("start: first frame of the word's first token x frame_s; end: first frame of the word delimiter "
              "after the word, else the end of its last token; score: exp(mean greedy log-prob over the "
              "word's token frames)")


def ctc_vocabulary(model, tokenizer, label: str) -> CtcVocabulary:
    """The output vocabulary of a loaded model, with the tokenizer's names for its ids."""
    size = int(model.lm_head.out_features)
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    missing = [i for i in range(size) if i not in by_id]
    if missing:
        raise ModelError(label, f"the vocabulary has no token for output ids {missing[:5]} (the output layer "
                                f"has {size}): adapter and vocab.json do not match")
    # CTC's blank is the pad token, as in transformers' CTC loss.
    blank_id = model.config.pad_token_id if model.config.pad_token_id is not None else tokenizer.pad_token_id
    tokens = [by_id[i] for i in range(size)]
    ignore = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id} - {None, blank_id}
    ignore |= CtcVocabulary(tokens, int(blank_id)).ignore_ids  # any other <...> token
    return CtcVocabulary(tokens, int(blank_id), getattr(tokenizer, "word_delimiter_token", None), frozenset(ignore))


def decode_emissions_file(path: Path, vocabulary: CtcVocabulary, frame_s: float) -> tuple[str, list[Word]]:
    """Greedy transcript and words of an emissions .npy, read in blocks.

    Only the best id and its log-probability per frame are kept (8 bytes a frame: 3 MB for two hours).
    """
    ids_blocks, best_blocks = [np.zeros(0, np.int32)], [np.zeros(0, np.float32)]
    for block in frames.iter_npy_rows(path):
        ids, best = greedy_labels(block.astype(np.float32))
        ids_blocks.append(ids)
        best_blocks.append(best)
    ids, best = np.concatenate(ids_blocks), np.concatenate(best_blocks)
    spans = collapse(ids, vocabulary)
    return spans_text(spans, vocabulary), greedy_words(spans, vocabulary, frame_s, best)


def transcribe_samples(model, vocabulary: CtcVocabulary, samples: np.ndarray, *, chunk_s: float = CHUNK_S,
                       context_s: float = CONTEXT_S, batch_size: int = 1, normalize: bool = True, device="cpu",
                       dtype=torch.float32) -> tuple[str, list[Word], np.ndarray]:
    """The core of :func:`transcribe_file` without files: greedy text, words and the log-probabilities
    (float32 frames x vocabulary) of an in-memory 16 kHz mono recording (a clip, a test signal)."""
    log_probs = frames.frames_of_samples(model, samples, frames.LogProbs(), chunk_s=chunk_s, context_s=context_s,
                                         batch_size=batch_size, normalize=normalize, device=device, dtype=dtype)
    ids, best = greedy_labels(log_probs)
    spans = collapse(ids, vocabulary)
    frame_s = frames.plan_recording(model, len(samples), chunk_s, context_s).geometry.frame_s
    return spans_text(spans, vocabulary), greedy_words(spans, vocabulary, frame_s, best), log_probs


def load_model(model: str, adapter: str | None, models_dir, device: str, dtype: str):
    """(model, processor, resolved path, adapter actually loaded, torch device, torch dtype)."""
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    resolved = resolve_model(model, models_dir)
    ctc_model, processor = load_ctc_model(resolved, adapter, torch_device, torch_dtype)
    if getattr(ctc_model.config, "add_adapter", False):
        raise ModelError(model, "models with a downsampling adapter (config.add_adapter) are not supported")
    if ctc_model.target_lang is None:
        adapter = None  # load_ctc_model ignored it (a model without language adapters)
    return ctc_model, processor, resolved, adapter, torch_device, torch_dtype


def transcribe_file(audio: str | Path, out_json: str | Path, out_emissions: str | Path, *, model: str,
                    adapter: str | None = None, models_dir: str | Path | None = None, device: str = "auto",
                    dtype: str = "auto", chunk_s: float = CHUNK_S, context_s: float = CONTEXT_S,
                    batch_size: int | None = None, progress: bool | None = None,
                    on_batch=None) -> dict:
    """Transcribe ``audio`` (16 kHz mono WAV) into ``out_json`` and ``out_emissions``; return the JSON.

    ``on_batch(windows_done, windows_total)`` is called after each batch is safely on disk (tests
    use it to interrupt a run). ``progress``: tqdm bar on stderr; default for inputs over
    PROGRESS_MIN_S. Raises InputError (ModelError, DeviceError) for bad inputs, one line each.

    The JSON depends only on the inputs and settings (paths as given, no times), so a resumed run
    writes the same bytes as an uninterrupted one; the time taken goes to the log line on stderr.
    """
    started = time.perf_counter()
    audio, out_json, out_emissions = Path(audio), Path(out_json), Path(out_emissions)
    if chunk_s <= 0 or context_s < 0 or (batch_size is not None and batch_size < 1):
        raise InputError("--chunk-s/--context-s/--batch-size",
                         f"need chunk_s > 0, context_s >= 0, batch_size >= 1 (got {chunk_s}, {context_s}, "
                         f"{batch_size})")
    if out_emissions.suffix != ".npy":
        raise InputError(out_emissions, "the emissions output must end in .npy")
    num_samples = frames.check_audio(audio)
    ctc_model, processor, resolved, adapter, torch_device, torch_dtype = load_model(
        model, adapter, models_dir, device, dtype)
    if batch_size is None:
        batch_size = BATCH_SIZE_CPU if torch_device.type == "cpu" else BATCH_SIZE_GPU
    vocabulary = ctc_vocabulary(ctc_model, processor.tokenizer, model)
    plan = frames.plan_recording(ctc_model, num_samples, chunk_s, context_s)
    shape = (plan.num_frames, len(vocabulary.tokens))
    do_normalize = bool(getattr(processor.feature_extractor, "do_normalize", True))

    # Everything the emissions depend on; a partial run with other settings is not continued.
    audio_stat = audio.stat()
    settings = {
        "format": frames.PARTIAL_FORMAT, "tala": tala.__version__, "torch": torch.__version__,
        "audio": [audio.name, audio_stat.st_size, audio_stat.st_mtime_ns, num_samples],
        "model": [resolved, weights_signature(resolved), adapter], "device": torch_device.type,
        "dtype": str(torch_dtype), "frames": [plan.chunk_frames, plan.context_frames, batch_size,
                                             plan.num_frames, shape[1]],
        "normalize": do_normalize,
    }
    run = frames.WindowRun(audio, out_emissions, shape, len(plan.windows), settings, do_normalize,
                           EMISSIONS_DTYPE, label="transcribe")
    resumed_after = run.windows_done
    duration_s = num_samples / SAMPLE_RATE
    frames.run_windows(ctc_model, run, plan.windows, batch_size, plan.geometry, torch_device, torch_dtype,
                       frames.LogProbs(), desc=f"transcribe {audio.name}", on_batch=on_batch,
                       progress=progress if progress is not None else duration_s >= PROGRESS_MIN_S)
    text, words = decode_emissions_file(run.data_path, vocabulary, plan.geometry.frame_s)
    run.finish()
    result = transcript_record(audio, out_emissions, text, words, model, resolved, adapter, torch_device,
                               torch_dtype, plan, batch_size, num_samples, vocabulary, shape, run.normalization)
    write_json_atomic(out_json, result)
    run.forget()
    # The rate counts the audio this run computed: after a resume, not the windows done before.
    windows = plan.windows
    audio_done_s = (plan.num_frames - (windows[resumed_after - 1].keep_end if resumed_after else 0)) \
        * plan.geometry.frame_s
    speed = audio_done_s / max(time.perf_counter() - started, 1e-9)
    resumed = (f", resumed after window {resumed_after} of {len(windows)} ({audio_done_s:.2f} s of audio in this run)"
               if resumed_after else "")
    print(f"transcribe: {audio}: {duration_s:.2f} s, {plan.num_frames} frames x {len(vocabulary.tokens)} tokens, "
          f"{len(windows)} windows on {result['device']} ({result['dtype']}){resumed}, {speed:.1f} s audio/s, "
          f"{len(words)} words -> {out_json}", file=sys.stderr)
    return result


def transcript_record(audio: Path, out_emissions: Path, text: str, words: list[Word], model: str, resolved: str,
                      adapter: str | None, device: torch.device, dtype: torch.dtype, plan: "frames.RecordingPlan",
                      batch_size: int, num_samples: int, vocabulary: CtcVocabulary, shape: tuple[int, int],
                      norm: "frames.Normalization") -> dict:
    """The transcript JSON: text, words, and everything needed to read the emissions."""
    import transformers

    frame_s = plan.geometry.frame_s
    return {
        "audio": str(audio),
        "text": text,
        "words": [asdict(w) for w in words],
        "model": {"given": model, "resolved": resolved,
                  "revision": model_revision(resolved) if Path(resolved).is_dir() else None},
        "adapter": adapter,
        "device": describe_device(device),
        "dtype": str(dtype).removeprefix("torch."),
        "chunking": {"chunk_s": round(plan.chunk_frames * frame_s, 6),
                     "context_s": round(plan.context_frames * frame_s, 6),
                     "batch_size": batch_size, "windows": len(plan.windows),
                     "encoder": "per batch, local" if plan.local_encoder else "per window"},
        "frame_s": frame_s,
        "frame_rate_hz": SAMPLE_RATE / plan.geometry.stride,
        "num_frames": plan.num_frames,
        "num_samples": num_samples,
        "sample_rate": SAMPLE_RATE,
        "duration_s": num_samples / SAMPLE_RATE,
        **vocabulary.record(),
        "emissions": {"file": out_emissions.name, "shape": list(shape), "dtype": "float16",
                      "values": frames.LogProbs().describe()},
        "normalization": norm.describe(),
        "word_times": WORD_TIMES,
        "tool": {"tala": tala.__version__, "transformers": transformers.__version__, "torch": torch.__version__},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tala.asr.transcribe",
        description="Greedy CTC transcript, word times and frame log-probabilities of a 16 kHz mono WAV, "
                    "in bounded memory (chunked, batched inference; resumes after a kill).")
    parser.add_argument("input", help="16 kHz mono WAV (the convert step's output)")
    parser.add_argument("output", help="transcript JSON to write (last)")
    parser.add_argument("emissions", help="emissions .npy to write (float16 log-probabilities, frames x vocabulary)")
    parser.add_argument("--model", required=True, help="Hugging Face id or local folder of a Wav2Vec2ForCTC model")
    parser.add_argument("--adapter", default=None, help="MMS language adapter, e.g. smo (default: none)")
    parser.add_argument("--models-dir", default="resources/models",
                        help="where download_models put hub models (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cuda, mps or cpu (default: auto)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                        help="auto: float16 on CUDA, float32 elsewhere (default: auto)")
    parser.add_argument("--chunk-s", type=float, default=CHUNK_S,
                        help="audio kept per window, seconds (default: %(default)s)")
    parser.add_argument("--context-s", type=float, default=CONTEXT_S,
                        help="extra audio on each side of a window, dropped from its output (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"windows per forward pass (default: {BATCH_SIZE_CPU} on a CPU, {BATCH_SIZE_GPU} on a GPU)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help=f"progress bar on stderr (default: for inputs over {PROGRESS_MIN_S:.0f} s)")
    args = parser.parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Loading weights" bars would only clutter the job log

    transcribe_file(args.input, args.output, args.emissions, model=args.model, adapter=args.adapter,
                    models_dir=args.models_dir, device=args.device, dtype=args.dtype, chunk_s=args.chunk_s,
                    context_s=args.context_s, batch_size=args.batch_size, progress=args.progress)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
