"""Build the demo's Moonshine stand-in (``resources/demo/moonshine``), reproducibly, from synthesized
speech only (:mod:`tala.demo.moonshine_recipe`): its encoder distilled from the demo CTC model and
taught where each frame is, its decoder trained on the frozen encoder, then both together; then its
evaluation on the demo chapters' verses and the shipped folder.

    PYTHONPATH=scripts python -m tala.demo.moonshine --out resources/demo/moonshine

The folder is a whole Moonshine model as the hub ships ``UsefulSensors/moonshine-tiny``
(``config.json``, ``model.safetensors``, ``preprocessor_config.json``, the tokenizer), with
``training.json``, the stages' logs (``encoder_log.jsonl``, ``position_log.jsonl``, ``easy_log.jsonl``,
``chunks_log.jsonl``, ``full_log.jsonl``, ``training_log.jsonl``), ``eval.json`` and the card, so the
workflow fine-tunes it with LoRA (``moonshine.start``) exactly as it would the real one.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import tala
from tala.demo.evaluate import evaluate_verses, log_elapsed, safetensors_parameters, stage_log
from tala.demo.moonshine_recipe import DECODER_STAGES, MoonshineRecipe, RecipeRun, run_recipe
from tala.demo.pack import data_summary, split_utterances
from tala.demo.speech import tool_version
from tala.demo.speechllm_recipe import MORE_SPLIT
from tala.demo.stand_in import TEACHER, parse_args, prepare, print_summary
from tala.demo.text import LANGUAGES
from tala.errors import InputError, run_cli
from tala.fileio import atomic_dir, write_json_atomic

SHIPPED = ("config.json", "generation_config.json", "model.safetensors", "preprocessor_config.json",
           "tokenizer.json", "tokenizer_config.json")  # fmt: skip
LAST_LOG = "training_log.jsonl"  # the last stage's log (the recognizer's); the earlier ones <stage>_log.jsonl
STAGE_RECORDS = ("settings", "examples", "left_out", "steps", "best", "final_eval")  # of a stage's training.json


def pack(out: Path, run: RecipeRun, recipe: MoonshineRecipe, seed: int, demo_root: Path, work: Path,
         command: str) -> dict:
    """The shipped folder (whole or not at all): the model and processor, the logs,
    ``training.json``, ``eval.json`` and the card."""
    from tala.finetune.evaluate_asr import MoonshineRecognizer, System

    trained, last = run.moonshine, list(run.stages)[-1]
    info = {stage: json.loads((folder / "training.json").read_text(encoding="utf-8"))
            for stage, folder in run.stages.items() if (folder / "training.json").exists()}  # fmt: skip
    encoder_log = stage_log(run.encoder)
    position_log = stage_log(run.position)
    # The recipe's own logs, with their wall times (the trained folders' copies have none); the
    # last stage's ships as training_log.jsonl, the earlier ones as <stage>_log.jsonl.
    logs = {stage: stage_log(folder) for stage, folder in run.stages.items()}
    shipped_logs = {stage: LAST_LOG if stage == last else f"{stage}_log.jsonl" for stage in logs}
    # In training.json and the card the last stage is "moonshine" (the recognizer shipped).
    named = {stage: "moonshine" if stage == last else stage for stage in run.stages}
    with atomic_dir(out) as tmp:
        for name in SHIPPED:
            if (trained / name).exists():
                shutil.copyfile(trained / name, tmp / name)
        for log, name in [(encoder_log, "encoder_log.jsonl"), (position_log, "position_log.jsonl"),
                          *((logs[k], shipped_logs[k]) for k in logs)]:  # fmt: skip
            if log.exists():
                shutil.copyfile(log, tmp / name)
        recognizer = MoonshineRecognizer(System("stand-in", str(tmp), None), None, "cpu", "float32")
        report = evaluate_verses(recognizer, str(out), demo_root, work / "eval", list(run.manifests))
        write_json_atomic(tmp / "eval.json", report)
        distilled = json.loads((run.encoder / "distillation.json").read_text(encoding="utf-8"))
        placed = json.loads((run.position / "distillation.json").read_text(encoding="utf-8"))
        summary = {
            "generator": "tala.demo.moonshine",
            "tala_version": tala.__version__,
            "command": command,
            "seed": seed,
            "recipe": asdict(recipe),
            "teacher": str(TEACHER),
            "data": data_summary({lang: {**splits, **({MORE_SPLIT: run.more[lang]} if lang in run.more else {})}
                                  for lang, splits in run.manifests.items()}, demo_root),
            "stages": {
                # unpacked_from: a work folder rebuilt from a shipped stand-in (unpack)
                "encoder": {"final_eval": distilled["final_eval"], "log": "encoder_log.jsonl",
                            **({"unpacked_from": distilled["unpacked_from"]} if "unpacked_from" in distilled else {})},
                "position": {"final_eval": placed["final_eval"], "log": "position_log.jsonl"},
                # the stages that train the decoder (the curriculum's records are its log alone)
                **{named[stage]: {**{k: info[stage][k] for k in STAGE_RECORDS if stage in info},
                                  "stage": stage, "log": shipped_logs[stage]}
                   for stage in run.stages},
            },
            "stage_seconds_this_run": run.seconds,
            "stage_elapsed_s": {"encoder": log_elapsed(encoder_log), "position": log_elapsed(position_log),
                                **{named[stage]: log_elapsed(log) for stage, log in logs.items()}},
            "parameters": safetensors_parameters(tmp, {"model": "model.safetensors"}),
            "versions": {**info[last]["versions"], "espeak-ng": tool_version("espeak-ng")},
        }
        write_json_atomic(tmp / "training.json", summary)
        (tmp / "README.md").write_text(card(summary, report), encoding="utf-8")
    return report


def unpack(shipped: Path, work: Path, label: str) -> list[Path]:
    """Rebuild the finished stages' folders under ``<work>/models`` from a stand-in folder that
    :func:`pack` wrote (its model, its stages' records and logs), so that a stage added after its
    last one goes on from it without the hours before (:mod:`tala.demo.moonshine_recipe` skips a
    stage whose output exists). The folder of the stage that made the shipped model holds it; the
    encoder's and the position's folders hold it too, as their outputs (nothing reads their
    weights once a later stage exists); the decoder's earlier stages get their records and logs.
    The encoder's ``distillation.json`` records ``label`` as ``unpacked_from``; folders that exist
    are left alone. Returns the folders written."""
    info = json.loads((shipped / "training.json").read_text(encoding="utf-8"))
    stages = info["stages"]
    # the stage whose model shipped (a folder packed before the joint stage existed: "full")
    made = stages["moonshine"].get("stage", "full")
    records = {made: stages["moonshine"], **{s: stages[s] for s in DECODER_STAGES if s in stages}}
    models = work / "models"
    folders = {"encoder": models / "moonshine-init", "position": models / "moonshine-position",
               **{stage: models / name for stage, name in DECODER_STAGES.items()}}  # fmt: skip
    order = list(DECODER_STAGES)
    written = []
    for stage, folder in folders.items():
        if folder.exists() or (stage in DECODER_STAGES and order.index(stage) > order.index(made)):
            continue
        log = (stages[stage]["log"] if stage in ("encoder", "position") else
               records.get(stage, {}).get("log", LAST_LOG if stage == made else f"{stage}_log.jsonl"))  # fmt: skip
        with atomic_dir(folder) as tmp:
            if stage in ("encoder", "position", made):
                for name in SHIPPED:
                    if (shipped / name).exists():
                        shutil.copyfile(shipped / name, tmp / name)
            if stage in ("encoder", "position"):
                origin = {"unpacked_from": label} if stage == "encoder" else {}
                write_json_atomic(tmp / "distillation.json", {"final_eval": stages[stage]["final_eval"], **origin})
            elif stage in records:
                write_json_atomic(tmp / "training.json", {**{k: records[stage][k] for k in STAGE_RECORDS
                                                             if k in records[stage]}, "versions": info["versions"]})
        if (shipped / log).exists():  # where pack reads a stage's log
            stage_log(folder).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shipped / log, stage_log(folder))
        written.append(folder)
    return written


def shipped_label(folder: Path) -> str:
    """``folder@<commit>``: the last commit that changed it (the folder alone outside a git checkout)."""
    done = subprocess.run(["git", "log", "-1", "--format=%h", "--", str(folder)], capture_output=True, text=True)
    commit = done.stdout.strip() if done.returncode == 0 else ""
    return f"{folder}@{commit}" if commit else str(folder)


def card(info: dict, report: dict) -> str:
    recipe, stages = info["recipe"], info["stages"]
    rows = "\n".join(f"| {LANGUAGES[lang].name} | {s['verses']} | {100 * s['cer']:.1f} % | {100 * s['wer']:.1f} % |"
                     for lang, s in report["summary"].items())  # fmt: skip
    enc_eval = stages["encoder"]["final_eval"] or {}
    pos_eval = stages["position"]["final_eval"] or {}
    source = stages["encoder"].get("unpacked_from")
    unpacked = (f"\n\n   This build unpacked the stages `{source}` had finished (`--unpack`: its model, records and "
                "logs) and ran the ones after." if source else "")  # fmt: skip
    full = stages["full"].get("final_eval") or {}
    minutes = {k: round(v / 60, 1) for k, v in info["stage_elapsed_s"].items()}
    # the joint stage under its own name when a later one shipped (the last stage is "moonshine")
    joint, joint_minutes = stages.get("joint", stages["moonshine"]), minutes.get("joint", minutes["moonshine"])
    joint_eval = joint.get("final_eval") or {}
    again = ""
    if "joint" in stages:
        final = stages["moonshine"]["final_eval"] or {}
        again = f"""

5. **Again, from stage 4** ({minutes['moonshine']} min): its validation CER was still falling at its end (at
   a few per cent of its lr), so {recipe['joint2_steps']} steps more, the cosine restarted at lr
   {recipe['joint2_lr']:g}, the data in a new order: validation CER {100 * final.get('cer', float('nan')):.1f} %, WER
   {100 * final.get('wer', float('nan')):.1f} % (best step {(stages['moonshine']['best'] or {}).get('step')};
   `training_log.jsonl`)."""
    more = split_utterances(info["data"], MORE_SPLIT)
    more_hours = sum(d.get(f"{s}_hours", 0) for d in info["data"].values() for s in ("train", MORE_SPLIT))
    return f"""# Demo Moonshine stand-in (tala)

A tiny `MoonshineForConditionalGeneration` ({info['parameters']['model']:,} parameters: hidden {recipe['hidden']},
{recipe['encoder_layers']} encoder and {recipe['decoder_layers']} decoder layers, {recipe['positions']} decoder positions as
`UsefulSensors/moonshine-tiny`, a BPE tokenizer of the training texts), so that `make demo` runs seed 004's
LoRA fine-tuning without a model hub. **It knows only espeak-ng's Samoan-ish (`haw` voice) and
Portuguese speech and is no use on real recordings.** It loads as the real one does:
`MoonshineForConditionalGeneration.from_pretrained("resources/demo/moonshine")`, `AutoFeatureExtractor`,
`AutoTokenizer`.

## How it was trained (`{info['command']}`, seed {info['seed']})

On the demo speech-LLM recipe's synthesized speech (`tala.demo.training_speech`: espeak-ng, random
sentences of common words and pseudo-words; any sentence sharing four consecutive words with a demo
verse dropped) and its BPE tokenizer:

1. **Encoder** ({minutes['encoder']} min on 2 CPU cores): distilled from the demo CTC model
   (`resources/demo/model` with each language's adapter), KL divergence between its per-frame character
   posteriors and a linear CTC head on Moonshine's encoder (24 ms frames matched to the teacher's 20 ms by
   time), {recipe['distill_steps']} steps of {recipe['windows_per_batch']} windows of 30 s. Validation
   greedy-CTC CER through the (dropped) head: {100 * enc_eval.get('cer', float('nan')):.1f} %. Log: `encoder_log.jsonl`.
2. **Where each frame is** ({minutes['position']} min): a Moonshine encoder has rotary attention and no
   absolute positions, and after the KL alone a linear probe found each frame's time in its clip with
   R² 0.06 (the speech-LLM's Whisper encoder: 0.95); a decoder reading it through cross-attention
   (which has no positions of its own) learned the texts but not where to read. So the encoder goes
   on {recipe['position_steps']} steps (the first {recipe['position_heads_steps']} refitting the heads, the encoder
   frozen) with a linear head regressing each frame's time beside the KL (weight
   {recipe['position_weight']}), on windows cut to one random length a batch
   ({recipe['position_cut_seconds'][0]:.0f}-{recipe['position_cut_seconds'][1]:.0f} s). On the validation clips:
   the head's time R² {pos_eval.get('time_r2', float('nan')):.2f} (mean error
   {pos_eval.get('time_mae_s', float('nan')):.1f} s), CTC CER {100 * pos_eval.get('cer', float('nan')):.1f} %.
   Log: `position_log.jsonl`.
3. **Decoder**, encoder frozen (its output of each clip computed once, each clip encoded alone as
   it is read: Moonshine's first GroupNorm spans a padded batch): `tala.finetune.moonshine`
   (`train="decoder"`), labels = tokens + `</s>`, in three stages, each from the last:
   - a curriculum of short clips (one short sentence of listed words each; {recipe['easy_steps']} steps, {minutes['easy']} min;
     `easy_log.jsonl`);
   - clips of 3-10 words cut from the training utterances between words ({recipe['chunk_steps']} steps,
     {minutes['chunks']} min; `chunks_log.jsonl`);
   - the whole utterances and more utterances of new sentences ({more}; {more_hours:.0f} h in all;
     {recipe['moonshine_steps']} steps of {recipe['batch_seconds']:.0f} s of audio, {minutes['full']} min;
     `full_log.jsonl`).

   The last two with guided attention (`tala.finetune.guided`, weight {recipe['guided_attention']}): half
   the cross-attention heads are rewarded for reading each token where the teacher's greedy path put its
   word (word times matched to the text). Without it the decoder stayed a language model of the text
   (validation CER 97 % after 2,400 steps on whole utterances). Validation CER
   {100 * full.get('cer', float('nan')):.1f} %, WER {100 * full.get('wer', float('nan')):.1f} %
   (best step {(stages['full'].get('best') or {}).get('step')}).
4. **Encoder and decoder together** (`train="all"`, each clip encoded alone; {joint_minutes} min): the
   frozen encoder knew each frame's sounds but its place only to about a second, and a decoder that finds
   where to read by the frames' content alone read the demo verses at 55-59 % CER. From stage 3, on its
   data with its guided attention, {recipe['joint_steps']} steps of {recipe['joint_batch_seconds']:.0f} s of audio at
   lr {recipe['joint_lr']:g}: validation CER {100 * joint_eval.get('cer', float('nan')):.1f} %, WER
   {100 * joint_eval.get('wer', float('nan')):.1f} % (best step {(joint.get('best') or {}).get('step')};
   `{joint.get('log')}`).{again}{unpacked}

## Evaluation on the demo chapters (never trained on)

Greedy transcripts of every verse of the bundled demo chapters (`eval.json`), before any fine-tuning:

| language | verses | CER | WER |
|---|---:|---:|---:|
{rows}

The workflow fine-tunes LoRA adapters on each demo language's dataset (`finetune.models: [..., moonshine]`,
`moonshine.start: resources/demo/moonshine`) and reports before -> after on the held-out test chapter.
"""


def add_unpack(parser) -> None:
    parser.add_argument("--unpack", type=Path, metavar="FOLDER",
                        help="first rebuild the finished stages in --work from this shipped stand-in "
                             "(e.g. resources/demo/moonshine), so only the stages after its last one run")  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv, "tala.demo.moonshine", __doc__.splitlines()[0], "resources/demo/moonshine",
                      options=add_unpack)  # fmt: skip
    command = prepare(args, "tala.demo.moonshine")
    if args.unpack is not None:
        if not (args.unpack / "training.json").is_file():
            raise InputError(args.unpack, "not a Moonshine stand-in this recipe shipped (no training.json)")
        for folder in unpack(args.unpack, args.work, shipped_label(args.unpack)):
            print(f"unpacked {folder} from {args.unpack}", file=sys.stderr)
    recipe = MoonshineRecipe()
    run = run_recipe(args.work, recipe, args.seed, args.workers, args.teacher, progress=not args.no_progress)
    print_summary(pack(args.out, run, recipe, args.seed, args.demo, args.work, command))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
