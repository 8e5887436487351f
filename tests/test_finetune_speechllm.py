"""tala.finetune.speechllm: the speech-LLM recognizer trained from manifests (whole decoder, then LoRA),
killed and resumed, and the clips and settings it refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from conftest import (REPO, assert_checkpointed_layers_are_recomputed_and_take_the_same_steps,
                      assert_damaged_recognizer_folders_are_named,
                      assert_long_training_clips_are_learned_in_parts, assert_trains_under_bf16_autocast,
                      assert_unwritable_characters_are_named, assert_validation_and_evaluation_search_the_beams_asked,
                      assert_validation_reads_as_evaluate_asr, sigkill_when)
from test_guided_attention import guided_losses
from test_speechllm_model import SAMOAN, _speech, _tokenizer
from tala.finetune.speechllm import SpeechLLMSettings, train
from tala.models.speechllm import AudioProjectorV1, Prompt, SpeechLLMConfig, SpeechLLMV1, load_speechllm, save_speechllm
from tala.training import checkpoint_dirs

WINDOW_POSITIONS = 150  # a 3 s encoder window: the clips are 1-1.5 s, and tests run fast


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Eight spoken Samoan phrases as a dataset split (WAVs + JSONL with ``normalized``) and an
    untrained tiny recognizer saved as a start folder (encoder folder, whole decoder, tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM, WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    root = tmp_path_factory.mktemp("speechllm")
    (root / "clips").mkdir()
    rows = []
    for i, (text, wav) in enumerate(zip(SAMOAN, _speech(SAMOAN))):
        sf.write(root / "clips" / f"c{i}.wav", wav, 16_000)
        rows.append({"audio": f"clips/c{i}.wav", "text": text.capitalize() + ".", "normalized": text,
                     "duration": len(wav) / 16_000})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    torch.manual_seed(0)
    encoder = WhisperEncoder(WhisperConfig(d_model=64, encoder_layers=2, encoder_attention_heads=2,
                                           encoder_ffn_dim=128, num_mel_bins=80,
                                           max_source_positions=WINDOW_POSITIONS))
    encoder.save_pretrained(root / "encoder")
    tokenizer = _tokenizer(SAMOAN)
    decoder = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                           num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                           max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
                                           pad_token_id=0, tie_word_embeddings=True))
    model = SpeechLLMV1(encoder, AudioProjectorV1(64, 64, stack=4), decoder, Prompt(bos=1, eos=2, pad=0))
    config = SpeechLLMConfig(encoder=str(root / "encoder"), decoder="-", lora_r=4, lora_alpha=8,
                             lora_targets=("q_proj", "v_proj"))
    save_speechllm(root / "start", model, config, tokenizer)
    return root


def _settings(**changes) -> SpeechLLMSettings:
    base = dict(max_steps=300, learning_rate=3e-3, warmup_steps=5, batch_seconds=20.0, max_batch_size=8,
                eval_every=0, checkpoint_every=50, log_every=10, lora_r=4, lora_alpha=8,
                lora_targets=("q_proj", "v_proj"), max_new_tokens=30, device="cpu")
    return SpeechLLMSettings(**{**base, **changes})


def test_pretraining_learns_the_clips_and_lora_then_adapts_without_touching_the_base(corpus, tmp_path,
                                                                                   one_torch_thread):
    manifest = corpus / "train.jsonl"
    whole = train([manifest], tmp_path / "whole", _settings(train="all"), valid_manifests=[manifest],
                  start=corpus / "start", progress=False)
    assert whole.final_eval["cer"] <= 0.05, whole.final_eval
    assert (tmp_path / "whole" / "decoder" / "model.safetensors").is_file()
    assert not (tmp_path / "whole.checkpoints").exists(), "checkpoints are removed after success"
    info = json.loads((tmp_path / "whole" / "training.json").read_text())
    assert info["steps"] == 300 and info["examples"] == 8 and info["left_out"] == []

    tuned = train([manifest], tmp_path / "tuned", _settings(max_steps=6, learning_rate=1e-4),
                  valid_manifests=[manifest], start=tmp_path / "whole", progress=False)
    assert tuned.final_eval["cer"] <= 0.05, "six LoRA steps at a small rate keep what the base knows"
    assert (tmp_path / "tuned" / "lora" / "adapter_model.safetensors").is_file()
    config = json.loads((tmp_path / "tuned" / "speechllm.json").read_text())
    assert config["decoder"] == str(tmp_path / "whole" / "decoder"), "the adapter names its base"
    base = load_file(str(tmp_path / "whole" / "decoder" / "model.safetensors"))
    loaded, _, _ = load_speechllm(tmp_path / "tuned")
    after = {k.removeprefix("base_model.model."): v for k, v in loaded.decoder.state_dict().items()}
    after = {k.replace(".base_layer", ""): v for k, v in after.items() if "lora_" not in k}
    assert all(torch.equal(v, after[k]) for k, v in base.items()), "LoRA leaves the base decoder as it was"
    projectors = [load_file(str(tmp_path / name / "projector.safetensors")) for name in ("whole", "tuned")]
    assert any(not torch.equal(projectors[0][k], projectors[1][k]) for k in projectors[0]), "the projector learns"
    adapter = load_file(str(tmp_path / "tuned" / "lora" / "adapter_model.safetensors"))
    assert any("lora_B" in k and bool(v.abs().sum() > 0) for k, v in adapter.items()), "the adapters learn"
    card = (tmp_path / "tuned" / "README.md").read_text()  # the model card, not peft's empty template
    assert "library_name: peft" in card and "More Information Needed" not in card
    assert f"{100 * tuned.final_eval['cer']:.1f} % | {100 * tuned.final_eval['wer']:.1f} % |" in card
    assert not (tmp_path / "tuned" / "lora" / "README.md").exists()
    assert "library_name: transformers" in (tmp_path / "whole" / "README.md").read_text()

    # evaluate_asr loads both folders as a user would and reproduces the trainer's numbers
    from tala.finetune.evaluate_asr import main as evaluate_asr

    out_json = tmp_path / "eval.json"
    assert evaluate_asr([str(out_json), str(tmp_path / "eval.tsv"), "--language", "samoan", "--kind", "speechllm",
                         "--split", "test", str(manifest), "--system", "before", str(tmp_path / "whole"), "-",
                         "--system", "after", str(tmp_path / "tuned"), "-", "--device", "cpu",
                         "--pace", str(manifest)]) == 0  # as the workflow reads: the train split's pace
    scores = json.loads(out_json.read_text())["splits"]["test"]
    assert scores["before"]["cer"] == round(whole.final_eval["cer"], 4)
    assert scores["after"]["cer"] == round(tuned.final_eval["cer"], 4)
    assert scores["after"]["wer"] == round(tuned.final_eval["wer"], 4)


def test_validation_reads_each_clip_as_evaluate_asr_does_with_the_train_splits_pace(corpus, tmp_path, monkeypatch,
                                                                                    one_torch_thread):
    import tala.finetune.speechllm as trainer

    manifest = corpus / "train.jsonl"

    def run(name, **changes):
        return train([manifest], tmp_path / name, _settings(max_steps=2, **changes), valid_manifests=[manifest],
                     start=corpus / "start", progress=False)

    # one validation, at the end (eval_every 0)
    assert_validation_reads_as_evaluate_asr(trainer, run, manifest, monkeypatch, first_given=True)


def test_validation_and_evaluate_asr_search_the_beams_asked(corpus, tmp_path, monkeypatch, one_torch_thread):
    manifest = corpus / "train.jsonl"

    def run(name, **changes):  # each clip's budget as evaluate_asr's (an untrained decoder writes all of it)
        return train([manifest], tmp_path / name, _settings(max_steps=2, max_new_tokens=None, **changes),
                     valid_manifests=[manifest], start=corpus / "start", progress=False)

    assert_validation_and_evaluation_search_the_beams_asked("speechllm", run, manifest, tmp_path, monkeypatch)


def test_long_training_clips_are_learned_in_the_parts_they_are_read_in(corpus, tmp_path, monkeypatch,
                                                                      one_torch_thread):
    import tala.finetune.speechllm as trainer

    def run(name, manifest, **changes):
        return train([manifest], tmp_path / name, _settings(max_steps=2, **changes), valid_manifests=[manifest],
                     start=corpus / "start", progress=False)

    assert_long_training_clips_are_learned_in_parts(trainer, run, corpus / "train.jsonl", tmp_path, monkeypatch)


def _command(corpus, out, max_steps=40):
    return [sys.executable, "-m", "tala.finetune.speechllm", "--start", str(corpus / "start"),
            "--train", str(corpus / "train.jsonl"), "--out", str(out), "--max-steps", str(max_steps),
            "--checkpoint-every", "10", "--log-every", "5", "--eval-every", "0", "--lr", "3e-3",
            "--warmup-steps", "5", "--batch-seconds", "4", "--max-batch-size", "3", "--lora-r", "4",
            "--lora-alpha", "8", "--lora-targets", "q_proj", "v_proj", "--device", "cpu", "--threads", "1",
            "--no-progress"]  # fmt: skip


def test_a_killed_run_resumes_to_the_same_weights(corpus, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    out, reference = tmp_path / "out", tmp_path / "reference"
    checkpoints = tmp_path / "out.checkpoints"
    stderr = sigkill_when(_command(corpus, out), env, lambda: len(checkpoint_dirs(checkpoints)) > 0, timeout_s=120)
    found = checkpoint_dirs(checkpoints)
    assert found, f"no checkpoint: {stderr}"
    killed_at = found[-1][0]
    assert 0 < killed_at < 40 and not out.exists(), "nothing half-written looks complete"
    rerun = subprocess.run(_command(corpus, out), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{out}: 40 steps (resumed at step {killed_at})" in rerun.stderr.splitlines()[-1]
    done = subprocess.run(_command(corpus, reference), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("projector.safetensors", "lora/adapter_model.safetensors"):
        a, b = load_file(str(out / name)), load_file(str(reference / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"{name} differs after resume"
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == list(range(5, 41, 5)), "the log is cut back and continued"


def test_too_long_clips_are_left_out_by_name_and_a_wrong_lora_target_is_one_error(corpus, tmp_path):
    long_wav = np.concatenate([sf.read(corpus / "clips" / f"c{i}.wav", dtype="float32")[0] for i in range(4)])
    sf.write(tmp_path / "long.wav", long_wav, 16_000)
    rows = (corpus / "train.jsonl").read_text().splitlines()
    rows.append(json.dumps({"audio": str(tmp_path / "long.wav"), "normalized": " ".join(SAMOAN[:4]),
                            "duration": len(long_wav) / 16_000}))
    (tmp_path / "train.jsonl").write_text("\n".join(r.replace("clips/", str(corpus / "clips") + "/") for r in rows))
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    command = _command(corpus, tmp_path / "out", max_steps=2)
    command[command.index("--train") + 1] = str(tmp_path / "train.jsonl")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    line = f"left out: {tmp_path / 'train.jsonl'}:9: {len(long_wav) / 16_000:.1f} s is longer than the encoder's 3 s window"
    assert line in done.stderr
    info = json.loads((tmp_path / "out" / "training.json").read_text())
    assert info["examples"] == 8 and len(info["left_out"]) == 1

    command = _command(corpus, tmp_path / "bad", max_steps=2)
    command[command.index("--lora-targets") + 1: command.index("--lora-targets") + 3] = ["c_attn"]
    bad = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and not (tmp_path / "bad").exists()
    last = bad.stderr.strip().splitlines()[-1]
    assert "c_attn not found in the llama decoder; its linear layers are: " in last and "q_proj" in last, last


def test_cached_encoder_frames_train_as_the_encoder_does(corpus, tmp_path, one_torch_thread):
    """cache_frames keeps each clip's frozen encoder frames after its first batch: the run takes
    the steps a run that encodes every batch takes (same losses, same weights up to rounding). A
    finished run keeping its checkpoint folder (the demo recipes' stages) leaves no cache there."""
    manifest = corpus / "train.jsonl"
    runs, cache = {}, {}

    def cached_files(cached: bool) -> set[str]:  # what the checkpoint folder's frame cache holds now
        return {p.name for p in (tmp_path / f"run-{cached}.checkpoints").glob("frames-*/*")}

    for cached in (False, True):
        losses: list[float] = []

        def on_step(step, loss, cached=cached):
            losses.append(loss)
            cache[cached] = cached_files(cached)

        train([manifest], tmp_path / f"run-{cached}", _settings(train="all", max_steps=12, cache_frames=cached,
                                                               batch_seconds=4.0, max_batch_size=3),
              start=corpus / "start", progress=False, on_step=on_step, keep_checkpoint_dir=True)
        runs[cached] = (losses, load_file(str(tmp_path / f"run-{cached}" / "projector.safetensors")))
        kept = checkpoint_dirs(tmp_path / f"run-{cached}.checkpoints")
        assert not cached_files(cached) and kept, "at the end only the cache goes"
    from tala.finetune.speechllm import clip_key
    from tala.finetune.train_ctc import read_manifest

    names = {f"{clip_key(e)}.npy" for e in read_manifest(manifest, "normalized")}
    assert cache[True] == names, "one file per clip, named by the clip (not its place), in the checkpoint folder"
    assert cache[False] == set()
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-4), "the same losses, step by step"
    assert all(torch.allclose(runs[True][1][k], runs[False][1][k], atol=1e-5) for k in runs[True][1])


def test_gradient_checkpointing_recomputes_the_layers_and_takes_the_same_steps(corpus, tmp_path, capsys,
                                                                               one_torch_thread):
    def run(name, checkpointed, on_step):
        train([corpus / "train.jsonl"], tmp_path / name,
              _settings(max_steps=4, lora_dropout=0.1, guided_attention=1.0, gradient_checkpointing=checkpointed,
                        batch_seconds=4.0, max_batch_size=3),
              start=corpus / "start", progress=False, on_step=on_step)  # fmt: skip
        return tmp_path / name

    assert_checkpointed_layers_are_recomputed_and_take_the_same_steps(run, "lora/adapter_model.safetensors", capsys)


def test_trains_and_validates_under_cudas_bf16_autocast(corpus, tmp_path, monkeypatch, one_torch_thread):
    import tala.finetune.speechllm as trainer

    def run(name, on_step):
        result = train([corpus / "train.jsonl"], tmp_path / name,
                       _settings(max_steps=3, eval_every=3, lora_dropout=0.1, guided_attention=1.0,
                                 batch_seconds=4.0, max_batch_size=3),
                       valid_manifests=[corpus / "train.jsonl"], start=corpus / "start", progress=False,
                       on_step=on_step)  # fmt: skip
        return result, tmp_path / name

    assert_trains_under_bf16_autocast(trainer, run, "projector.safetensors", monkeypatch)


def test_guided_attention_pulls_the_transcript_to_the_diagonal_of_its_audio(corpus, tmp_path, one_torch_thread):
    """guided_attention (a decoder trained from scratch): the transcript's attention to its audio
    tokens moves to the diagonal (the logged guided loss falls); the saved recognizer is a plain one."""
    train([corpus / "train.jsonl"], tmp_path / "guided",
          _settings(train="all", max_steps=30, guided_attention=5.0, log_every=5, batch_seconds=4.0,
                    max_batch_size=3),
          start=corpus / "start", progress=False, keep_checkpoint_dir=True)  # fmt: skip
    losses = guided_losses(tmp_path / "guided.checkpoints")
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0], losses
    model, _, _ = load_speechllm(tmp_path / "guided")
    assert model.decoder.config._attn_implementation != "eager", "eager attention was for training only"


def test_chapter_folds_run_the_speechllm_trainer_on_each_fold(corpus, tmp_path):
    """tala.finetune.chapter_folds --trainer speechllm: one recognizer per held-out chapter, its
    validation CER by step read from the training core's log into the pooled table."""
    from tala.finetune import chapter_folds

    rows = [json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows):
        row.update(recording="GEN_001" if i < 4 else "RUT_001", audio=str(corpus / row["audio"]))
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    work = tmp_path / "work"
    options = _command(corpus, tmp_path / "unused", max_steps=2)[3:]
    for option in ("--train", "--out"):
        del options[options.index(option): options.index(option) + 2]
    options[options.index("--eval-every") + 1] = "1"
    assert chapter_folds.main(["--trainer", "speechllm", "--manifests", str(tmp_path / "train.jsonl"), "--work",
                               str(work), "--setting", "lora=--lr 3e-3", "--", *options]) == 0  # fmt: skip
    table = json.loads((work / "folds.json").read_text())
    assert [r["step"] for r in table["rows"]] == [0, 1, 2]
    for held in ("GEN_001", "RUT_001"):
        run = work / "runs" / "lora" / held
        assert (run / "projector.safetensors").is_file() and (run / "lora" / "adapter_model.safetensors").is_file()
        info = json.loads((run / "training.json").read_text())
        assert info["valid_manifests"] == [str(work / "folds" / held / "valid.jsonl")] and info["examples"] == 4
        logged = [json.loads(line) for line in (run / "training_log.jsonl").read_text().splitlines()]
        cers = [r["eval_cer"] for r in logged if "eval_cer" in r and "event" not in r]
        assert [r["chapters"][held] for r in table["rows"]] == cers


def test_characters_the_tokenizer_cannot_write_are_named_once_and_recorded(corpus, tmp_path, capsys,
                                                                           one_torch_thread):
    def run(name, manifest):
        return train([manifest], tmp_path / name, _settings(max_steps=1), start=corpus / "start", progress=False)

    assert_unwritable_characters_are_named(run, corpus / "train.jsonl", tmp_path, capsys)


def test_a_byte_level_tokenizer_writes_every_character():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    from tala.finetune.tokens import unwritable_characters

    byte_level = ByteLevelBPETokenizer()
    byte_level.train_from_iterator(SAMOAN, vocab_size=300, show_progress=False)
    texts = ["o le ŋala", "中文 q"]
    assert unwritable_characters(PreTrainedTokenizerFast(tokenizer_object=byte_level), texts) == (Counter(), 0)
    assert unwritable_characters(_tokenizer(SAMOAN), texts) == (Counter({"中": 1, "文": 1, "ŋ": 1, "q": 1}), 2)


def test_an_empty_validation_split_is_said_and_the_last_step_kept(corpus, tmp_path, capsys, one_torch_thread):
    """A corpus too small for every split (or its valid chapter dropped upstream) trains on."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = train([corpus / "train.jsonl"], tmp_path / "out", _settings(max_steps=2, eval_every=1,
                                                                         evaluate_start=True),
                   valid_manifests=[empty], start=corpus / "start", progress=False)  # fmt: skip
    assert f"{empty}: no clips: no validation, the last step's weights are kept" in capsys.readouterr().err
    assert result.steps == 2 and result.final_eval is None
    assert "No validation clips" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_a_new_recognizer_from_the_hub_bases_download_models_put_in_models_dir(family, corpus, tmp_path,
                                                                                one_torch_thread):
    """What a user with the real models does first: --encoder openai/whisper-small and --decoder
    SmolLM2-135M (Llama) or the documented Qwen2.5-0.5B (Qwen2: biased q/k/v projections, a
    tokenizer without a beginning-of-sequence token), read from download_models' folder offline. A
    new projector and new adapters learn, the bases do not change, the saved folder names the hub
    ids and loads with plain transformers + peft from the same folder, reading as the validation did.
    (Sixty steps of adapters on a random decoder lower the loss but do not yet read the clips.)"""
    from transformers import WhisperConfig, WhisperModel

    from tala.ctc_text import normalize_for_scoring
    from tala.hub import model_dir_name
    from tala.models.speechllm import feature_extractor_for, read_clip

    models = tmp_path / "models"
    encoder_id = "openai/whisper-small"
    decoder_id = {"llama": "HuggingFaceTB/SmolLM2-135M", "qwen2": "Qwen/Qwen2.5-0.5B"}[family]
    torch.manual_seed(0)
    WhisperModel(WhisperConfig(d_model=64, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128,
                               decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80,
                               max_source_positions=WINDOW_POSITIONS, vocab_size=64, pad_token_id=0,
                               bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
                 ).save_pretrained(models / model_dir_name(encoder_id))  # fmt: skip
    tokenizer = _tokenizer(SAMOAN)
    shape = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256, eos_token_id=2,
                 tie_word_embeddings=True)  # fmt: skip
    if family == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        decoder = LlamaForCausalLM(LlamaConfig(**shape, bos_token_id=1, pad_token_id=0))
    else:  # Qwen2.5's tokenizer: no bos; its end-of-text token pads
        from transformers import Qwen2Config, Qwen2ForCausalLM

        decoder = Qwen2ForCausalLM(Qwen2Config(**shape, bos_token_id=None))
        tokenizer.bos_token, tokenizer.pad_token = None, "</s>"
    decoder.save_pretrained(models / model_dir_name(decoder_id))
    tokenizer.save_pretrained(models / model_dir_name(decoder_id))
    base = {k: v.clone() for k, v in decoder.state_dict().items()}

    losses = []
    result = train([corpus / "train.jsonl"], tmp_path / "tuned",
                   _settings(max_steps=60, eval_every=60, learning_rate=1e-2, reread=False, batch_seconds=4.0,
                             max_batch_size=3),
                   valid_manifests=[corpus / "train.jsonl"], encoder=encoder_id, decoder=decoder_id,
                   models_dir=models, progress=False, on_step=lambda step, loss: losses.append(loss))  # fmt: skip
    saved = json.loads((tmp_path / "tuned" / "speechllm.json").read_text())
    assert (saved["encoder"], saved["decoder"]) == (encoder_id, decoder_id), "the bases by hub id"
    adapter = json.loads((tmp_path / "tuned" / "lora" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == decoder_id, "peft's config names the hub id, not this machine's copy"
    model, loaded_tokenizer, _ = load_speechllm(tmp_path / "tuned", models_dir=models)
    assert model.prompt.bos == (1 if family == "llama" else 2) and model.prompt.pad == (0 if family == "llama" else 2)
    untouched = {k.replace(".base_layer", ""): v for k, v in model.decoder.get_base_model().state_dict().items()
                 if "lora_" not in k}  # fmt: skip
    assert untouched.keys() == base.keys() and all(torch.equal(v, untouched[k]) for k, v in base.items()), \
        "the base decoder unchanged"
    features = feature_extractor_for(model.encoder.config)
    records = [json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines()]
    for example in result.final_eval["examples"]:
        (record,) = [r for r in records if normalize_for_scoring(r["normalized"]) == example["ref"]]
        samples, _ = sf.read(corpus / record["audio"], dtype="float32")
        hyp = read_clip(model, loaded_tokenizer, features, samples, "cpu", max_new_tokens=30)
        assert normalize_for_scoring(hyp) == example["hyp"], "the saved recognizer reads as the validation did"
    # from the uniform distribution's log(60) = 4.09 to ~3.7
    assert np.mean(losses[-5:]) < 0.93 * np.mean(losses[:5]), losses


def test_a_recognizer_tuned_in_a_project_still_loads_after_the_project_moves(corpus, tmp_path, monkeypatch,
                                                                              one_torch_thread):
    """As the workflow runs it: from the project folder, the start a path in it (a stand-in naming
    its encoder and decoder beside itself). The tuned folder names them from the project folder, not
    by this machine's absolute paths, so the project may be moved (or synced to another machine)."""
    import shutil

    project = tmp_path / "project"
    start = project / "resources" / "start"
    shutil.copytree(corpus / "start", start)
    shutil.copytree(corpus / "encoder", start / "encoder")
    config = json.loads((start / "speechllm.json").read_text())
    (start / "speechllm.json").write_text(json.dumps({**config, "encoder": "encoder"}))
    shutil.copytree(corpus / "clips", project / "data" / "clips")
    shutil.copy(corpus / "train.jsonl", project / "data" / "train.jsonl")
    monkeypatch.chdir(project)
    train([Path("data/train.jsonl")], "results/tuned", _settings(max_steps=2), start=Path("resources/start"),
          progress=False)  # fmt: skip
    saved = json.loads((project / "results" / "tuned" / "speechllm.json").read_text())
    assert (saved["encoder"], saved["decoder"]) == ("resources/start/encoder", "resources/start/decoder"), saved
    shutil.move(project, tmp_path / "moved")
    monkeypatch.chdir(tmp_path / "moved")
    model, _, config = load_speechllm(Path("results/tuned"))
    assert config.encoder == "resources/start/encoder" and hasattr(model.decoder, "peft_config")


def test_a_damaged_recognizer_folder_is_one_line_naming_the_file(corpus, tmp_path, capsys, one_torch_thread):
    """A tuned folder (and a whole one) as a copy or a sync cut short leaves it: evaluate_asr says
    which file and why, in one line."""
    manifest = corpus / "train.jsonl"
    train([manifest], tmp_path / "tuned", _settings(max_steps=1), start=corpus / "start", progress=False)
    train([manifest], tmp_path / "whole", _settings(train="all", max_steps=1), start=corpus / "start", progress=False)
    assert_damaged_recognizer_folders_are_named("speechllm", tmp_path / "tuned", manifest, {
        "adapter": ("lora/adapter_model.safetensors", "cut"), "projector": ("projector.safetensors", "gone"),
        "config": ("speechllm.json", "not json"), "field": ("speechllm.json", {"layers_of_a_later_version": 3}),
    }, tmp_path, capsys)  # fmt: skip
    assert_damaged_recognizer_folders_are_named("speechllm", tmp_path / "whole", manifest, {
        "decoder": ("decoder/model.safetensors", "cut")}, tmp_path, capsys)
