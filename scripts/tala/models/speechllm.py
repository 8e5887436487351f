"""Seed 003's recognizer: a frozen Whisper encoder, an ``AudioProjectorV1`` and a causal language model
that writes the transcript (``SpeechLLMV1``).

The encoder turns 16 kHz speech into 50 frames per second (Whisper's log-mel at 100 Hz, halved by
its second convolution). Whisper always encodes a 30 s window; only the frames of the clip itself
are kept (:func:`encoder_frames`), so a 4 s clip gives the decoder 4 s of audio, not 30. The
projector stacks ``stack`` consecutive frames (4: 12.5 audio tokens per second, as SALMONN and
Qwen-Audio reduce the rate before the LLM), and maps them with a two-layer MLP (GELU) and an RMSNorm
to the decoder's embedding size. The decoder reads

    [bos] [audio tokens] [prompt tokens] [transcript tokens] [eos]

and is trained with the loss on the transcript and ``eos`` only (:func:`build_batch` sets every
other label to -100; the causal LM shifts labels by one itself, as Hugging Face's models do).
Generation feeds ``[bos] [audio] [prompt]`` as embeddings, left-padded, and decodes greedily.

Which parts learn is the trainer's choice: the projector always; the decoder through LoRA adapters
(peft) on its attention projections, or entirely when a stand-in is pre-trained from scratch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from tala.fileio import read_json_object, tidy_adapter_config

SAMPLE_RATE = 16_000
ENCODER_HOP = 320  # samples per encoder frame: mel hop 160, then the encoder's stride-2 convolution
IGNORE_INDEX = -100


class SpeechLLMError(ValueError):
    """A clip, transcript or setting the recognizer cannot take (one line, says what and why)."""


class AudioProjectorV1(nn.Module):
    """Stacks ``stack`` encoder frames and maps them to the decoder's embeddings: Linear, GELU,
    Linear, RMSNorm."""

    def __init__(self, encoder_dim: int, decoder_dim: int, stack: int = 4, hidden_dim: int | None = None):
        super().__init__()
        if stack < 1:
            raise SpeechLLMError(f"projector stack must be at least 1, not {stack}")
        self.stack = stack
        hidden_dim = hidden_dim or decoder_dim
        self.fc1 = nn.Linear(encoder_dim * stack, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, decoder_dim)
        self.norm = nn.RMSNorm(decoder_dim)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Audio tokens of clips of ``lengths`` encoder frames (a partial stack is dropped, at least 1)."""
        return torch.clamp(lengths // self.stack, min=1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(batch, frames, encoder_dim) -> (batch, frames // stack, decoder_dim); frames beyond the
        last whole stack are dropped (pad frames first to keep them)."""
        batch, n, dim = frames.shape
        n_tokens = max(1, n // self.stack)
        if n < self.stack:
            frames = nn.functional.pad(frames, (0, 0, 0, self.stack - n))
        stacked = frames[:, : n_tokens * self.stack].reshape(batch, n_tokens, dim * self.stack)
        return self.norm(self.fc2(self.act(self.fc1(stacked))))


def encoder_frames(n_samples: int) -> int:
    """Encoder frames that hold a clip of ``n_samples`` at 16 kHz (the rest of the window is padding)."""
    return max(1, math.ceil(n_samples / ENCODER_HOP))


@dataclass(frozen=True)
class Prompt:
    """The token ids around the audio: ``bos`` before it, the instruction after it, ``eos`` after the
    transcript, ``pad`` for batching."""

    bos: int
    eos: int
    pad: int
    instruction: tuple[int, ...] = ()


@dataclass
class Batch:
    """One batch for the decoder: input embeddings, attention mask (1 = a real position) and, for
    training, the labels (-100 where nothing is scored)."""

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None


def build_batch(
    audio_tokens: Sequence[torch.Tensor],
    embed: nn.Module,
    prompt: Prompt,
    targets: Sequence[Sequence[int]] | None = None,
    left_pad: bool = False,
) -> Batch:
    """Assemble ``[bos] [audio] [instruction] ([target] [eos])`` per example and pad the batch.

    ``audio_tokens``: per example a (tokens, dim) tensor from the projector. ``embed``: the
    decoder's input embedding. With ``targets`` the labels are the target ids and ``eos`` at their
    positions and -100 everywhere else (bos, audio, instruction, padding); without, the batch is the
    generation prompt. Training pads on the right, generation (``left_pad``) on the left so that
    every example's next token comes at the same position.
    """
    if targets is not None and len(targets) != len(audio_tokens):
        raise SpeechLLMError(f"{len(audio_tokens)} clips but {len(targets)} transcripts")
    device = audio_tokens[0].device
    head = torch.tensor([prompt.bos], device=device)
    instruction = torch.tensor(prompt.instruction, dtype=torch.long, device=device)
    rows, labels = [], []
    for i, audio in enumerate(audio_tokens):
        parts = [embed(head), audio.to(embed.weight.dtype), embed(instruction)]
        label = [IGNORE_INDEX] * (1 + audio.shape[0] + len(prompt.instruction))
        if targets is not None:
            target = torch.tensor([*targets[i], prompt.eos], dtype=torch.long, device=device)
            parts.append(embed(target))
            label += target.tolist()
        rows.append(torch.cat(parts))
        labels.append(label)
    width = max(row.shape[0] for row in rows)
    dim = rows[0].shape[1]
    pad_embedding = embed(torch.tensor([prompt.pad], device=device))[0]
    inputs = pad_embedding.expand(len(rows), width, dim).clone()
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    label_tensor = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long, device=device)
    for i, (row, label) in enumerate(zip(rows, labels)):
        span = slice(width - row.shape[0], width) if left_pad else slice(0, row.shape[0])
        inputs[i, span] = row
        mask[i, span] = 1
        label_tensor[i, span] = torch.tensor(label, dtype=torch.long, device=device)
    return Batch(inputs, mask, label_tensor if targets is not None else None)


class SpeechLLMV1(nn.Module):
    """Whisper encoder (frozen) -> ``AudioProjectorV1`` -> causal LM.

    ``encoder``: a ``WhisperEncoder`` (or anything returning ``last_hidden_state`` of shape (batch,
    frames, dim) at 50 Hz for ``input_features``); ``decoder``: a causal LM (a ``LlamaForCausalLM``,
    a peft model around one, ...). ``prompt``: the token ids around the audio.
    """

    def __init__(self, encoder: nn.Module, projector: AudioProjectorV1, decoder: nn.Module, prompt: Prompt):
        super().__init__()
        self.encoder = encoder
        self.projector = projector
        self.decoder = decoder
        self.prompt = prompt
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True) -> SpeechLLMV1:
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout, whatever the rest does
        return self

    @property
    def embed(self) -> nn.Module:
        return self.decoder.get_input_embeddings()

    @torch.no_grad()
    def encode(self, input_features: torch.Tensor, n_samples: Sequence[int]) -> list[torch.Tensor]:
        """The encoder frames of each clip: (frames, dim) per clip, padding frames dropped."""
        hidden = self.encoder(input_features=input_features).last_hidden_state
        return [hidden[i, : min(encoder_frames(n), hidden.shape[1])] for i, n in enumerate(n_samples)]

    def audio_tokens(self, frames: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Projected audio tokens per clip from its encoder frames (batched through the projector)."""
        width = max(f.shape[0] for f in frames)
        width = max(self.projector.stack, math.ceil(width / self.projector.stack) * self.projector.stack)
        padded = frames[0].new_zeros(len(frames), width, frames[0].shape[1])
        for i, f in enumerate(frames):
            padded[i, : f.shape[0]] = f
        tokens = self.projector(padded)
        lengths = self.projector.output_lengths(torch.tensor([f.shape[0] for f in frames]))
        return [tokens[i, : int(n)] for i, n in enumerate(lengths)]

    def prefix_positions(self, n_frames: int) -> int:
        """Decoder positions before a transcript of a clip of ``n_frames`` encoder frames: bos, its
        audio tokens (``stack`` frames each, not the frames), the instruction."""
        audio = int(self.projector.output_lengths(torch.tensor(n_frames)))
        return 1 + audio + len(self.prompt.instruction)

    def loss(self, frames: Sequence[torch.Tensor], targets: Sequence[Sequence[int]]) -> torch.Tensor:
        """Mean cross-entropy of the transcripts (and their eos) given the clips' encoder frames."""
        return self.scored(frames, targets)[0].loss

    def scored(self, frames: Sequence[torch.Tensor], targets: Sequence[Sequence[int]], output_attentions: bool = False):
        """The decoder's output on a training batch (``.loss``, and ``.attentions`` when asked) and
        per example where its transcript reads its audio: (first row predicting a transcript token,
        rows (the tokens and eos), first audio position, audio positions)."""
        audio = self.audio_tokens(frames)
        batch = build_batch(audio, self.embed, self.prompt, targets)
        out = self.decoder(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, labels=batch.labels,
                           output_attentions=output_attentions, use_cache=False)  # fmt: skip
        instruction = len(self.prompt.instruction)
        # [bos] [audio] [instruction] [target] [eos]: the instruction's last position predicts the first token
        spans = [(a.shape[0] + instruction, len(t) + 1, 1, a.shape[0]) for a, t in zip(audio, targets)]
        return out, spans

    @torch.no_grad()
    def generate(self, frames: Sequence[torch.Tensor], max_new_tokens: int, num_beams: int = 1) -> list[list[int]]:
        """Transcripts (token ids, without eos) of clips given their encoder frames: greedy, or the
        best of a beam search of ``num_beams`` (transformers' length-normalized score)."""
        batch = build_batch(self.audio_tokens(frames), self.embed, self.prompt, left_pad=True)
        out = self.decoder.generate(
            inputs_embeds=batch.inputs_embeds,
            attention_mask=batch.attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=num_beams,
            eos_token_id=self.prompt.eos,
            pad_token_id=self.prompt.pad,
        )
        # Given embeddings only, a decoder-only model's generate() returns the new tokens only.
        return [ids[: ids.index(self.prompt.eos)] if self.prompt.eos in ids else ids for ids in out.tolist()]


# --------------------------------------------------------------------------- limits, checks


def encoder_window_samples(encoder_config) -> int:
    """Samples in the encoder's fixed window (Whisper: 1,500 positions x 2 x 160 = 30 s)."""
    return int(encoder_config.max_source_positions) * ENCODER_HOP


def feature_extractor_for(encoder_config):
    """Whisper's log-mel front end for this encoder: its mel bins, and a window as long as the
    encoder's (30 s for every released Whisper)."""
    from transformers import WhisperFeatureExtractor

    window = encoder_window_samples(encoder_config)
    if window % SAMPLE_RATE:
        raise SpeechLLMError(f"the encoder's window ({window} samples) is not a whole number of seconds")
    return WhisperFeatureExtractor(feature_size=encoder_config.num_mel_bins, chunk_length=window // SAMPLE_RATE)


def generation_budget(n_samples: int, prefix: int, limit: int) -> int:
    """The new tokens a clip's transcript may take: 25 a second plus 16 (more than any language is
    read at with a small BPE: the demo's Samoan takes up to 7.4 a second), within the decoder's
    ``limit`` positions left after the ``prefix`` (:meth:`SpeechLLMV1.prefix_positions`: bos, the
    clip's audio tokens, the instruction). The trainer's validation and ``evaluate_asr`` both use
    it, so their CERs agree."""
    return max(1, min(16 + int(25 * n_samples / SAMPLE_RATE), limit - prefix))


def decoder_limit(model: SpeechLLMV1) -> int:
    """The decoder's positions (``max_position_embeddings``; 4,096 when its config has none)."""
    return int(getattr(model.decoder.config, "max_position_embeddings", 4096))


def log_mel(feature_extractor, audio: list) -> torch.Tensor:
    """Whisper's log-mel input features of 16 kHz clips, always in float32: the feature extractor
    runs on the CPU, outside any autocast the encoder runs under (a CPU bf16 autocast would give it
    bf16 spectrograms, which it cannot turn into numpy)."""
    with torch.autocast("cpu", enabled=False):
        return feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features


def read_clip(model: SpeechLLMV1, tokenizer, feature_extractor, samples, device, max_new_tokens: int | None = None,
              num_beams: int = 1) -> str:
    """The transcript of one clip that fits the encoder's window (greedy, or a beam search of
    ``num_beams``), within its :func:`generation_budget` (and ``max_new_tokens`` when given): how
    ``evaluate_asr`` reads a part and the trainer's validation reads a part again."""
    (frames,) = model.encode(log_mel(feature_extractor, [samples]).to(device), [len(samples)])
    budget = generation_budget(len(samples), model.prefix_positions(frames.shape[0]), decoder_limit(model))
    if max_new_tokens:
        budget = min(budget, max_new_tokens)
    return tokenizer.decode(model.generate([frames], max_new_tokens=budget, num_beams=num_beams)[0],
                            skip_special_tokens=True)


def check_clip(n_samples: int, window_samples: int, name: str) -> None:
    """A clip longer than the encoder's window is refused, never cut: the words after the window
    would vanish from the audio but not from the transcript."""
    if n_samples > window_samples:
        raise SpeechLLMError(
            f"{name}: {n_samples / SAMPLE_RATE:.1f} s is longer than the encoder's {window_samples / SAMPLE_RATE:.0f} s"
            " window; split it into shorter clips (the dataset cuts clips at verse ends)"
        )
    if n_samples <= 0:
        raise SpeechLLMError(f"{name}: the clip has no samples")


def check_sequence(n_tokens: int, n_samples: int, stack: int, prompt: Prompt, limit: int, name: str) -> None:
    """The whole decoder sequence (bos, audio tokens, instruction, transcript, eos) must fit the
    decoder's positions (``max_position_embeddings``)."""
    n_audio = max(1, encoder_frames(n_samples) // stack)
    total = 1 + n_audio + len(prompt.instruction) + n_tokens + 1
    if total > limit:
        raise SpeechLLMError(
            f"{name}: the transcript's {n_tokens} tokens with {n_audio} audio tokens and the prompt make"
            f" {total} positions, more than the decoder's {limit}"
        )


def linear_layer_names(model: nn.Module) -> list[str]:
    """The distinct names (last component) of a model's linear layers: what LoRA can target."""
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)})


def check_lora_targets(model: nn.Module, targets: Sequence[str], part: str = "decoder") -> None:
    """Every LoRA target must name linear layers of the model (the recognizer's ``part``) as peft
    matches them: a layer's last name (``q_proj``) or a dotted end of its name (``encoder_attn.q_proj``:
    the cross-attention's only); otherwise one error listing them."""
    full = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    missing = [t for t in targets if not any(name == t or name.endswith("." + t) for name in full)]
    if missing:
        kind = getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__
        raise SpeechLLMError(
            f"LoRA target module(s) {', '.join(missing)} not found in the {kind} {part}; its linear layers"
            f" are: {', '.join(linear_layer_names(model))} (or a dotted end of a layer's name, as"
            " self_attn.q_proj)"
        )


# --------------------------------------------------------------------------- saving and loading

CONFIG_NAME = "speechllm.json"
PROJECTOR_NAME = "projector.safetensors"
LORA_DIR = "lora"  # the decoder's LoRA adapter (peft's save_pretrained)
DECODER_DIR = "decoder"  # a decoder trained whole (a stand-in pre-trained from scratch)


@dataclass(frozen=True)
class SpeechLLMConfig:
    """What a saved recognizer is made of. ``encoder`` and ``decoder`` are hub ids or folders (a
    relative folder is read from the saved model's folder); the decoder's folder holds its
    tokenizer."""

    encoder: str
    decoder: str
    stack: int = 4
    projector_hidden: int | None = None  # None: the decoder's hidden size
    instruction: str = ""  # text between the audio and the transcript
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    class_name: str = field(default="SpeechLLMV1", init=False)

    @classmethod
    def read(cls, path: Path) -> SpeechLLMConfig:
        data = read_json_object(path)  # InputError naming the file: not JSON, not an object
        if data.pop("class_name", "SpeechLLMV1") != "SpeechLLMV1":
            raise SpeechLLMError(f"{path}: not a SpeechLLMV1 model")
        data["lora_targets"] = tuple(data.get("lora_targets", ()))
        try:
            return cls(**data)
        except TypeError as err:  # a field this version does not know, or one missing
            raise SpeechLLMError(f"{path}: unreadable model config ({err})") from None


def load_whisper_encoder(id_or_path: str) -> nn.Module:
    """A Whisper encoder from a whole Whisper checkpoint (``openai/whisper-small``: the decoder is
    dropped) or from a checkpoint of the encoder alone (``WhisperEncoder.save_pretrained``)."""
    from transformers import WhisperConfig, WhisperModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig.from_pretrained(id_or_path)
    if "WhisperEncoder" in (config.architectures or []):
        return WhisperEncoder.from_pretrained(id_or_path)
    return WhisperModel.from_pretrained(id_or_path).get_encoder()


def prompt_for(tokenizer, instruction: str) -> Prompt:
    """The prompt ids from the decoder's tokenizer (a tokenizer without bos or pad uses eos)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise SpeechLLMError("the decoder's tokenizer has no end-of-sequence token")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    ids = tokenizer(instruction, add_special_tokens=False).input_ids if instruction else []
    return Prompt(bos=bos, eos=eos, pad=pad, instruction=tuple(ids))


def write_speechllm(folder: Path, model: SpeechLLMV1, config: SpeechLLMConfig, tokenizer=None) -> None:
    """Write the recognizer into the existing ``folder``: the config, the projector (safetensors)
    and the decoder: its LoRA adapter (peft) when it has one, else the whole decoder and its
    tokenizer (``decoder/``). The encoder is never written: it is frozen and named by the config."""
    from safetensors.torch import save_file

    folder = Path(folder)
    projector = {k: v.detach().cpu().contiguous() for k, v in model.projector.state_dict().items()}
    save_file(projector, str(folder / PROJECTOR_NAME))
    if hasattr(model.decoder, "peft_config"):
        model.decoder.save_pretrained(str(folder / LORA_DIR))
        tidy_adapter_config(folder / LORA_DIR, config.decoder)
    else:
        model.decoder.save_pretrained(str(folder / DECODER_DIR))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(folder / DECODER_DIR))
        fields = {k: v for k, v in asdict(config).items() if k != "class_name"}
        config = SpeechLLMConfig(**{**fields, "decoder": DECODER_DIR})
    (folder / CONFIG_NAME).write_text(json.dumps(asdict(config), indent=2) + "\n", encoding="utf-8")


def save_speechllm(folder: Path, model: SpeechLLMV1, config: SpeechLLMConfig, tokenizer=None) -> None:
    """:func:`write_speechllm` into a new ``folder``, whole or not at all."""
    from tala.fileio import atomic_dir

    with atomic_dir(folder) as tmp:
        write_speechllm(tmp, model, config, tokenizer)


def load_speechllm(folder: Path, device: str = "cpu", trainable_lora: bool = False, models_dir=None):
    """(model, tokenizer, config) of a saved recognizer, with plain transformers and peft. Bases
    named by hub id are read from ``models_dir`` when download_models put them there."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tala.hub import beside, check_weights, resolve_model

    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        raise SpeechLLMError(f"{folder}: no {CONFIG_NAME}: not a saved speech-LLM recognizer")
    config = SpeechLLMConfig.read(folder / CONFIG_NAME)
    check_weights(folder, f"{LORA_DIR}/adapter_model.safetensors", required=(PROJECTOR_NAME,))
    # Parts saved inside the folder are named relative to it: from here on, joined to the folder's path.
    config = replace(config, encoder=beside(folder, config.encoder), decoder=beside(folder, config.decoder))
    encoder = load_whisper_encoder(resolve_model(config.encoder, models_dir))
    decoder_path = resolve_model(config.decoder, models_dir)
    decoder = AutoModelForCausalLM.from_pretrained(decoder_path)
    tokenizer = AutoTokenizer.from_pretrained(decoder_path)
    if (folder / LORA_DIR).is_dir():
        decoder = PeftModel.from_pretrained(decoder, str(folder / LORA_DIR), is_trainable=trainable_lora)
    projector = AudioProjectorV1(encoder.config.d_model, decoder.config.hidden_size, config.stack,
                                 config.projector_hidden)
    projector.load_state_dict(load_file(str(folder / PROJECTOR_NAME)))
    model = SpeechLLMV1(encoder, projector, decoder, prompt_for(tokenizer, config.instruction)).to(device)
    return model.eval(), tokenizer, config
