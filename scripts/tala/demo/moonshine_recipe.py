"""The demo Moonshine's training recipe: a small ``MoonshineForConditionalGeneration`` with the demo
speech-LLM's BPE tokenizer, trained on the same synthesized speech (:mod:`tala.demo.speechllm_recipe`
makes it; the two recipes share ``<work>``).

    data, teacher, tokenizer   as the speech-LLM recipe's (made by it when missing)
    encoder    Moonshine's encoder distilled from the demo CTC model (:mod:`tala.demo.distill`: 384
               samples a frame, utterances on the 1,920-sample grid both frame rates share), saved
               with a random-weight decoder, the processor and the tokenizer -> <work>/models/moonshine-init
    position   that encoder taught where each frame is (a linear head regressing each frame's time
               beside the KL, on windows cut to random lengths) -> <work>/models/moonshine-position
    more       more utterances of new sentences for the decoder's last stage, with the teacher's
               posteriors and word times           -> <work>/data/<lang>/more{,.timed}.jsonl
    moonshine  the whole decoder on the frozen (position) encoder (:func:`tala.finetune.moonshine.train`,
               ``train="decoder"``, the encoder's output of each clip computed once): the speech-LLM
               recipe's short clips first (a curriculum), then 3-10-word clips cut from the full
               data, then the full data and the more utterances, the last two with guided attention
               at the teacher's word times         -> <work>/models/moonshine{-easy,-chunks,}
    joint      the encoder and the decoder together (``train="all"``) on the last stage's data, with
               its guided attention                -> <work>/models/moonshine-joint
    joint2     the same again from it, a lower lr, the data in a new order -> <work>/models/moonshine-joint2

Each stage is skipped when its output exists (a decoder stage also when a later one's does) and
resumes from its checkpoints after a kill. ``python -m tala.demo.moonshine --unpack <shipped folder>``
rebuilds the finished stages' folders from a shipped stand-in, so a new last stage goes on from it
without the hours before.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tala.demo.distill import DistillSettings, Student, distill, stage_chunks, stage_teacher, stage_word_times
from tala.demo.speechllm_recipe import (SpeechLLMRecipe, stage_data, stage_decoder_init, stage_easy_data,
                                       stage_more)
from tala.demo.stand_in import Stopwatch, last_made

SAMPLE_RATE = 16_000
MOONSHINE_HOP = 384  # samples per encoder frame: the convolutions' strides 64 x 3 x 2
# The stages that train the decoder, in order, and the folder each writes under <work>/models.
DECODER_STAGES = {"easy": "moonshine-easy", "chunks": "moonshine-chunks", "full": "moonshine",
                  "joint": "moonshine-joint", "joint2": "moonshine-joint2"}  # fmt: skip


@dataclass(frozen=True)
class MoonshineRecipe:
    """What ``make demo-moonshine`` runs (steps, not minutes)."""

    hidden: int = 160
    intermediate: int = 512
    encoder_layers: int = 4
    decoder_layers: int = 3
    heads: int = 4
    positions: int = 194  # moonshine-tiny's: 30 s x 6.5 tokens a second
    distill_steps: int = 1000
    distill_lr: float = 1.5e-3
    distill_warmup: int = 100
    windows_per_batch: int = 4
    # Then the encoder is taught where each frame is (DistillSettings.position_weight; its heads
    # refitted first, the encoder frozen): after the KL alone, a linear probe found each frame's time
    # in its clip with R² 0.06 (the speech-LLM's Whisper encoder: 0.95), and the decoder, which reads
    # through cross-attention (no positions of its own), learned the texts but not where to read
    # (validation CER 70 %, loss 3.4 a token while its training loss fell to 1.0).
    # At a constant lr (decayed by a cosine over the same steps, the time head reached R² 0.81, not 0.90).
    position_steps: int = 450
    position_heads_steps: int = 150
    position_lr: float = 5e-4
    position_heads_lr: float = 3e-3
    position_weight: float = 1.0
    position_cut_seconds: tuple[float, float] = (6.0, 30.0)
    # The speech-LLM's curriculum (one short sentence per clip) first: straight on the full data the
    # decoder had not found where to read after 2,000 steps (validation CER 261 %, loss 4.1).
    easy_steps: int = 1000
    easy_lr: float = 2e-3
    easy_batch_seconds: float = 60.0
    easy_max_batch_size: int = 32
    # Then clips of 3-10 words cut from the full data between words (stage_chunks), then the full
    # data, both with guided attention aimed at each token's time (tala.finetune.guided; the
    # teacher's word times, stage_word_times). Straight from the curriculum to the full data the
    # decoder was still a language model of the text after 2,400 steps (loss 3.5-3.9, validation
    # CER 97 %); with the diagonal prior alone, CER 72 % after 2,500.
    chunk_steps: int = 4000
    chunk_max_batch_size: int = 32
    moonshine_steps: int = 8000
    moonshine_lr: float = 1e-3
    guided_attention: float = 1.0
    guided_width: float = 0.1
    moonshine_warmup: int = 100
    batch_seconds: float = 120.0
    max_batch_size: int = 16
    # The last stage also reads the speech-LLM recipe's more utterances of new sentences
    # (SpeechLLMRecipe.more_utterances, MORE_SPLIT: 27 h more, 3x the distinct sentences). On the
    # shared 13 h alone, teacher-forced, the decoder's guided heads read held-out clips about where
    # they read training clips (mass within 0.25 s of the token 0.35-0.43 vs 0.38-0.49) but its loss
    # there was 1.1 nats a token higher: it learned the sentences, not the reading (validation loss
    # 3.15 at step 3,000, then rising to 3.72 at 8,000; CER 64.0 %; every demo verse: Samoan 58.9 %,
    # Portuguese 68.7 %). With them: validation loss still falling at 8,000 (2.47), CER 61.0 % (step
    # 6,000); demo verses 55.4 % / 58.9 %.
    # Last, the encoder learns with the decoder (the trainer's "all" mode, each clip encoded alone),
    # on the last stage's data with its guided attention: the frozen encoder knew each frame's sounds
    # (CTC CER 9.3 % through a linear head) but its time only to 1.3 s, and the decoder, which finds
    # its place by the frames' content alone, read the demo verses at 55-59 % CER. Together, from
    # the last stage: validation loss 2.47 -> 1.71 / 1.21 / 0.81 / 0.57 nats a token at steps
    # 500 / 1,000 / 2,000 / 3,500, CER 61.0 -> 51.3 / 49.0 / 29.1 / 20.3 % (53 min); demo verses
    # 16.2 % / 23.1 %. The first errors left are the attention's: a phrase read twice, one skipped.
    joint_steps: int = 4000
    joint_lr: float = 3e-4
    joint_warmup: int = 100
    joint_batch_seconds: float = 60.0
    joint_max_batch_size: int = 8
    # Its validation CER was still falling at the end (22.0 -> 20.3 % over the last 500 steps, at
    # 2-10 % of the lr): a second joint run from it, the cosine restarted lower (a warm restart),
    # the data in a new order (seed + 1): validation CER 26.4 / 21.5 / 15.4 / 11.4 / 9.6 / 8.8 % at
    # steps 500 / 1,000 / 2,000 / 3,000 / 3,500 / 4,000 (loss 0.67 -> 0.34; 50 min); demo verses
    # 7.3 % / 14.1 %.
    joint2_steps: int = 4000
    joint2_lr: float = 2e-4



def moonshine_config(recipe: MoonshineRecipe, tokenizer):
    from transformers import MoonshineConfig

    return MoonshineConfig(
        vocab_size=len(tokenizer), hidden_size=recipe.hidden, intermediate_size=recipe.intermediate,
        encoder_num_hidden_layers=recipe.encoder_layers, decoder_num_hidden_layers=recipe.decoder_layers,
        encoder_num_attention_heads=recipe.heads, decoder_num_attention_heads=recipe.heads,
        max_position_embeddings=recipe.positions, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip


def feature_extractor():
    """Moonshine's processor front end: raw 16 kHz audio, not normalized, with an attention mask."""
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=False,
                                    return_attention_mask=True)  # fmt: skip


def moonshine_student(recipe: MoonshineRecipe, tokenizer, start: Path | None = None) -> Student:
    """Moonshine's encoder as the distillation's student; the whole model (its decoder as
    ``start``'s, or untrained) is saved with the processor's parts."""
    import torch
    from transformers import MoonshineForConditionalGeneration

    def build():
        if start is not None:
            return MoonshineForConditionalGeneration.from_pretrained(str(start))
        return MoonshineForConditionalGeneration(moonshine_config(recipe, tokenizer))

    def hidden(encoder, audio):
        return encoder(torch.from_numpy(np.stack(audio))).last_hidden_state

    def save(model, folder):
        model.save_pretrained(str(folder))
        feature_extractor().save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))

    return Student(name="MoonshineEncoder", hop=MOONSHINE_HOP, align=6, dim=recipe.hidden, build=build,
                   encoder_of=lambda model: model.get_encoder(), hidden=hidden, save=save,
                   start=None if start is None else str(start))  # fmt: skip


def stage_encoder(work: Path, manifests: dict, targets: dict, teacher: Path, tokenizer_dir: Path,
                  recipe: MoonshineRecipe, seed: int, progress: bool = True) -> Path:
    from transformers import AutoTokenizer

    out = work / "models" / "moonshine-init"
    if (out / "model.safetensors").exists():
        return out
    settings = DistillSettings(steps=recipe.distill_steps, lr=recipe.distill_lr, warmup=recipe.distill_warmup,
                               windows_per_batch=recipe.windows_per_batch)  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    return distill(out, manifests, targets, teacher, moonshine_student(recipe, tokenizer), settings, seed,
                   {"recipe": asdict(recipe)}, progress)


def stage_position(work: Path, manifests: dict, targets: dict, teacher: Path, encoder: Path,
                   recipe: MoonshineRecipe, seed: int, progress: bool = True) -> Path:
    """The distilled encoder taught where each frame is (the KL goes on beside the position head),
    on windows cut to random lengths -> <work>/models/moonshine-position (the whole model, its
    decoder still untrained; ``distillation.json`` with the head's ``time_r2`` on the validation clips)."""
    from transformers import AutoTokenizer

    out = work / "models" / "moonshine-position"
    if (out / "model.safetensors").exists():
        return out
    settings = DistillSettings(steps=recipe.position_steps, lr=recipe.position_lr, warmup=0, decay="constant",
                               windows_per_batch=recipe.windows_per_batch, eval_every=0,
                               position_weight=recipe.position_weight, cut_seconds=recipe.position_cut_seconds,
                               heads_steps=recipe.position_heads_steps, heads_lr=recipe.position_heads_lr)  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(str(encoder))
    return distill(out, manifests, targets, teacher, moonshine_student(recipe, tokenizer, start=encoder), settings,
                   seed, {"recipe": asdict(recipe), "stage": "position", "start": str(encoder)}, progress)  # fmt: skip


def moonshine_settings(recipe: MoonshineRecipe, seed: int, stage: str = "full"):
    """A stage's settings: ``easy`` (the curriculum), ``chunks`` or ``full`` (the decoder on the
    frozen encoder, its output of each clip cached), or ``joint`` (both learn)."""
    from tala.finetune.moonshine import MoonshineSettings

    steps, lr, warmup, batch_seconds, batch_size = {
        "easy": (recipe.easy_steps, recipe.easy_lr, recipe.moonshine_warmup, recipe.easy_batch_seconds,
                 recipe.easy_max_batch_size),
        "chunks": (recipe.chunk_steps, recipe.moonshine_lr, recipe.moonshine_warmup, recipe.batch_seconds,
                   recipe.chunk_max_batch_size),
        "full": (recipe.moonshine_steps, recipe.moonshine_lr, recipe.moonshine_warmup, recipe.batch_seconds,
                 recipe.max_batch_size),
        "joint": (recipe.joint_steps, recipe.joint_lr, recipe.joint_warmup, recipe.joint_batch_seconds,
                  recipe.joint_max_batch_size),
        "joint2": (recipe.joint2_steps, recipe.joint2_lr, recipe.joint_warmup, recipe.joint_batch_seconds,
                   recipe.joint_max_batch_size),
    }[stage]  # fmt: skip
    joint = stage.startswith("joint")
    return MoonshineSettings(train="all" if joint else "decoder", max_steps=steps, learning_rate=lr,
                             warmup_steps=warmup, min_lr_ratio=0.02, weight_decay=0.01, batch_seconds=batch_seconds,
                             max_batch_size=batch_size, accumulate=1, seed=seed + (stage == "joint2"),
                             text_field="text",
                             eval_every=250 if stage == "easy" else 500,
                             checkpoint_every=50 if joint else 100, log_every=25, cache_frames=not joint,
                             reread=False,  # each clip read once, as the shipped run
                             best_metric="cer",  # the weights kept by validation CER, as the shipped run
                             guided_attention=0.0 if stage == "easy" else recipe.guided_attention,
                             guided_attention_width=recipe.guided_width)  # fmt: skip


def stage_moonshine(work: Path, manifests: dict, easy: dict[str, Path], chunks: dict[str, Path],
                    timed: dict[str, Path], more: dict[str, Path], start: Path, recipe: MoonshineRecipe, seed: int,
                    progress: bool = True) -> dict[str, Path]:
    """The decoder on the frozen encoder: the curriculum's short clips, the chunks, the full data
    with the more utterances; then the encoder and decoder together on that data. Each stage's
    folder (:data:`DECODER_STAGES`), in order; the stages before the last one whose output exists
    are not run again."""
    from tala.finetune.moonshine import train

    valid = [manifests[lang]["valid"] for lang in manifests]
    data = {"easy": [easy[lang] for lang in manifests], "chunks": [chunks[lang] for lang in manifests],
            "full": [timed[lang] for lang in manifests] + [more[lang] for lang in manifests if lang in more]}
    data["joint"] = data["joint2"] = data["full"]
    folders = {stage: work / "models" / name for stage, name in DECODER_STAGES.items()}
    made = last_made(folders.values(), "model.safetensors")
    previous = start
    for i, (stage, out) in enumerate(folders.items()):
        if i > made:
            train(data[stage], out, moonshine_settings(recipe, seed, stage), str(previous), valid_manifests=valid,
                  progress=progress, keep_checkpoint_dir=True)  # fmt: skip
        previous = out
    return folders


@dataclass(frozen=True)
class RecipeRun:
    manifests: dict[str, dict[str, Path]]
    encoder: Path
    position: Path  # the encoder taught where each frame is; the decoder's stages start from it
    more: dict[str, Path]  # per language, the last stage's more utterances (timed)
    stages: dict[str, Path]  # the stages that train the decoder (DECODER_STAGES), the last one the recognizer
    seconds: dict[str, float]

    @property
    def moonshine(self) -> Path:
        return list(self.stages.values())[-1]


def run_recipe(work: Path, recipe: MoonshineRecipe, seed: int, workers: int, teacher: Path,
               progress: bool = True) -> RecipeRun:
    """Every stage in order, each skipped when its output exists (the seconds are this run's)."""
    watch = Stopwatch()
    shared = SpeechLLMRecipe()  # the data and the tokenizer are the speech-LLM recipe's
    manifests = watch.run("data", stage_data, work, shared, seed, workers)
    targets = watch.run("teacher", stage_teacher, work, manifests, teacher)
    tokenizer = watch.run("tokenizer", stage_decoder_init, work, manifests, shared, seed)
    encoder = watch.run("encoder", stage_encoder, work, manifests, targets, teacher, tokenizer, recipe, seed, progress)
    position = watch.run("position", stage_position, work, manifests, targets, teacher, encoder, recipe, seed,
                         progress)  # fmt: skip
    easy = watch.run("easy data", stage_easy_data, work, shared, seed, workers)
    timed = watch.run("word times", stage_word_times, work, manifests, targets, teacher)
    chunks = watch.run("chunks", stage_chunks, timed, seed)
    more = watch.run("more", stage_more, work, shared.more_utterances, seed, workers, teacher)
    stages = watch.run("moonshine", stage_moonshine, work, manifests, easy, chunks, timed, more, position, recipe,
                       seed, progress)  # fmt: skip
    return RecipeRun(manifests, encoder, position, more, stages, watch.seconds)
