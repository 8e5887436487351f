"""The demo speech-LLM's training recipe: a small Whisper encoder, a small Llama decoder with its own
BPE tokenizer, and the projector between them, trained on synthesized speech (never the demo's
sentences: :mod:`tala.demo.training_speech`).

    data       synthesize train/valid utterances per language      -> <work>/data/<lang>/<split>.jsonl
    teacher    the demo CTC model's per-frame character posteriors  -> <work>/teacher/<lang>/<split>.npz
    encoder    a WhisperEncoder distilled from them (KL per frame)  -> <work>/models/encoder
    tokenizer  a BPE tokenizer (``tokenizers``, words cut as SentencePiece cuts them) trained on the
               train texts, and a random-weight Llama decoder       -> <work>/models/decoder-init
    easy data  one short sentence of listed words per utterance     -> <work>/data/<lang>/easy.jsonl
    word times each training word's time on the teacher's greedy path -> <work>/data/<lang>/train.timed.jsonl
    joined     training utterances joined into 15-29 s clips        -> <work>/data/<lang>/joined.jsonl
    narrative  Portuguese scripture-style prose, its teacher targets and word times
                                                        -> <work>/data/por/narrative{,-valid,.timed}.jsonl
    more       more utterances of new sentences, their teacher targets and word times (the Moonshine
               recipe's last stage reads the same split)  -> <work>/data/<lang>/more{,.timed}.jsonl
    speechllm  projector + whole decoder on the frozen encoder (:func:`tala.finetune.speechllm.train`,
               ``train="all"``): the short clips first (a curriculum), then the full data, then
               the full data with the joined clips, then those with the narrative prose, then all
               of it with the more utterances   -> <work>/models/speechllm{-easy,,-joined,-narrative,-more}

The encoder is distilled (:mod:`tala.demo.distill`: why, and how the frames are matched) and always
sees the real 30 s window, as the shipped one must behave as Whisper does. Each stage is skipped
when its output exists and resumes from its checkpoints (the shared training core) after a kill; a
decoder stage is also skipped when a later one's output exists (only the last one is read on).
"""

# %%
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from tala.demo.distill import (DistillSettings, Student, distill, records_of, stage_joined, stage_teacher,
                               stage_word_times)
from tala.demo.stand_in import Stopwatch, last_made
from tala.demo.text import LANGUAGES
from tala.demo.training_speech import synthesize_split
from tala.fileio import atomic_dir

SAMPLE_RATE = 16_000
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
# The decoder's stages in order and the folder each writes under <work>/models.
DECODER_STAGES = {"easy": "speechllm-easy", "full": "speechllm", "joined": "speechllm-joined",
                  "narrative": "speechllm-narrative", "more": "speechllm-more"}
MORE_SPLIT = "more"


@dataclass(frozen=True)
class SpeechLLMRecipe:
    """What ``make demo-speechllm`` runs: steps, not minutes (the card records the minutes)."""

    train_utterances: tuple[tuple[str, int], ...] = (("smo", 2000), ("por", 3000))
    valid_utterances: int = 48  # per language
    # The encoder: Whisper's layout (80 mel bins, 2 convolutions, pre-LN transformer, 1500 positions).
    encoder_dim: int = 192
    encoder_layers: int = 4
    encoder_heads: int = 4
    encoder_ffn: int = 768
    distill_steps: int = 1200
    distill_lr: float = 1.5e-3
    distill_warmup: int = 100
    windows_per_batch: int = 4
    # The decoder: Llama's layout, tied embeddings, its own BPE.
    bpe_vocab: int = 768
    decoder_hidden: int = 192
    decoder_layers: int = 4
    decoder_heads: int = 3
    decoder_ffn: int = 576
    decoder_positions: int = 1024  # 30 s = 375 audio tokens; the longest transcript ~200 tokens
    # A curriculum first: one short sentence of listed words per clip (~2 s, ~25 audio tokens). On
    # the full data straight from random weights, the decoder wrote "o o o o ..." after 650 steps
    # (validation CER 86 %): it had not found where in the audio to read.
    easy_utterances: int = 2000  # per language
    easy_steps: int = 1000
    easy_lr: float = 2e-3
    easy_batch_seconds: float = 60.0
    easy_max_batch_size: int = 32
    # Then the full data with guided attention aimed at each token's time (tala.finetune.guided; the
    # teacher's word times, stage_word_times): without it the decoder was
    # still a language model of the text after 2,000 more steps (loss 3.9, the text's own entropy).
    speechllm_steps: int = 8000
    speechllm_lr: float = 1e-3
    guided_attention: float = 1.0
    guided_width: float = 0.1
    speechllm_warmup: int = 100
    batch_seconds: float = 120.0
    max_batch_size: int = 16
    stack: int = 4
    # Last, the same data with long clips joined from it (stage_joined, 15-29 s): after the stage
    # above, two validation utterances joined were read worse than each alone (CER 54 % vs 43 %), and
    # the longest demo clips (20 s, 60 words) were cut short after ~20 words.
    joined_steps: int = 4000
    joined_lr: float = 5e-4
    # Last, the same data plus Portuguese scripture-style prose (training_speech's ``narrative``
    # split, as the CTC recipe's scripture stage has): "E disse ..., e ..." chains of the commonest
    # narrative words. Validation adds held-out prose of the same kind (``narrative-valid``).
    narrative_utterances: tuple[tuple[str, int], ...] = (("por", 3000),)
    narrative_valid_utterances: int = 48
    narrative_steps: int = 1500
    narrative_lr: float = 3e-4
    # Last, all of that with more utterances of new sentences (MORE_SPLIT, 27 h, 3x the distinct
    # sentences: the Moonshine recipe's split, one synthesis for both). After the prose stage the
    # training loss was 0.47 a token against 0.65 on held-out speech: the decoder was learning the
    # sentences more than the reading. With them: validation loss 0.65 -> 0.53, CER 30.9 -> 26.7 %
    # (still falling at step 1,500); every demo verse: Samoan 19.2 -> 16.5 %, Portuguese 19.3 -> 17.3 %.
    more_utterances: tuple[tuple[str, int], ...] = (("smo", 4000), ("por", 6000))
    more_steps: int = 1500
    more_lr: float = 3e-4


# %% [markdown]
# ## Data and the teacher's targets

# %%


def stage_data(work: Path, recipe: SpeechLLMRecipe, seed: int, workers: int) -> dict[str, dict[str, Path]]:
    manifests: dict[str, dict[str, Path]] = {}
    for lang in LANGUAGES:
        out = work / "data" / lang
        manifests[lang] = {
            "valid": synthesize_split(out, lang, "valid", recipe.valid_utterances, seed, workers),
            "train": synthesize_split(out, lang, "train", dict(recipe.train_utterances)[lang], seed, workers),
        }
    return manifests


def stage_narrative_data(work: Path, recipe: SpeechLLMRecipe, seed: int, workers: int) -> dict[str, dict[str, Path]]:
    """The languages with prose (:attr:`SpeechLLMRecipe.narrative_utterances`): their ``narrative``
    and ``narrative-valid`` splits."""
    return {lang: {"narrative": synthesize_split(work / "data" / lang, lang, "narrative", count, seed, workers),
                   "narrative-valid": synthesize_split(work / "data" / lang, lang, "narrative-valid",
                                                       recipe.narrative_valid_utterances, seed, workers)}
            for lang, count in recipe.narrative_utterances}  # fmt: skip


def stage_narrative(work: Path, recipe: SpeechLLMRecipe, seed: int, workers: int, teacher: Path) -> dict:
    """The prose's splits, the teacher's targets and word times of its training split (what the
    guided attention reads): per language ``{"narrative": timed manifest, "narrative-valid": ...}``."""
    manifests = stage_narrative_data(work, recipe, seed, workers)
    training = {lang: {"narrative": splits["narrative"]} for lang, splits in manifests.items()}
    timed = stage_word_times(work, training, stage_teacher(work, training, teacher), teacher, split="narrative")
    return {lang: {"narrative": timed[lang], "narrative-valid": manifests[lang]["narrative-valid"]}
            for lang in manifests}  # fmt: skip


def stage_more(work: Path, counts: tuple[tuple[str, int], ...], seed: int, workers: int,
               teacher: Path) -> dict[str, Path]:
    """More utterances of new sentences (``counts`` a language, split :data:`MORE_SPLIT`),
    synthesized as the training split is, with the teacher's posteriors and word times: per
    language the timed manifest. Both recipes' last stages read it."""
    more = {lang: {MORE_SPLIT: synthesize_split(work / "data" / lang, lang, MORE_SPLIT, count, seed, workers)}
            for lang, count in counts}  # fmt: skip
    return stage_word_times(work, more, stage_teacher(work, more, teacher), teacher, split=MORE_SPLIT)


# %% [markdown]
# ## The encoder, distilled

# %%


def encoder_config(recipe: SpeechLLMRecipe):
    """Whisper's encoder layout at a small size; the window stays Whisper's 30 s (1500 positions)."""
    from transformers import WhisperConfig

    return WhisperConfig(
        num_mel_bins=80, d_model=recipe.encoder_dim, encoder_layers=recipe.encoder_layers,
        encoder_attention_heads=recipe.encoder_heads, encoder_ffn_dim=recipe.encoder_ffn, max_source_positions=1500,
        decoder_layers=1, decoder_attention_heads=recipe.encoder_heads, decoder_ffn_dim=recipe.encoder_ffn,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, encoder_layerdrop=0.0,
        architectures=["WhisperEncoder"],
    )  # fmt: skip


def whisper_student(recipe: SpeechLLMRecipe) -> Student:
    """A WhisperEncoder as :func:`tala.demo.distill.distill`'s student: log-mel in, 320 samples a
    frame (the teacher's grid)."""
    from transformers import WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    features = WhisperFeatureExtractor(feature_size=80, chunk_length=30)

    def hidden(encoder, audio):
        mel = features(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        return encoder(mel).last_hidden_state

    return Student(name="WhisperEncoder", hop=320, align=1, dim=recipe.encoder_dim,
                   build=lambda: WhisperEncoder(encoder_config(recipe)), encoder_of=lambda built: built,
                   hidden=hidden, save=lambda built, folder: built.save_pretrained(str(folder)))  # fmt: skip


def stage_encoder(work: Path, manifests: dict, targets: dict, teacher: Path, recipe: SpeechLLMRecipe, seed: int,
                  progress: bool = True) -> Path:
    """A WhisperEncoder distilled from the teacher (:func:`tala.demo.distill.distill`)."""
    out = work / "models" / "encoder"
    if (out / "model.safetensors").exists():
        return out
    settings = DistillSettings(steps=recipe.distill_steps, lr=recipe.distill_lr, warmup=recipe.distill_warmup,
                               windows_per_batch=recipe.windows_per_batch)  # fmt: skip
    return distill(out, manifests, targets, teacher, whisper_student(recipe), settings, seed,
                   {"recipe": asdict(recipe)}, progress)


# %% [markdown]
# ## The tokenizer and the decoder

# %%


def train_texts(manifests: dict) -> list[str]:
    return [r["text"] for lang in manifests for r in records_of(manifests[lang]["train"])]


def stage_decoder_init(work: Path, manifests: dict, recipe: SpeechLLMRecipe, seed: int) -> Path:
    """A BPE tokenizer trained on the training texts (``tokenizers``: Metaspace words, as
    SentencePiece cuts them) and a Llama decoder with random weights, saved as one HF folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = work / "models" / "decoder-init"
    if (out / "config.json").exists():
        return out
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    bpe.decoder = decoders.Metaspace()
    bpe.train_from_iterator(train_texts(manifests), trainers.BpeTrainer(
        vocab_size=recipe.bpe_vocab, special_tokens=list(SPECIALS), show_progress=False))  # fmt: skip
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")  # fmt: skip
    config = LlamaConfig(
        vocab_size=bpe.get_vocab_size(), hidden_size=recipe.decoder_hidden, intermediate_size=recipe.decoder_ffn,
        num_hidden_layers=recipe.decoder_layers, num_attention_heads=recipe.decoder_heads,
        num_key_value_heads=recipe.decoder_heads, max_position_embeddings=recipe.decoder_positions,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    return out


def stage_easy_data(work: Path, recipe: SpeechLLMRecipe, seed: int, workers: int) -> dict[str, Path]:
    """The curriculum's clips: one short sentence of listed words each (the CTC recipe's ``easy``)."""
    return {lang: synthesize_split(work / "data" / lang, lang, "easy", recipe.easy_utterances, seed, workers)
            for lang in LANGUAGES}  # fmt: skip


def speechllm_settings(recipe: SpeechLLMRecipe, seed: int, stage: str = "full"):
    """The trainer's settings for a stage of the recipe: ``easy`` (the curriculum's short clips),
    ``full`` (the whole utterances), ``joined`` (with the long clips), ``narrative`` (with the
    prose) or ``more`` (with the more utterances)."""
    from tala.finetune.speechllm import SpeechLLMSettings

    easy = stage == "easy"
    steps, lr = {"easy": (recipe.easy_steps, recipe.easy_lr), "full": (recipe.speechllm_steps, recipe.speechllm_lr),
                 "joined": (recipe.joined_steps, recipe.joined_lr),
                 "narrative": (recipe.narrative_steps, recipe.narrative_lr),
                 "more": (recipe.more_steps, recipe.more_lr)}[stage]  # fmt: skip
    batch_seconds, batch_size = ((recipe.easy_batch_seconds, recipe.easy_max_batch_size) if easy
                                 else (recipe.batch_seconds, recipe.max_batch_size))  # fmt: skip
    return SpeechLLMSettings(train="all", max_steps=steps, learning_rate=lr, warmup_steps=recipe.speechllm_warmup,
                             min_lr_ratio=0.02, weight_decay=0.01, batch_seconds=batch_seconds,
                             max_batch_size=batch_size, seed=seed, stack=recipe.stack, text_field="text",
                             eval_every=250 if stage in ("easy", "narrative", "more") else 500, checkpoint_every=100,
                             log_every=25, cache_frames=True, reread=False,  # each clip read once, as shipped
                             best_metric="cer",  # the weights kept by validation CER, as shipped
                             guided_attention=0.0 if easy else recipe.guided_attention,
                             guided_attention_width=recipe.guided_width)  # fmt: skip


def stage_speechllm(work: Path, manifests: dict, easy: dict[str, Path], timed: dict[str, Path],
                    joined: dict[str, Path], narrative: dict[str, dict[str, Path]], more: dict[str, Path],
                    encoder: Path, decoder: Path, recipe: SpeechLLMRecipe, seed: int,
                    progress: bool = True) -> dict[str, Path]:
    """Projector and whole decoder on the frozen encoder, both languages (the trainer's ``all``
    mode): first the curriculum's short clips from the bases, then the full data from there, then
    the full data with its joined long clips, then those with the narrative prose (validated on its
    held-out prose too), then all of that with the more utterances. Each stage's folder
    (:data:`DECODER_STAGES`), in order; the stages before the last one whose output exists are not
    run again."""
    from tala.finetune.speechllm import train

    valid = [manifests[lang]["valid"] for lang in manifests]
    data = {"easy": list(easy.values()), "full": [timed[lang] for lang in manifests],
            "joined": [m for lang in manifests for m in (timed[lang], joined[lang])]}  # fmt: skip
    data["narrative"] = data["joined"] + [splits["narrative"] for splits in narrative.values()]
    data["more"] = data["narrative"] + [more[lang] for lang in manifests if lang in more]
    prose_valid = valid + [splits["narrative-valid"] for splits in narrative.values()]
    valids = {"narrative": prose_valid, "more": prose_valid}
    folders = {stage: work / "models" / name for stage, name in DECODER_STAGES.items()}
    made = last_made(folders.values(), "speechllm.json")
    previous = None
    for i, (stage, out) in enumerate(folders.items()):
        if i > made:
            bases = ({"encoder": str(encoder.resolve()), "decoder": str(decoder.resolve())} if previous is None
                     else {"start": previous})  # fmt: skip
            train(data[stage], out, speechllm_settings(recipe, seed, stage), valid_manifests=valids.get(stage, valid),
                  progress=progress, keep_checkpoint_dir=True, **bases)  # fmt: skip
        previous = out
    return folders


@dataclass(frozen=True)
class RecipeRun:
    manifests: dict[str, dict[str, Path]]
    narrative: dict[str, dict[str, Path]]  # the prose's timed training split and its validation split
    more: dict[str, Path]  # per language, the last stage's more utterances (timed)
    encoder: Path
    decoder_init: Path
    stages: dict[str, Path]  # the decoder's stages (DECODER_STAGES), the last one the recognizer
    seconds: dict[str, float]

    @property
    def speechllm(self) -> Path:
        return list(self.stages.values())[-1]


def run_recipe(work: Path, recipe: SpeechLLMRecipe, seed: int, workers: int, teacher: Path,
               progress: bool = True) -> RecipeRun:
    """Every stage in order, each skipped when its output exists (the seconds are this run's)."""
    watch = Stopwatch()
    manifests = watch.run("data", stage_data, work, recipe, seed, workers)
    targets = watch.run("teacher", stage_teacher, work, manifests, teacher)
    encoder = watch.run("encoder", stage_encoder, work, manifests, targets, teacher, recipe, seed, progress)
    decoder = watch.run("tokenizer", stage_decoder_init, work, manifests, recipe, seed)
    easy = watch.run("easy data", stage_easy_data, work, recipe, seed, workers)
    timed = watch.run("word times", stage_word_times, work, manifests, targets, teacher)
    joined = watch.run("joined", stage_joined, timed, seed)
    narrative = watch.run("narrative", stage_narrative, work, recipe, seed, workers, teacher)
    more = watch.run("more", stage_more, work, recipe.more_utterances, seed, workers, teacher)
    stages = watch.run("speechllm", stage_speechllm, work, manifests, easy, timed, joined, narrative, more,
                       encoder, decoder, recipe, seed, progress)  # fmt: skip
    return RecipeRun(manifests, narrative, more, encoder, decoder, stages, watch.seconds)
