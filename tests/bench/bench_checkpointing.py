"""Benchmark of activation checkpointing (``gradient_checkpointing``) in the speech-LLM trainer:
what it saves in memory and what it costs in time, against the same run without it.

    PYTHONPATH=scripts .venv/bin/python tests/bench/bench_checkpointing.py [--clips 8] [--steps 3]
        [--batch 4] [--seconds 20] [--threads N] [--repeats 1] [--tiny] [--json OUT.json]

Both runs train the same recognizer on the same clips with ``tala.finetune.speechllm.train``
(mode lora: the adapters on q/k/v/o and the projector learn; fp32 on the CPU), each in a fresh
interpreter of its own, the order alternating over ``--repeats``:

- model (randomly initialized from configs, seeded; no hub is reached): a decoder of
  ``HuggingFaceTB/SmolLM2-135M``'s shape (Llama, hidden 576, 30 layers, 9 heads, 3 key/value
  heads, intermediate 1536, vocabulary 49,152), the workflow's default, and a frozen Whisper
  encoder of ``openai/whisper-small``'s width (768) with 2 layers instead of 12 (it runs without
  gradients, so its depth costs time but no activation memory either way), frames stacked 4 to
  a token. ``--tiny`` swaps in a toy decoder to try the bench out in seconds.
- data: ``--clips`` clips of ``--seconds`` of noise (the content does not change the cost) with
  a transcript of about 12 characters a second, ``--batch`` clips a step.

Measured in each child: the seconds of each optimizer step after the first (the first pays for
allocations), and the child's peak RSS (VmHWM): on a CPU the activations live in host memory, so
the peak is where checkpointing shows; on a GPU the same layers' activations are what it frees
from device memory. Goal (the setting's promise in config/config.yaml): less peak memory, the
same losses, and a time cost of the order of one more forward pass (HF's docs: ~20-30 %).
Measured here (2 CPU cores, the defaults, two runs): 5,219 -> 3,124 and 5,156 -> 3,178 MB peak
(0.60x, 0.62x), 8.58 -> 9.77 and 10.08 -> 13.06 s a step (1.14x, 1.30x; the second beside other
work), the same losses.
Prints a table; writes the numbers as JSON with ``--json``; exits 0 whether or not the goal is
met, 1 when a run could not train (so that ``make bench`` stops there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' bars while the start is saved
HERE = Path(__file__).resolve().parent
SCRIPTS = HERE.parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(HERE))

from measure import own_peak_rss_mb, print_table, run_measured  # noqa: E402

SAMPLE_RATE = 16_000
SMOLLM2_135M = {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                "intermediate_size": 1536, "vocab_size": 49_152}  # fmt: skip
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
        "intermediate_size": 128, "vocab_size": 512}  # fmt: skip
WORDS = ["o", "le", "tala", "lenei", "ua", "alu", "tama", "e", "lelei", "aso", "fea", "fale", "sa", "ou", "vaai",
         "ia", "te", "oe", "matou", "mai", "la", "goto", "faafetai", "tele", "lava"]  # fmt: skip


def write_data(folder: Path, clips: int, seconds: float, seed: int) -> Path:
    """Noise clips with word transcripts, as a manifest in the dataset's format."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(clips):
        audio = (0.05 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
        sf.write(folder / "clips" / f"c{i}.wav", audio, SAMPLE_RATE)
        words: list[str] = []
        while len(" ".join(words)) < 12 * seconds:
            words.append(str(rng.choice(WORDS)))
        rows.append({"audio": f"clips/c{i}.wav", "normalized": " ".join(words), "duration": seconds})
    manifest = folder / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


def write_start(folder: Path, decoder_size: dict) -> Path:
    """A start recognizer folder: the Whisper encoder, the decoder, a projector and a tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from tala.models.speechllm import AudioProjectorV1, Prompt, SpeechLLMConfig, SpeechLLMV1, save_speechllm

    torch.manual_seed(0)
    encoder = WhisperEncoder(WhisperConfig(d_model=768, encoder_layers=2, encoder_attention_heads=12,
                                           encoder_ffn_dim=3072, num_mel_bins=80, max_source_positions=1500))
    encoder.save_pretrained(folder / "encoder")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tok.train_from_iterator([" ".join(WORDS)] * 4, trainers.BpeTrainer(vocab_size=100, special_tokens=[
        "<pad>", "<s>", "</s>", "<unk>"]))  # fmt: skip
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                        unk_token="<unk>")  # fmt: skip
    decoder = LlamaForCausalLM(LlamaConfig(**decoder_size, max_position_embeddings=2048, bos_token_id=1,
                                           eos_token_id=2, pad_token_id=0, tie_word_embeddings=True))  # fmt: skip
    model = SpeechLLMV1(encoder, AudioProjectorV1(768, decoder_size["hidden_size"], stack=4), decoder,
                        Prompt(bos=1, eos=2, pad=0))  # fmt: skip
    config = SpeechLLMConfig(encoder=str(folder / "encoder"), decoder="-", lora_r=16, lora_alpha=32,
                             lora_targets=("q_proj", "k_proj", "v_proj", "o_proj"))  # fmt: skip
    save_speechllm(folder / "start", model, config, tokenizer)
    return folder / "start"


def child(args: argparse.Namespace) -> None:
    """One training run; prints its numbers as JSON on the last line."""
    import torch

    from tala.finetune.speechllm import SpeechLLMSettings, train

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    settings = SpeechLLMSettings(max_steps=args.steps + 1, learning_rate=1e-4, warmup_steps=0,
                                 batch_seconds=args.batch * args.seconds + 1, max_batch_size=args.batch,
                                 eval_every=0, checkpoint_every=10_000, log_every=1, lora_r=16, lora_alpha=32,
                                 gradient_checkpointing=bool(args.checkpointing), device="cpu")  # fmt: skip
    marks, losses = [], []

    def on_step(step: int, loss: float) -> None:
        marks.append(time.perf_counter())
        losses.append(loss)

    out = work / f"out-{args.checkpointing}-{os.getpid()}"
    train([work / "data" / "train.jsonl"], out, settings, start=work / "start", progress=False, on_step=on_step)
    steps = np.diff(marks)  # the steps after the first
    print(json.dumps({"checkpointing": bool(args.checkpointing), "s_per_step": float(np.median(steps)),
                      "step_s": [round(float(s), 3) for s in steps], "losses": losses,
                      "peak_rss_mb": own_peak_rss_mb()}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps (one more runs first)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_data(work / "data", args.clips, args.seconds, seed=0)
        write_start(work, TINY if args.tiny else SMOLLM2_135M)
        env = {**os.environ, "PYTHONPATH": str(SCRIPTS), "OMP_NUM_THREADS": str(args.threads)}
        results: dict[bool, list[dict]] = {False: [], True: []}
        for repeat in range(args.repeats):
            for checkpointing in ((0, 1) if repeat % 2 == 0 else (1, 0)):
                command = [sys.executable, __file__, "--child", "--checkpointing", str(checkpointing), "--work", tmp,
                           "--steps", str(args.steps), "--batch", str(args.batch), "--seconds", str(args.seconds),
                           "--threads", str(args.threads)]  # fmt: skip
                code, result, stderr, _ = run_measured(command, env)
                if result is None:
                    print(f"run with checkpointing={checkpointing} failed ({code}):\n{stderr[-2000:]}")
                    sys.exit(1)
                results[bool(checkpointing)].append(result)
    best = {k: min(v, key=lambda r: r["s_per_step"]) for k, v in results.items()}
    peak = {k: min(r["peak_rss_mb"] for r in v) for k, v in results.items()}
    same = all(np.allclose(a["losses"], b["losses"], rtol=1e-4) for a in results[False] for b in results[True])
    size = "tiny" if args.tiny else "SmolLM2-135M-shaped"
    print(f"speech-LLM ({size} decoder), lora, {args.batch} clips of {args.seconds:g} s a step, "
          f"{args.threads} threads, CPU fp32")  # fmt: skip
    rows = [("run", "s/step", "peak RSS MB"),
            ("without", f"{best[False]['s_per_step']:.2f}", f"{peak[False]:.0f}"),
            ("gradient_checkpointing", f"{best[True]['s_per_step']:.2f}", f"{peak[True]:.0f}"),
            ("ratio", f"{best[True]['s_per_step'] / best[False]['s_per_step']:.2f}x",
             f"{peak[True] / peak[False]:.2f}x ({peak[True] - peak[False]:+.0f} MB)")]  # fmt: skip
    print_table(rows, load_before, started)
    print(f"same losses step by step: {same}")
    if args.json:
        args.json.write_text(json.dumps({"results": {str(k): v for k, v in results.items()}, "same_losses": same},
                                        indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
