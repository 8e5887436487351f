"""SpeechLLMV1 (Whisper encoder -> AudioProjectorV1 -> causal LM): the batch layout (what is masked, how
it is padded), an overfit that proves masking, label shift and generation right, saving and loading
with plain transformers + peft, and the inputs it refuses."""

from __future__ import annotations

import json

import jiwer
import numpy as np
import pytest
import soxr
import torch
from torch import nn

from conftest import require
from tala.models.speechllm import (
    IGNORE_INDEX,
    AudioProjectorV1,
    Prompt,
    SpeechLLMConfig,
    SpeechLLMError,
    SpeechLLMV1,
    build_batch,
    check_clip,
    check_lora_targets,
    check_sequence,
    decoder_limit,
    encoder_frames,
    encoder_window_samples,
    generation_budget,
    load_speechllm,
    save_speechllm,
)

SAMOAN = ["o le tala lenei", "ua alu le tama", "e lelei le aso", "o fea le fale",
          "sa ou vaai ia te oe", "ua matou o mai", "o le la ua goto", "faafetai tele lava"]  # fmt: skip


def test_labels_are_the_transcript_and_eos_only_and_padding_is_masked():
    embed = nn.Embedding(20, 4)
    prompt = Prompt(bos=1, eos=2, pad=0, instruction=(7, 8))
    audio = [torch.randn(3, 4), torch.randn(5, 4)]
    batch = build_batch(audio, embed, prompt, targets=[[10, 11], [12]])
    # example 0: bos, 3 audio, 2 instruction, 2 target, eos = 9; example 1: 1 + 5 + 2 + 1 + 1 = 10
    assert batch.inputs_embeds.shape == (2, 10, 4)
    assert batch.labels[0].tolist() == [IGNORE_INDEX] * 6 + [10, 11, 2] + [IGNORE_INDEX]
    assert batch.labels[1].tolist() == [IGNORE_INDEX] * 8 + [12, 2]
    assert batch.attention_mask.tolist() == [[1] * 9 + [0], [1] * 10]
    assert torch.equal(batch.inputs_embeds[0, 1:4], audio[0])
    assert torch.equal(batch.inputs_embeds[0, 6], embed.weight[10])
    generation = build_batch(audio, embed, prompt, left_pad=True)
    assert generation.labels is None
    assert generation.attention_mask.tolist() == [[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8]
    assert torch.equal(generation.inputs_embeds[0, 2], embed.weight[1]), "left padding puts bos after the pads"


def test_projector_stacks_frames_and_keeps_a_short_clip():
    projector = AudioProjectorV1(6, 8, stack=4)
    assert projector(torch.randn(2, 10, 6)).shape == (2, 2, 8)
    assert projector(torch.randn(1, 3, 6)).shape == (1, 1, 8), "a clip shorter than one stack is one token"
    assert projector.output_lengths(torch.tensor([10, 3, 8])).tolist() == [2, 1, 2]


def _tiny_parts(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM, WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(seed)
    encoder = WhisperEncoder(WhisperConfig(d_model=64, encoder_layers=2, encoder_attention_heads=2,
                                           encoder_ffn_dim=128, num_mel_bins=80))
    decoder = LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                                           num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                           max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
                                           pad_token_id=0, tie_word_embeddings=True))
    return encoder, decoder


def test_a_transcript_may_take_the_positions_left_after_the_audio_tokens_not_after_the_frames():
    """A 10 s clip is 500 encoder frames but 125 audio tokens (stack 4): with the decoder's 256
    positions its transcript may take 256 - (bos + 125 + 2 instruction tokens) = 128 tokens; a
    short clip takes 25 a second plus 16."""
    encoder, decoder = _tiny_parts(32)
    model = SpeechLLMV1(encoder, AudioProjectorV1(64, 64, stack=4), decoder, Prompt(1, 2, 0, instruction=(5, 6)))
    limit = decoder_limit(model)
    assert limit == 256
    ten_s = 10 * 16_000
    assert model.prefix_positions(encoder_frames(ten_s)) == 128
    assert generation_budget(ten_s, model.prefix_positions(encoder_frames(ten_s)), limit) == 128
    assert generation_budget(16_000, model.prefix_positions(encoder_frames(16_000)), limit) == 16 + 25


def _tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=60, special_tokens=["<pad>", "<s>", "</s>", "<unk>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def _speech(texts: list[str]) -> list[np.ndarray]:
    require("espeak-ng")
    from tala.demo.speech import MASTER_RATE_HZ, speak_trimmed

    return [soxr.resample(speak_trimmed(t, "en", 160), MASTER_RATE_HZ, 16_000).astype(np.float32) for t in texts]


def test_eight_clips_are_learned_exactly_and_the_saved_model_says_the_same(tmp_path, one_torch_thread):
    """An overfit: if the labels were shifted twice, the audio or prompt were scored, the padding
    were attended to, or generation read the wrong positions, 8 clips would not come back right."""
    from transformers import WhisperFeatureExtractor

    wavs = _speech(SAMOAN)
    tokenizer = _tokenizer(SAMOAN)
    encoder, decoder = _tiny_parts(len(tokenizer))
    model = SpeechLLMV1(encoder, AudioProjectorV1(64, 64, stack=4), decoder, Prompt(bos=1, eos=2, pad=0))
    features = WhisperFeatureExtractor(feature_size=80)(wavs, sampling_rate=16_000, return_tensors="pt")
    frames = model.encode(features.input_features, [len(w) for w in wavs])
    assert [f.shape[0] for f in frames] == [int(np.ceil(len(w) / 320)) for w in wavs], "padding frames dropped"
    targets = [tokenizer(t, add_special_tokens=False).input_ids for t in SAMOAN]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    steps = 300
    # A decaying lr: at a constant 3e-3 the last steps can swap two clips' texts, and where depends
    # on the synthesized audio's exact bytes (espeak-ng builds differ).
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    model.train()
    for _ in range(steps):
        loss = model.loss(frames, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    model.eval()
    hyps = [tokenizer.decode(ids, skip_special_tokens=True) for ids in model.generate(frames, max_new_tokens=30)]
    assert jiwer.cer(SAMOAN, hyps) <= 0.05, hyps
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in encoder_before.items()), "encoder frozen"

    encoder_dir = tmp_path / "encoder"
    model.encoder.save_pretrained(encoder_dir)
    config = SpeechLLMConfig(encoder=str(encoder_dir), decoder="unused: the decoder is saved whole")
    save_speechllm(tmp_path / "model", model, config, tokenizer)
    loaded, loaded_tokenizer, loaded_config = load_speechllm(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "speechllm.json").read_text())["decoder"] == "decoder"
    assert loaded_config.decoder == str(tmp_path / "model" / "decoder") and loaded.prompt == model.prompt
    again = loaded.encode(features.input_features, [len(w) for w in wavs])
    reloaded = [loaded_tokenizer.decode(ids, skip_special_tokens=True) for ids in loaded.generate(again, 30)]
    assert reloaded == hyps


def test_lora_adapter_trains_saves_and_loads_with_peft(tmp_path, one_torch_thread):
    """LoRA on the decoder's attention: only the adapter and the projector learn, the base stays as
    it was, and peft's saved adapter plus the projector give back the same model."""
    from peft import LoraConfig, get_peft_model

    tokenizer = _tokenizer(SAMOAN)
    encoder, decoder = _tiny_parts(len(tokenizer))
    encoder.save_pretrained(tmp_path / "encoder")
    decoder.save_pretrained(tmp_path / "decoder")
    tokenizer.save_pretrained(tmp_path / "decoder")
    config = SpeechLLMConfig(encoder=str(tmp_path / "encoder"), decoder=str(tmp_path / "decoder"),
                             lora_r=4, lora_alpha=8, lora_dropout=0.0, lora_targets=("q_proj", "v_proj"))
    check_lora_targets(decoder, config.lora_targets)
    lora = get_peft_model(decoder, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                              lora_dropout=config.lora_dropout,
                                              target_modules=list(config.lora_targets)))
    model = SpeechLLMV1(encoder, AudioProjectorV1(64, 64, stack=4), lora, Prompt(bos=1, eos=2, pad=0))
    base_before = {k: v.clone() for k, v in lora.get_base_model().state_dict().items() if "lora_" not in k}
    frames = [torch.randn(40, 64), torch.randn(57, 64)]
    targets = [tokenizer(t, add_special_tokens=False).input_ids for t in SAMOAN[:2]]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    first = None
    for _ in range(30):
        loss = model.loss(frames, targets)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first
    after = lora.get_base_model().state_dict()
    assert all(torch.equal(v, after[k]) for k, v in base_before.items()), "the base decoder must not change"
    model.eval()
    expected = model.generate(frames, max_new_tokens=10)
    save_speechllm(tmp_path / "tuned", model, config)
    assert (tmp_path / "tuned" / "lora" / "adapter_model.safetensors").is_file()
    loaded, _, _ = load_speechllm(tmp_path / "tuned")
    assert loaded.generate(frames, max_new_tokens=10) == expected


def test_refused_inputs_say_what_and_why():
    from transformers import LlamaConfig, LlamaForCausalLM, WhisperConfig

    window = encoder_window_samples(WhisperConfig())
    assert window == 30 * 16_000
    check_clip(window, window, "clip.wav")
    with pytest.raises(SpeechLLMError, match=r"clip\.wav: 31\.0 s is longer than the encoder's 30 s window"):
        check_clip(31 * 16_000, window, "clip.wav")
    prompt = Prompt(bos=1, eos=2, pad=0, instruction=(5, 6, 7))
    check_sequence(100, 10 * 16_000, 4, prompt, 256, "GEN_001_004")  # 1 + 125 + 3 + 100 + 1 = 230
    with pytest.raises(SpeechLLMError, match=r"GEN_001_004: the transcript's 200 tokens .* 330 positions, more than"
                                             r" the decoder's 256"):
        check_sequence(200, 10 * 16_000, 4, prompt, 256, "GEN_001_004")
    decoder = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, num_key_value_heads=2))
    with pytest.raises(SpeechLLMError, match=r"c_attn not found in the llama decoder; its linear layers are: "
                                             r"down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj"):
        check_lora_targets(decoder, ["q_proj", "c_attn"])
    check_lora_targets(decoder, ["self_attn.q_proj", "mlp.up_proj"])  # a dotted end of a name, as peft matches
    with pytest.raises(SpeechLLMError, match=r"mlp.q_proj not found .* \(or a dotted end of a layer's name"):
        check_lora_targets(decoder, ["mlp.q_proj"])
