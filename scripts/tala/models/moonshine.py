"""Seed 004's recognizer: Moonshine (Hugging Face's ``MoonshineForConditionalGeneration``) with LoRA
adapters (peft) on its attention projections.

Moonshine reads raw 16 kHz audio (three convolutions: 384 samples, 24 ms, per encoder frame; rotary
positions, so no fixed window) and writes the transcript with a decoder that cross-attends to the
encoder. It was trained on clips of at most 30 s, and its decoder's positions bound the transcript
(``max_position_embeddings``: 194 for ``UsefulSensors/moonshine-tiny``, 30 s x 6.5 tokens a
second): a longer clip is refused in training (:func:`check_clip`; never cut: its words would stay
in the target and leave the audio) and transcribed in parts in evaluation; a longer transcript is
reported (:func:`check_transcript`).

A saved fine-tuned recognizer is a folder that plain transformers + peft read back::

    moonshine.json        the base (hub id or folder) and the LoRA settings
    adapter_config.json, adapter_model.safetensors   peft's save_pretrained (or model.safetensors: a whole model)
    preprocessor_config.json, tokenizer files        the processor's parts

:func:`load_moonshine_lora` is that reading.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from tala.fileio import read_json_object, tidy_adapter_config

SAMPLE_RATE = 16_000
MAX_CLIP_S = 30.0  # the longest clip Moonshine was trained on
IGNORE_INDEX = -100
CONFIG_NAME = "moonshine.json"


class MoonshineError(ValueError):
    """A clip, transcript or setting the recognizer cannot take (one line, says what and why)."""


def check_clip(n_samples: int, max_s: float, name: str) -> None:
    if n_samples <= 0:
        raise MoonshineError(f"{name}: the clip has no samples")
    if n_samples > max_s * SAMPLE_RATE:
        raise MoonshineError(f"{name}: {n_samples / SAMPLE_RATE:.1f} s is longer than the {max_s:.0f} s Moonshine "
                             "takes; split it into shorter clips (the dataset cuts clips at verse ends)")


def check_transcript(n_tokens: int, limit: int, name: str) -> None:
    """The decoder reads the start token and the transcript, and is trained to write ``eos`` after
    it: ``n_tokens + 1`` positions."""
    if n_tokens + 1 > limit:
        raise MoonshineError(f"{name}: the transcript's {n_tokens} tokens (+ end) are more than the decoder's "
                             f"{limit} positions")


def decoder_positions(model) -> int:
    return int(model.config.max_position_embeddings)


def target_ids(tokenizer, text: str) -> list[int]:
    """The label ids of a transcript: its tokens and ``eos`` (the model puts the start token in
    front of the decoder's inputs itself, shifting the labels right)."""
    return tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]


def audio_inputs(feature_extractor, audio: Sequence[np.ndarray], device) -> dict[str, torch.Tensor]:
    """Raw audio, padded, with the attention mask Moonshine's encoder uses for the padding."""
    inputs = feature_extractor(list(audio), sampling_rate=SAMPLE_RATE, return_tensors="pt", padding=True,
                               return_attention_mask=True)  # fmt: skip
    return {"input_values": inputs.input_values.to(device), "attention_mask": inputs.attention_mask.to(device)}


def base_of(model) -> torch.nn.Module:
    """The Moonshine model itself, also inside a peft model."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def encode_each(model, feature_extractor, audio: Sequence[np.ndarray], device) -> list[torch.Tensor]:
    """The encoder's output (frames, dim) of each clip, each encoded alone. Moonshine's first
    GroupNorm spans its whole input, padding included, so a clip encoded in a padded batch is heard
    differently (its features scaled by how much padding it got) from the same clip read alone, as
    generation and the evaluation read it: a decoder trained on the batch's version learns features
    it never meets when it reads."""
    encoder = base_of(model).get_encoder()
    # use_cache=False: an encoder keeps no cache (else, checkpointed, transformers warns it turns one off)
    return [encoder(**audio_inputs(feature_extractor, [clip], device), use_cache=False).last_hidden_state[0]
            for clip in audio]  # fmt: skip


def encode_alone(model, feature_extractor, audio: Sequence[np.ndarray], device) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`encode_each`, padded into a batch, and its frame mask (1: a frame of the clip)."""
    outputs = encode_each(model, feature_extractor, audio, device)
    hidden = torch.nn.utils.rnn.pad_sequence(outputs, batch_first=True)
    mask = torch.zeros(hidden.shape[:2], dtype=torch.int, device=hidden.device)
    for row, frames in enumerate(outputs):
        mask[row, : len(frames)] = 1
    return hidden, mask


def label_tensor(targets: Sequence[Sequence[int]], device) -> torch.Tensor:
    width = max(len(t) for t in targets)
    labels = torch.full((len(targets), width), IGNORE_INDEX, dtype=torch.long)
    for i, ids in enumerate(targets):
        labels[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return labels.to(device)


def read_clip(model, feature_extractor, tokenizer, samples: np.ndarray, device, num_beams: int = 1) -> str:
    """The transcript of one clip (:func:`generate_ids`, decoded): how ``evaluate_asr``, the
    trainer's validation and the artifact test read a clip or a part of one."""
    return tokenizer.decode(generate_ids(model, feature_extractor, [samples], device, num_beams)[0],
                            skip_special_tokens=True)


def generate_ids(model, feature_extractor, audio: Sequence[np.ndarray], device, num_beams: int = 1
                 ) -> list[list[int]]:
    """Transcripts' ids, greedy or the best of a beam search of ``num_beams`` (the start token
    and everything from ``eos`` on dropped). ``model`` is a Moonshine model or a peft model around
    one. The budget is the decoder's positions, not Moonshine's 6.5 tokens a second: that is English
    with its own tokenizer, and a language it was not made for takes more tokens a second (the
    demo's Samoan: up to 7.4 with its own BPE)."""
    base = base_of(model)
    inputs = audio_inputs(feature_extractor, audio, device)
    with torch.inference_mode():
        out = base.generate(**inputs, max_new_tokens=decoder_positions(base) - 1, do_sample=False,
                             num_beams=num_beams)
    eos = base.config.eos_token_id
    results = []
    for row in out.tolist():
        ids = row[1:]  # the decoder start token
        if eos in ids:
            ids = ids[: ids.index(eos)]
        results.append(ids)
    return results


# --------------------------------------------------------------------------- saving and loading


@dataclass(frozen=True)
class MoonshineLoRAConfig:
    """What a saved recognizer is made of: ``base`` (hub id or folder; relative folders are read
    from the saved folder) and how the adapters were made."""

    base: str
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    lora_parts: tuple[str, ...] | None = None  # the stacks with adapters (None: both)
    max_clip_s: float = MAX_CLIP_S
    class_name: str = field(default="MoonshineForConditionalGeneration+LoRA", init=False)

    @classmethod
    def read(cls, path: Path) -> MoonshineLoRAConfig:
        data = read_json_object(path)  # InputError naming the file: not JSON, not an object
        data.pop("class_name", None)
        data["lora_targets"] = tuple(data.get("lora_targets", ()))
        if data.get("lora_parts") is not None:
            data["lora_parts"] = tuple(data["lora_parts"])
        try:
            return cls(**data)
        except TypeError as err:  # a field this version does not know, or one missing
            raise MoonshineError(f"{path}: unreadable model config ({err})") from None

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


def load_moonshine(id_or_path: str):
    """(model, feature_extractor, tokenizer) of a Moonshine checkpoint: a hub id or a folder."""
    from transformers import AutoFeatureExtractor, AutoTokenizer, MoonshineForConditionalGeneration

    model = MoonshineForConditionalGeneration.from_pretrained(id_or_path)
    feature_extractor = AutoFeatureExtractor.from_pretrained(id_or_path)
    tokenizer = AutoTokenizer.from_pretrained(id_or_path)
    if model.config.pad_token_id is None:  # the labels' padding when the model shifts them right
        model.config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return model, feature_extractor, tokenizer


def write_moonshine(folder: Path, model, feature_extractor, tokenizer, config: MoonshineLoRAConfig) -> None:
    """Into the existing ``folder``: the processor's parts and either the LoRA adapter (peft's
    ``save_pretrained``) with ``moonshine.json`` naming the base, or (a model trained whole) the
    whole Moonshine model, a folder like the hub's."""
    folder = Path(folder)
    model.save_pretrained(str(folder))
    tidy_adapter_config(folder, config.base)  # only a LoRA recognizer has an adapter_config.json
    feature_extractor.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    if hasattr(model, "peft_config"):
        config.write(folder / CONFIG_NAME)


def load_moonshine_lora(model: str | Path, device: str = "cpu", trainable: bool = False, models_dir=None):
    """(model, feature_extractor, tokenizer, config) of a Moonshine recognizer, with plain
    transformers and peft. ``model``: a saved LoRA recognizer (a folder with ``moonshine.json``: its
    base, read from ``models_dir`` when download_models put a hub id there, and the adapter, which
    goes on learning with ``trainable``), or a whole Moonshine model (a hub id or a folder: a
    stand-in, a model trained whole)."""
    from peft import PeftModel
    from transformers import AutoFeatureExtractor, AutoTokenizer

    from tala.hub import ModelError, beside, check_weights, resolve_model

    folder = Path(model)
    try:
        if not (folder / CONFIG_NAME).is_file():
            whole, feature_extractor, tokenizer = load_moonshine(resolve_model(str(model), models_dir))
            return whole.to(device).eval(), feature_extractor, tokenizer, MoonshineLoRAConfig(base=str(model))
        config = MoonshineLoRAConfig.read(folder / CONFIG_NAME)
        check_weights(folder, "adapter_model.safetensors")
        base, _, _ = load_moonshine(resolve_model(beside(folder, config.base), models_dir))
    except ModelError as err:
        raise MoonshineError(str(err)) from None
    feature_extractor = AutoFeatureExtractor.from_pretrained(str(folder))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tuned = PeftModel.from_pretrained(base, str(folder), is_trainable=trainable)
    return tuned.to(device).eval(), feature_extractor, tokenizer, config
