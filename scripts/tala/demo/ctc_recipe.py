"""The demo model's training recipe: an MMS-shaped wav2vec2 config scaled down, and the stages that
train it, each one :func:`tala.finetune.train_ctc.train` run.

    data       synthesize easy/train/valid(/narrative) utterances per language -> <work>/data/<lang>/<split>.jsonl
    easy       curriculum: random weights, short sentences, joint vocabulary mul -> <work>/models/easy
    base       all parameters, the full data of both languages, mul           -> <work>/models/base
    scripture  two passes more with Portuguese narrative prose               -> <work>/models/scripture{,-2}
    adapters   per language: adapter layers + lm_head on the frozen base      -> <work>/models/{smo,por}

A stage whose output exists is skipped, and a stage that was killed resumes from its checkpoints
(``train`` keeps them beside its output), so a rerun of :func:`run_recipe` picks up where it stopped.
"""

# %%
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tala.demo.text import JOINT_LANG, LANGUAGES, nested_vocab
from tala.demo.training_speech import synthesize_split
from tala.fileio import write_json_atomic

if TYPE_CHECKING:
    from tala.finetune.train_ctc import TrainSettings

DEFAULT_SEED = 20_240_611
DEFAULT_WORK = Path(".cache/demo_model")

# %% [markdown]
# ## The model: MMS's shape, scaled down

# %%


def demo_config(vocab_size: int, adapter_dim: int = 16) -> dict:
    """A ~2 M parameter wav2vec2 with MMS's layout: stable layer norm (pre-LN transformer, layer
    norm in every conv layer), attention adapters in every layer, the standard 7-layer CNN
    (kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2: 320 samples = 20 ms per frame) at 64 channels.
    No SpecAugment-style masking and no dropout: the synthesized data is clean and the model small."""
    from transformers import Wav2Vec2Config

    config = Wav2Vec2Config(
        vocab_size=vocab_size,
        hidden_size=192,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=768,
        hidden_act="gelu",
        conv_dim=(64,) * 7,
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=64,
        num_conv_pos_embedding_groups=16,
        adapter_attn_dim=adapter_dim,
        mask_time_prob=0.0,
        mask_feature_prob=0.0,
        hidden_dropout=0.0,
        activation_dropout=0.0,
        attention_dropout=0.0,
        feat_proj_dropout=0.0,
        final_dropout=0.0,
        layerdrop=0.0,
        ctc_loss_reduction="mean",
        ctc_zero_infinity=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return config.to_dict()


# %% [markdown]
# ## The recipe

# %%


@dataclass(frozen=True)
class Recipe:
    """What ``make demo-model`` runs. Steps, not minutes, so that the result is reproducible;
    the times in the model card are what the recorded run took on 2 CPU cores."""

    # Portuguese gets more: its spelling has to be learned word by word, Samoan's is phonemic.
    train_utterances: tuple[tuple[str, int], ...] = (("smo", 2000), ("por", 3000))
    valid_utterances: int = 48  # per language
    easy_utterances: int = 2000  # per language: the curriculum's short sentences
    easy_steps: int = 700
    easy_lr: float = 2e-3
    easy_warmup: int = 150
    base_steps: int = 3000
    base_lr: float = 1.5e-3
    base_warmup: int = 100
    # Portuguese also gets scripture-style prose ("E disse ..., e ..."): its commonest word, "e",
    # is read [i], and the base still writes it "i" or glues it to the next word.
    narrative_utterances: tuple[tuple[str, int], ...] = (("por", 4000),)
    scripture_steps: int = 3600
    scripture_lr: float = 8e-4
    scripture_warmup: int = 50
    # A second pass over the same data at a lower peak lr, in another order: the first pass sees
    # each utterance about once, and its valid CER was still falling when its lr ran out.
    scripture2_steps: int = 3000
    scripture2_lr: float = 4e-4
    adapter_steps: tuple[tuple[str, int], ...] = (("smo", 300), ("por", 600))
    adapter_lr: float = 1e-3
    adapter_warmup: int = 30
    # Small batches: many updates per CPU minute, which is what gets CTC off its all-blank plateau.
    batch_seconds: float = 24.0
    max_batch_size: int = 8
    easy_max_batch_size: int = 16
    adapter_dim: int = 16


def easy_settings(recipe: Recipe, seed: int) -> TrainSettings:
    from tala.finetune.train_ctc import TrainSettings

    # The lr ends at a quarter of its peak: the base stage goes on from here with its own warm-up.
    return TrainSettings(phase="all", max_steps=recipe.easy_steps, learning_rate=recipe.easy_lr,
                         warmup_steps=recipe.easy_warmup, schedule="cosine", min_lr_ratio=0.25,
                         batch_seconds=recipe.batch_seconds, max_batch_size=recipe.easy_max_batch_size, seed=seed,
                         eval_every=0, checkpoint_every=100, log_every=25)  # fmt: skip


def base_settings(recipe: Recipe, seed: int) -> TrainSettings:
    from tala.finetune.train_ctc import TrainSettings

    return TrainSettings(phase="all", max_steps=recipe.base_steps, learning_rate=recipe.base_lr,
                         warmup_steps=recipe.base_warmup, schedule="cosine", min_lr_ratio=0.02,
                         batch_seconds=recipe.batch_seconds, max_batch_size=recipe.max_batch_size, seed=seed,
                         eval_every=250, checkpoint_every=100, log_every=25)  # fmt: skip


def scripture_settings(recipe: Recipe, seed: int, second: bool = False) -> TrainSettings:
    """The scripture stage's first pass, or (``second``) its second pass: a lower peak lr and
    another data order (the seed + 1)."""
    from tala.finetune.train_ctc import TrainSettings

    steps, lr = ((recipe.scripture2_steps, recipe.scripture2_lr) if second
                 else (recipe.scripture_steps, recipe.scripture_lr))
    return TrainSettings(phase="all", max_steps=steps, learning_rate=lr,
                         warmup_steps=recipe.scripture_warmup, schedule="cosine", min_lr_ratio=0.02,
                         batch_seconds=recipe.batch_seconds, max_batch_size=recipe.max_batch_size,
                         seed=seed + 1 if second else seed, eval_every=250, checkpoint_every=100,
                         log_every=25)  # fmt: skip


def adapter_settings(recipe: Recipe, seed: int, lang: str) -> TrainSettings:
    from tala.finetune.train_ctc import TrainSettings

    return TrainSettings(phase="adapter", max_steps=dict(recipe.adapter_steps)[lang], learning_rate=recipe.adapter_lr,
                         warmup_steps=recipe.adapter_warmup, schedule="cosine", min_lr_ratio=0.02,
                         batch_seconds=recipe.batch_seconds, max_batch_size=recipe.max_batch_size, seed=seed,
                         eval_every=100, checkpoint_every=50, log_every=25, head_init="copy")  # fmt: skip


def stage_data(work: Path, recipe: Recipe, seed: int, workers: int) -> dict[str, dict[str, Path]]:
    manifests: dict[str, dict[str, Path]] = {}
    for lang in LANGUAGES:
        out = work / "data" / lang
        manifests[lang] = {
            "valid": synthesize_split(out, lang, "valid", recipe.valid_utterances, seed, workers),
            "easy": synthesize_split(out, lang, "easy", recipe.easy_utterances, seed, workers),
            "train": synthesize_split(out, lang, "train", dict(recipe.train_utterances)[lang], seed, workers),
        }
        if lang in dict(recipe.narrative_utterances):
            count = dict(recipe.narrative_utterances)[lang]
            manifests[lang]["narrative"] = synthesize_split(out, lang, "narrative", count, seed, workers)
    return manifests


def stage_easy(work: Path, manifests: dict, recipe: Recipe, seed: int) -> Path:
    """From random weights, all parameters, both languages, joint vocabulary ``mul``: the
    curriculum's short sentences of listed words."""
    from tala.finetune.train_ctc import train

    out = work / "models" / "easy"
    if (out / "model.safetensors").exists():
        return out
    spec = work / "models" / "spec"
    vocab = nested_vocab(LANGUAGES, joint=True)
    write_json_atomic(spec / "config.json", demo_config(len(vocab[JOINT_LANG]), recipe.adapter_dim))
    write_json_atomic(spec / "vocab.json", vocab)
    train([manifests[lang]["easy"] for lang in LANGUAGES], out, JOINT_LANG, easy_settings(recipe, seed),
          valid_manifests=[manifests[lang]["valid"] for lang in LANGUAGES], config=spec / "config.json",
          vocab_file=spec / "vocab.json")  # fmt: skip
    return out


def stage_base(work: Path, easy: Path, manifests: dict, recipe: Recipe, seed: int) -> Path:
    """All parameters on the full data of both languages, on from the curriculum stage."""
    from tala.finetune.train_ctc import train

    out = work / "models" / "base"
    if (out / "model.safetensors").exists():
        return out
    train([manifests[lang]["train"] for lang in LANGUAGES], out, JOINT_LANG, base_settings(recipe, seed),
          valid_manifests=[manifests[lang]["valid"] for lang in LANGUAGES], model=str(easy))  # fmt: skip
    return out


def stage_scripture(work: Path, start: Path, manifests: dict, recipe: Recipe, seed: int, second: bool = False) -> Path:
    """All parameters again, on the full data plus the Portuguese narrative prose (the base still
    misspelled the commonest words of scripture); Samoan stays in the mix so the base keeps it.
    ``second``: the second pass, on from the first."""
    from tala.finetune.train_ctc import train

    out = work / "models" / ("scripture-2" if second else "scripture")
    if (out / "model.safetensors").exists():
        return out
    sources = [manifests[lang][split] for lang in LANGUAGES for split in ("train", "narrative")
               if split in manifests[lang]]  # fmt: skip
    train(sources, out, JOINT_LANG, scripture_settings(recipe, seed, second),
          valid_manifests=[manifests[lang]["valid"] for lang in LANGUAGES], model=str(start))  # fmt: skip
    return out


def stage_adapter(work: Path, base: Path, manifests: dict, lang: str, recipe: Recipe, seed: int) -> Path:
    """The language's adapter layers and lm_head on the frozen base; the head starts from the
    joint head's rows of the language's characters."""
    from tala.finetune.train_ctc import train

    out = work / "models" / lang
    if (out / f"adapter.{lang}.safetensors").exists():
        return out
    sources = [manifests[lang][split] for split in ("train", "narrative") if split in manifests[lang]]
    train(sources, out, lang, adapter_settings(recipe, seed, lang), valid_manifests=[manifests[lang]["valid"]],
          model=str(base))  # fmt: skip
    return out


@dataclass(frozen=True)
class RecipeRun:
    """Where a finished recipe left its results under ``<work>``."""

    manifests: dict[str, dict[str, Path]]  # lang -> split -> manifest
    stages: dict[str, Path]  # the joint stages in order: easy, base, scripture, scripture-2
    adapters: dict[str, Path]  # lang -> its adapter stage


def run_recipe(work: Path, recipe: Recipe, seed: int, workers: int) -> RecipeRun:
    """Every stage in order, each skipped when its output exists."""
    manifests = stage_data(work, recipe, seed, workers)
    easy = stage_easy(work, manifests, recipe, seed)
    base = stage_base(work, easy, manifests, recipe, seed)
    scripture = stage_scripture(work, base, manifests, recipe, seed)
    scripture2 = stage_scripture(work, scripture, manifests, recipe, seed, second=True)
    adapters = {lang: stage_adapter(work, scripture2, manifests, lang, recipe, seed) for lang in LANGUAGES}
    stages = {"easy": easy, "base": base, "scripture": scripture, "scripture-2": scripture2}
    return RecipeRun(manifests, stages, adapters)
