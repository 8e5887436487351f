"""Build the demo's speech-LLM stand-in (``resources/demo/speechllm``), reproducibly, from synthesized
speech only: a small Whisper encoder distilled from the demo CTC model, a small Llama decoder with
its own BPE tokenizer, and the projector (:mod:`tala.demo.speechllm_recipe`); then its evaluation on
the demo chapters' verses and the shipped folder.

    PYTHONPATH=scripts python -m tala.demo.speechllm --out resources/demo/speechllm

The folder is what :func:`tala.models.speechllm.load_speechllm` reads (plain transformers + peft),
the encoder and decoder inside it::

    speechllm.json  projector.safetensors  encoder/  decoder/ (with tokenizer)
    training.json  training_log.jsonl  {easy,full,joined,narrative}_log.jsonl  encoder_log.jsonl  eval.json  README.md

so the workflow fine-tunes it (``speechllm.start``) exactly as it would a recognizer made from
``openai/whisper-small`` and ``HuggingFaceTB/SmolLM2-135M``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

import tala
from tala.demo.evaluate import evaluate_verses, log_elapsed, safetensors_parameters, stage_log
from tala.demo.pack import data_summary, split_utterances
from tala.demo.speech import tool_version
from tala.demo.speechllm_recipe import MORE_SPLIT, RecipeRun, SpeechLLMRecipe, run_recipe
from tala.demo.stand_in import TEACHER, parse_args, prepare, print_summary
from tala.demo.text import LANGUAGES
from tala.errors import run_cli
from tala.fileio import atomic_dir, write_json_atomic



def pack(out: Path, run: RecipeRun, recipe: SpeechLLMRecipe, seed: int, demo_root: Path, work: Path,
         command: str) -> dict:
    """The shipped folder: encoder and decoder inside, ``speechllm.json`` naming them relative to
    it, the logs, ``training.json``, ``eval.json`` and the card; written whole or not at all."""
    from tala.models.speechllm import CONFIG_NAME, DECODER_DIR, PROJECTOR_NAME, SpeechLLMConfig

    trained, last = run.speechllm, list(run.stages)[-1]
    info = {stage: json.loads((folder / "training.json").read_text(encoding="utf-8"))
            for stage, folder in run.stages.items() if stage != "easy"}  # fmt: skip
    config = SpeechLLMConfig.read(trained / CONFIG_NAME)
    # The recipe's own logs, with their wall times (the trained folders' copies have none); the
    # last stage's ships as training_log.jsonl, the earlier ones as <stage>_log.jsonl.
    logs = {stage: stage_log(folder) for stage, folder in run.stages.items()}
    shipped_logs = {stage: "training_log.jsonl" if stage == last else f"{stage}_log.jsonl" for stage in logs}
    encoder_log = stage_log(run.encoder)
    # In training.json and the card the last stage is "speechllm" (the recognizer shipped).
    named = {stage: "speechllm" if stage == last else stage for stage in run.stages}
    with atomic_dir(out) as tmp:
        shutil.copytree(run.encoder, tmp / "encoder", ignore=shutil.ignore_patterns("distillation.json"))
        shutil.copytree(trained / DECODER_DIR, tmp / DECODER_DIR)
        shutil.copyfile(trained / PROJECTOR_NAME, tmp / PROJECTOR_NAME)
        shipped = replace(config, encoder="encoder", decoder=DECODER_DIR)
        fields = {k: v for k, v in asdict(shipped).items()}
        (tmp / CONFIG_NAME).write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
        for log, name in [(encoder_log, "encoder_log.jsonl"), *((logs[k], shipped_logs[k]) for k in logs)]:
            if log.exists():
                shutil.copyfile(log, tmp / name)
        from tala.finetune.evaluate_asr import SpeechLLMRecognizer, System

        recognizer = SpeechLLMRecognizer(System("stand-in", str(tmp), None), None, "cpu", "float32")
        report = evaluate_verses(recognizer, str(out), demo_root, work / "eval", list(run.manifests))
        write_json_atomic(tmp / "eval.json", report)
        distilled = json.loads((run.encoder / "distillation.json").read_text(encoding="utf-8"))
        summary = {
            "generator": "tala.demo.speechllm",
            "tala_version": tala.__version__,
            "command": command,
            "seed": seed,
            "recipe": asdict(recipe),
            "teacher": str(TEACHER),
            "data": data_summary({lang: {**splits, **run.narrative.get(lang, {}),
                                         **({MORE_SPLIT: run.more[lang]} if lang in run.more else {})}
                                  for lang, splits in run.manifests.items()}, demo_root),  # fmt: skip
            "stages": {
                "encoder": {"final_eval": distilled["final_eval"], "log": "encoder_log.jsonl"},
                **{named[stage]: {**{k: info[stage][k] for k in ("settings", "examples", "left_out", "steps", "best",
                                                                  "final_eval")}, "log": shipped_logs[stage]}
                   for stage in info},
            },
            "stage_seconds_this_run": run.seconds,
            "stage_elapsed_s": {"encoder": log_elapsed(encoder_log),
                                **{named[stage]: log_elapsed(log) for stage, log in logs.items()}},
            "parameters": safetensors_parameters(tmp, {"encoder": "encoder/model.safetensors",
                                                       "decoder": "decoder/model.safetensors",
                                                       "projector": "projector.safetensors"}),
            "versions": {**info[last]["versions"], "espeak-ng": tool_version("espeak-ng")},
        }
        write_json_atomic(tmp / "training.json", summary)
        (tmp / "README.md").write_text(card(summary, report), encoding="utf-8")
    return report


def card(info: dict, report: dict) -> str:
    recipe, params = info["recipe"], info["parameters"]
    stages = info["stages"]
    rows = "\n".join(f"| {LANGUAGES[lang].name} | {s['verses']} | {100 * s['cer']:.1f} % | {100 * s['wer']:.1f} % |"
                     for lang, s in report["summary"].items())  # fmt: skip
    enc_eval = stages["encoder"]["final_eval"] or {}
    full_eval = stages["full"]["final_eval"] or {}
    joined_eval = stages["joined"]["final_eval"] or {}
    prose_eval = stages["narrative"]["final_eval"] or {}
    sllm_eval = stages["speechllm"]["final_eval"] or {}
    more = split_utterances(info["data"], MORE_SPLIT)
    more_hours = sum(d.get(f"{MORE_SPLIT}_hours", 0) for d in info["data"].values())
    prose = ", ".join(f"{count} {LANGUAGES[lang].name}" for lang, count in recipe["narrative_utterances"])
    seen = "; ".join(f"{LANGUAGES[lang].name}: {100 * d['demo_word_types_seen_in_training']:.0f} % of their word"
                     f" types, {100 * d['demo_word_tokens_seen_in_training']:.0f} % of their words"
                     for lang, d in info["data"].items())  # fmt: skip
    minutes = {k: round(v / 60, 1) for k, v in info["stage_elapsed_s"].items()}
    return f"""# Demo speech-LLM stand-in (tala)

A tiny recognizer of the same classes as seed 003's (`openai/whisper-small` encoder + projector +
`HuggingFaceTB/SmolLM2-135M` decoder), so that `make demo` fine-tunes and judges a speech-LLM without a
model hub. **It knows only espeak-ng's Samoan-ish (`haw` voice) and Portuguese speech and is no use
on real recordings.**

| part | class | parameters |
|---|---|---:|
| encoder | `WhisperEncoder` (d {recipe['encoder_dim']}, {recipe['encoder_layers']} layers, 80 mel bins, 30 s window) | {params['encoder']:,} |
| projector | `tala.models.speechllm.AudioProjectorV1` ({recipe['stack']} frames per token) | {params['projector']:,} |
| decoder | `LlamaForCausalLM` (hidden {recipe['decoder_hidden']}, {recipe['decoder_layers']} layers, tied embeddings) + BPE ({recipe['bpe_vocab']} tokens, `tokenizers`) | {params['decoder']:,} |

Load it with plain transformers + peft: `tala.models.speechllm.load_speechllm("resources/demo/speechllm")`
(`speechllm.json` names `encoder/` and `decoder/` relative to this folder).

## How it was trained (`{info['command']}`, seed {info['seed']})

Training speech: `tala.demo.training_speech` (espeak-ng, random sentences of common words and
pseudo-words; any sentence sharing four consecutive words with a demo verse is dropped), the first
{dict(map(tuple, recipe['train_utterances']))} utterances of the demo CTC model's recipe, {recipe['valid_utterances']}
held-out utterances per language for validation; for the last two stages also {prose} utterances of
scripture-style prose ("E disse ..., e ...": the commonest narrative words and scripture's common
content words, the CTC recipe's `narrative` split) and {recipe['narrative_valid_utterances']} held out.
Those word lists are scripture's, so the training texts hold much of the demo chapters' vocabulary
({seen}), never four consecutive words of a demo verse.

1. **Encoder** ({minutes['encoder']} min on 2 CPU cores): distilled from the demo CTC model
   (`resources/demo/model` with each language's adapter): KL divergence between its per-frame
   character posteriors and a linear CTC head on the Whisper encoder, frame for frame (both 20 ms),
   {recipe['distill_steps']} steps of {recipe['windows_per_batch']} windows of 30 s, each filled with
   utterances of one language. Validation greedy-CTC CER through the (dropped) head:
   {100 * enc_eval.get('cer', float('nan')):.1f} %. Log: `encoder_log.jsonl`.
2. **Tokenizer and decoder**: BPE trained on the training texts; Llama with random weights.
3. **Projector + whole decoder**, encoder frozen (each clip's frames cached): `tala.finetune.speechllm`
   (`train="all"`), loss on the transcript and `</s>` only, in five stages: a curriculum of short clips
   (one short sentence of listed words each; {recipe['easy_steps']} steps, {minutes['easy']} min; `easy_log.jsonl`), then the whole
   utterances ({recipe['speechllm_steps']} steps, {recipe['batch_seconds']:.0f} s of audio per batch,
   {minutes['full']} min; `full_log.jsonl`) with guided attention (`tala.finetune.guided`, weight
   {recipe['guided_attention']}): half the heads of each layer are rewarded for reading each transcript
   token at the audio tokens where the teacher's greedy path put its word. Without it the decoder wrote
   "o o o ..." after 2,000 steps. Validation CER {100 * full_eval.get('cer', float('nan')):.1f} %,
   WER {100 * full_eval.get('wer', float('nan')):.1f} % (best step {(stages['full']['best'] or {}).get('step')}).
   Then the same utterances with long clips joined from them (`tala.demo.distill.stage_joined`: 15-29 s,
   up to ~75 words; {recipe['joined_steps']} steps at {recipe['joined_lr']}, {minutes['joined']} min;
   `joined_log.jsonl`), as the decoder had read two utterances joined worse than each alone.
   Validation CER {100 * joined_eval.get('cer', float('nan')):.1f} %,
   WER {100 * joined_eval.get('wer', float('nan')):.1f} % (best step {(stages['joined']['best'] or {}).get('step')}).
   Then all of that plus the prose ({recipe['narrative_steps']} steps at {recipe['narrative_lr']},
   {minutes['narrative']} min; `narrative_log.jsonl`), validated on the held-out prose too.
   Validation CER {100 * prose_eval.get('cer', float('nan')):.1f} %, WER {100 * prose_eval.get('wer', float('nan')):.1f} %
   (best step {(stages['narrative']['best'] or {}).get('step')}).
   Last, all of that with more utterances of new sentences ({more}; {more_hours:.0f} h, the
   Moonshine recipe's `{MORE_SPLIT}` split; {recipe['more_steps']} steps at {recipe['more_lr']},
   {minutes['speechllm']} min; `training_log.jsonl`), validated as the stage before.
   Validation CER {100 * sllm_eval.get('cer', float('nan')):.1f} %, WER {100 * sllm_eval.get('wer', float('nan')):.1f} %
   (best step {(stages['speechllm']['best'] or {}).get('step')}).

## Evaluation on the demo chapters (never trained on)

Greedy transcripts of every verse of the bundled demo chapters (`eval.json`), before any fine-tuning:

| language | verses | CER | WER |
|---|---:|---:|---:|
{rows}

The workflow fine-tunes LoRA adapters and the projector on each demo language's dataset
(`finetune.models: [..., speechllm]`, `speechllm.start: resources/demo/speechllm`) and reports
before -> after on the held-out test chapter.
"""


def main(argv=None) -> int:
    args = parse_args(argv, "tala.demo.speechllm", __doc__.splitlines()[0], "resources/demo/speechllm")
    command = prepare(args, "tala.demo.speechllm")
    recipe = SpeechLLMRecipe()
    run = run_recipe(args.work, recipe, args.seed, args.workers, args.teacher, progress=not args.no_progress)
    print_summary(pack(args.out, run, recipe, args.seed, args.demo, args.work, command))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
