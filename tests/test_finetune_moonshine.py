"""tala.finetune.moonshine: Moonshine trained from manifests (whole, then LoRA), seed 004's two files,
killed and resumed, the clips, transcripts and settings it refuses, and leave-one-chapter-out
validation over it (tala.finetune.chapter_folds)."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from dataclasses import replace
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
from tala.finetune.moonshine import MoonshineSettings, _as_named, train
from tala.models.moonshine import load_moonshine_lora
from tala.training import checkpoint_dirs


def _tiny_moonshine(tokenizer, positions: int = 64, seed: int = 0):
    from transformers import MoonshineConfig, MoonshineForConditionalGeneration

    torch.manual_seed(seed)
    config = MoonshineConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                             encoder_num_hidden_layers=2, decoder_num_hidden_layers=2, encoder_num_attention_heads=2,
                             decoder_num_attention_heads=2, max_position_embeddings=positions, bos_token_id=1,
                             eos_token_id=2, decoder_start_token_id=1, pad_token_id=0)  # fmt: skip
    return MoonshineForConditionalGeneration(config)


def _save_start(folder, tokenizer, positions: int = 64):
    from transformers import Wav2Vec2FeatureExtractor

    _tiny_moonshine(tokenizer, positions).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=False,
                             return_attention_mask=True).save_pretrained(folder)  # fmt: skip
    tokenizer.save_pretrained(folder)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Eight spoken Samoan phrases as a dataset split (WAVs + JSONL with ``normalized``) and an
    untrained tiny Moonshine saved as a start folder (model, feature extractor, tokenizer)."""
    root = tmp_path_factory.mktemp("moonshine")
    (root / "clips").mkdir()
    rows = []
    for i, (text, wav) in enumerate(zip(SAMOAN, _speech(SAMOAN))):
        sf.write(root / "clips" / f"c{i}.wav", wav, 16_000)
        rows.append({"audio": f"clips/c{i}.wav", "text": text.capitalize() + ".", "normalized": text,
                     "duration": len(wav) / 16_000})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    _save_start(root / "start", _tokenizer(SAMOAN))
    return root


def _settings(**changes) -> MoonshineSettings:
    base = dict(max_steps=300, learning_rate=3e-3, warmup_steps=5, batch_seconds=20.0, max_batch_size=8, accumulate=1,
                eval_every=0, checkpoint_every=50, log_every=10, lora_r=4, lora_alpha=8,
                lora_targets=("q_proj", "v_proj"), device="cpu")  # fmt: skip
    return MoonshineSettings(**{**base, **changes})


def test_pretraining_learns_the_clips_and_lora_then_adapts_with_seed_004s_files(corpus, tmp_path, one_torch_thread):
    """An overfit of the whole model (CER <= 5 % on 8 clips proves the label shift, the padding
    masks and generation right), then LoRA steps on it: the base unchanged, real_metrics.json and
    artifact_test.json as seed 004 defines them, evaluate_asr reproducing the numbers."""
    manifest = corpus / "train.jsonl"
    whole = train([manifest], tmp_path / "whole", _settings(train="all"), str(corpus / "start"),
                  valid_manifests=[manifest], progress=False)
    assert whole.final_eval["cer"] <= 0.05, whole.final_eval
    assert (tmp_path / "whole" / "model.safetensors").is_file() and not (tmp_path / "whole" / "moonshine.json").exists()
    assert not (tmp_path / "whole.checkpoints").exists(), "checkpoints are removed after success"

    tuned = train([manifest], tmp_path / "tuned", _settings(max_steps=6, learning_rate=1e-4, max_batch_size=1,
                                                             accumulate=4),
                  str(tmp_path / "whole"), valid_manifests=[manifest], test_manifests=[manifest], progress=False)
    assert tuned.final_eval["cer"] <= 0.05, "six LoRA steps at a small rate keep what the base knows"
    metrics = json.loads((tmp_path / "tuned" / "real_metrics.json").read_text())
    assert metrics["train_loss"] > 0 and metrics["baseline_eval_loss"] > 0 and metrics["tuned_eval_loss"] > 0
    assert metrics["baseline"]["cer"] == whole.final_eval["cer"], "the baseline is the start model on valid"
    artifact = json.loads((tmp_path / "tuned" / "artifact_test.json").read_text())
    assert len(artifact["samples"]) == 8 and artifact["wer"] == tuned.final_eval["wer"]
    assert {"audio", "reference", "hypothesis"} <= set(artifact["samples"][0])

    config = json.loads((tmp_path / "tuned" / "moonshine.json").read_text())
    assert config["base"] == str(tmp_path / "whole"), "the adapter names its base"
    base = load_file(str(tmp_path / "whole" / "model.safetensors"))
    loaded, _, _, _ = load_moonshine_lora(tmp_path / "tuned")
    after = {k.removeprefix("base_model.model."): v for k, v in loaded.state_dict().items()}
    after = {k.replace(".base_layer", ""): v for k, v in after.items() if "lora_" not in k}
    assert all(torch.equal(v, after[k]) for k, v in base.items() if k in after), "LoRA leaves the base as it was"
    adapter = load_file(str(tmp_path / "tuned" / "adapter_model.safetensors"))
    assert any("lora_B" in k and bool(v.abs().sum() > 0) for k, v in adapter.items()), "the adapters learn"
    assert any(".encoder." in k for k in adapter) and any(".decoder." in k for k in adapter)
    card = (tmp_path / "tuned" / "README.md").read_text()  # the model card, not peft's empty template
    assert "library_name: peft" in card and "More Information Needed" not in card
    assert f"{100 * tuned.final_eval['cer']:.1f} % | {100 * tuned.final_eval['wer']:.1f} % |" in card
    assert f"on 8 test clips (`artifact_test.json`): WER {100 * artifact['wer']:.1f} %" in card
    assert "library_name: transformers" in (tmp_path / "whole" / "README.md").read_text()

    from tala.finetune.evaluate_asr import main as evaluate_asr

    out_json = tmp_path / "eval.json"
    assert evaluate_asr([str(out_json), str(tmp_path / "eval.tsv"), "--language", "samoan", "--kind", "moonshine",
                         "--split", "test", str(manifest), "--system", "before", str(tmp_path / "whole"), "-",
                         "--system", "after", str(tmp_path / "tuned"), "-", "--device", "cpu",
                         "--pace", str(manifest)]) == 0  # as the workflow reads: the train split's pace
    scores = json.loads(out_json.read_text())["splits"]["test"]
    assert scores["before"]["cer"] == round(whole.final_eval["cer"], 4)
    assert scores["after"]["wer"] == round(tuned.final_eval["wer"], 4)


def test_validation_reads_each_clip_as_evaluate_asr_does_with_the_train_splits_pace(corpus, tmp_path, monkeypatch,
                                                                                    one_torch_thread):
    import tala.finetune.moonshine as trainer

    manifest = corpus / "train.jsonl"

    def run(name, **changes):
        return train([manifest], tmp_path / name, _settings(max_steps=2, **changes), str(corpus / "start"),
                     valid_manifests=[manifest], progress=False)

    # the start's validation (seed 004's baseline) and the end's
    assert_validation_reads_as_evaluate_asr(trainer, run, manifest, monkeypatch, evaluations=2)


def test_validation_and_evaluate_asr_search_the_beams_asked(corpus, tmp_path, monkeypatch, one_torch_thread):
    manifest = corpus / "train.jsonl"

    def run(name, **changes):
        return train([manifest], tmp_path / name, _settings(max_steps=2, **changes), str(corpus / "start"),
                     valid_manifests=[manifest], test_manifests=[manifest], progress=False)

    assert_validation_and_evaluation_search_the_beams_asked("moonshine", run, manifest, tmp_path, monkeypatch)
    tested = json.loads((tmp_path / "beams" / "artifact_test.json").read_text())
    assert tested["num_beams"] == 3 and tested["part_seconds"] == 0.6, "the artifact test reads as validation"


def test_long_training_clips_are_learned_in_the_parts_they_are_read_in(corpus, tmp_path, monkeypatch,
                                                                      one_torch_thread):
    import tala.finetune.moonshine as trainer

    def run(name, manifest, **changes):
        return train([manifest], tmp_path / name, _settings(max_steps=2, **changes), str(corpus / "start"),
                     valid_manifests=[manifest], progress=False)

    assert_long_training_clips_are_learned_in_parts(trainer, run, corpus / "train.jsonl", tmp_path, monkeypatch)


def test_gradient_checkpointing_recomputes_the_layers_and_takes_the_same_steps(corpus, tmp_path, capsys,
                                                                               one_torch_thread):
    def run(name, checkpointed, on_step):
        train([corpus / "train.jsonl"], tmp_path / name,
              _settings(max_steps=4, lora_dropout=0.1, guided_attention=1.0, gradient_checkpointing=checkpointed),
              str(corpus / "start"), progress=False, on_step=on_step)  # fmt: skip
        return tmp_path / name

    assert_checkpointed_layers_are_recomputed_and_take_the_same_steps(run, "adapter_model.safetensors", capsys)


def test_trains_and_validates_under_cudas_bf16_autocast(corpus, tmp_path, monkeypatch, one_torch_thread):
    import tala.finetune.moonshine as trainer

    def run(name, on_step):
        result = train([corpus / "train.jsonl"], tmp_path / name,
                       _settings(max_steps=3, eval_every=3, lora_dropout=0.1, guided_attention=1.0, start_kl=0.5,
                                 label_smoothing=0.1),
                       str(corpus / "start"), valid_manifests=[corpus / "train.jsonl"], progress=False,
                       on_step=on_step)  # fmt: skip
        return result, tmp_path / name

    assert_trains_under_bf16_autocast(trainer, run, "adapter_model.safetensors", monkeypatch)


def test_a_run_stopped_for_memory_resumes_with_gradient_checkpointing_on(corpus, tmp_path, one_torch_thread):
    """What a user does after a CUDA out-of-memory: the same run again with gradient_checkpointing
    on. It is not a setting a checkpoint must match, so the run resumes and ends as one that never
    stopped."""

    class OutOfMemory(RuntimeError):
        pass

    def stop_at_3(step, loss):
        if step == 3:
            raise OutOfMemory

    settings = _settings(max_steps=6, checkpoint_every=2, lora_dropout=0.1)
    with pytest.raises(OutOfMemory):
        train([corpus / "train.jsonl"], tmp_path / "run", settings, str(corpus / "start"), progress=False,
              on_step=stop_at_3)  # fmt: skip
    train([corpus / "train.jsonl"], tmp_path / "run", replace(settings, gradient_checkpointing=True),
          str(corpus / "start"), progress=False)  # fmt: skip
    log = [json.loads(line) for line in (tmp_path / "run" / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r.get("event") == "resume"] == [2], "resumed from the step-2 checkpoint"
    train([corpus / "train.jsonl"], tmp_path / "whole", settings, str(corpus / "start"), progress=False)
    a, b = (load_file(str(tmp_path / name / "adapter_model.safetensors")) for name in ("run", "whole"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), "the same adapters as a run never stopped"


def _command(corpus, out, max_steps=24):
    return [sys.executable, "-m", "tala.finetune.moonshine", "--start", str(corpus / "start"),
            "--train", str(corpus / "train.jsonl"), "--out", str(out), "--max-steps", str(max_steps),
            "--checkpoint-every", "6", "--log-every", "3", "--eval-every", "0", "--lr", "3e-3",
            "--warmup-steps", "2", "--lora-r", "4", "--lora-alpha", "8", "--lora-targets", "q_proj", "v_proj",
            "--device", "cpu", "--threads", "1", "--no-progress"]  # fmt: skip


def test_a_killed_run_resumes_to_the_same_weights(corpus, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    out, reference = tmp_path / "out", tmp_path / "reference"
    checkpoints = tmp_path / "out.checkpoints"
    stderr = sigkill_when(_command(corpus, out), env, lambda: len(checkpoint_dirs(checkpoints)) > 0, timeout_s=120)
    found = checkpoint_dirs(checkpoints)
    assert found, f"no checkpoint: {stderr}"
    killed_at = found[-1][0]
    assert 0 < killed_at < 24 and not out.exists(), "nothing half-written looks complete"
    rerun = subprocess.run(_command(corpus, out), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{out}: 24 steps (resumed at step {killed_at})" in rerun.stderr.splitlines()[-1]
    done = subprocess.run(_command(corpus, reference), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    a, b = load_file(str(out / "adapter_model.safetensors")), load_file(str(reference / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "the adapter differs after resume"
    metrics = [json.loads((d / "real_metrics.json").read_text())["train_loss"] for d in (out, reference)]
    assert metrics[0] == pytest.approx(metrics[1], rel=1e-6), "train_loss counts the steps before the kill"


def test_too_long_clips_and_transcripts_are_left_out_by_name_and_a_wrong_lora_target_is_one_error(corpus, tmp_path):
    long_wav = np.concatenate([sf.read(corpus / "clips" / f"c{i}.wav", dtype="float32")[0] for i in range(4)])
    sf.write(tmp_path / "long.wav", long_wav, 16_000)
    rows = (corpus / "train.jsonl").read_text().splitlines()
    rows.append(json.dumps({"audio": str(tmp_path / "long.wav"), "normalized": " ".join(SAMOAN[:4]),
                            "duration": len(long_wav) / 16_000}))
    rows.append(json.dumps({"audio": "clips/c0.wav", "normalized": " ".join(SAMOAN * 4),
                            "duration": 1.0}))
    (tmp_path / "train.jsonl").write_text("\n".join(r.replace("clips/", str(corpus / "clips") + "/") for r in rows))
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    command = _command(corpus, tmp_path / "out", max_steps=2) + ["--max-clip-s", "3"]
    command[command.index("--train") + 1] = str(tmp_path / "train.jsonl")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    where = tmp_path / "train.jsonl"
    assert f"left out: {where}:9: {len(long_wav) / 16_000:.1f} s is longer than the 3 s Moonshine takes" in done.stderr
    assert f"left out: {where}:10: the transcript's " in done.stderr and "the decoder's 64 positions" in done.stderr
    info = json.loads((tmp_path / "out" / "training.json").read_text())
    assert info["examples"] == 8 and len(info["left_out"]) == 2

    command = _command(corpus, tmp_path / "bad", max_steps=2)
    command[command.index("--lora-targets") + 1: command.index("--lora-targets") + 3] = ["c_attn"]
    bad = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and not (tmp_path / "bad").exists()
    last = bad.stderr.strip().splitlines()[-1]
    assert "c_attn not found in the moonshine model; its linear layers are: " in last and "q_proj" in last, last


def test_an_empty_validation_or_test_split_is_said_and_the_last_step_kept(corpus, tmp_path, capsys,
                                                                          one_torch_thread):
    """A corpus too small for every split (or its valid chapter dropped upstream) trains on: no
    validation, no artifact test, each said once."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "out"
    result = train([corpus / "train.jsonl"], out, _settings(max_steps=2, eval_every=1, evaluate_start=True),
                   str(corpus / "start"), valid_manifests=[empty], test_manifests=[empty], progress=False)  # fmt: skip
    err = capsys.readouterr().err
    assert f"{empty}: no clips: no validation, the last step's weights are kept" in err
    assert f"{empty}: no clips: no artifact test" in err
    assert result.steps == 2 and result.final_eval is None and not (out / "artifact_test.json").exists()
    metrics = json.loads((out / "real_metrics.json").read_text())
    assert metrics["valid_clips"] == 0 and metrics["tuned_eval_loss"] is None and metrics["train_loss"] > 0
    assert "No validation clips" in (out / "README.md").read_text()


def test_the_weights_kept_are_picked_by_the_best_metric_asked(corpus, tmp_path, one_torch_thread):
    """--best-metric picks among the validations, the start's included: WER by default (the
    issue's "best model by validation WER", Hugging Face's metric_for_best_model), CER or the loss;
    training.json and the card say which."""
    from tala.finetune.moonshine import main

    kept = {}
    for metric in ("loss", None):
        out = tmp_path / f"out-{metric}"
        command = _command(corpus, out, max_steps=6)[3:]  # without python -m tala.finetune.moonshine
        command[command.index("--eval-every") + 1] = "3"
        command += ["--valid", str(corpus / "train.jsonl"), "--evaluate-start"]
        assert main(command + (["--best-metric", metric] if metric else [])) == 0
        key = metric or "wer"
        info = json.loads((out / "training.json").read_text())
        evals = [r for r in map(json.loads, (out / "training_log.jsonl").read_text().splitlines())
                 if f"eval_{key}" in r and "event" not in r]
        assert [r["step"] for r in evals] == [0, 3, 6] and info["settings"]["best_metric"] == key
        assert set(info["best"]) == {"step", key}, info["best"]
        assert info["best"][key] == pytest.approx(min(r[f"eval_{key}"] for r in evals), abs=1e-5)
        kept[key] = info["best"]["step"]
        said = "the start read best" if kept[key] == 0 else f"the best validation {dict(wer='WER').get(key, key)}"
        assert said in (out / "README.md").read_text()
    # the untrained start reads nothing (WER 1.0); 6 steps lower the loss and write "o o o ..." (WER > 1)
    assert kept == {"loss": 6, "wer": 0}, kept


def test_characters_the_tokenizer_cannot_write_are_named_once_and_recorded(corpus, tmp_path, capsys,
                                                                           one_torch_thread):
    def run(name, manifest):
        return train([manifest], tmp_path / name, _settings(max_steps=1), str(corpus / "start"), progress=False)

    assert_unwritable_characters_are_named(run, corpus / "train.jsonl", tmp_path, capsys)


def test_evaluate_asr_says_the_cer_a_tokenizer_cannot_go_below(corpus, tmp_path, one_torch_thread):
    from tala.finetune.evaluate_asr import main as evaluate_asr

    rows = [json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines()][:3]
    rows[0]["normalized"] = "ŋ " + rows[0]["normalized"]
    rows[2]["normalized"] = rows[2]["normalized"] + " ŋŋ q"
    split = tmp_path / "test.jsonl"
    split.write_text("".join(json.dumps({**r, "audio": str(corpus / r["audio"])}, ensure_ascii=False) + "\n"
                             for r in rows), encoding="utf-8")  # fmt: skip
    out = tmp_path / "eval.json"
    assert evaluate_asr([str(out), str(tmp_path / "eval.tsv"), "--html", str(tmp_path / "eval.html"), "--language",
                         "samoan", "--kind", "moonshine", "--split", "test", str(split), "--system", "start",
                         str(corpus / "start"), "-", "--device", "cpu"]) == 0  # fmt: skip
    score = json.loads(out.read_text())["splits"]["test"]["start"]
    assert score["unwritable"] == {"letters": 4, "floor_cer": round(4 / score["ref_chars"], 4),
                                   "characters": {"ŋ": 3, "q": 1}}  # fmt: skip
    assert score["cer"] >= score["unwritable"]["floor_cer"]
    page = html.unescape((tmp_path / "eval.html").read_text())
    assert "start cannot write 4 letters of the test references ('ŋ' x3, 'q' x1: its tokenizer has no token" in page


def test_lora_parts_put_the_adapters_in_the_named_stack_only(corpus, tmp_path, one_torch_thread):
    """lora_parts=("encoder",): adapters on the encoder's layers and none on the decoder's, saved,
    recorded and loaded back with plain peft; a part Moonshine lacks is refused."""
    out = tmp_path / "encoder-only"
    train([corpus / "train.jsonl"], out, _settings(max_steps=2, lora_parts=("encoder",)), str(corpus / "start"),
          progress=False)  # fmt: skip
    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert adapter and all(".encoder.layers." in k for k in adapter), sorted(adapter)[:4]
    assert {k.split(".layers.")[1].split(".")[1] for k in adapter} == {"self_attn"}
    assert json.loads((out / "moonshine.json").read_text())["lora_parts"] == ["encoder"]
    loaded, _, _, config = load_moonshine_lora(out)
    assert config.lora_parts == ("encoder",)
    names = [n for n, _ in loaded.named_parameters() if "lora_A" in n]
    assert names and not any(".decoder." in n for n in names)
    with pytest.raises(ValueError, match="lora_parts must be one or both of"):
        _settings(lora_parts=("decoder", "lm_head")).check()


def test_decoder_mode_with_cached_encoder_outputs_trains_as_the_encoder_does(corpus, tmp_path, one_torch_thread):
    """Mode decoder with cache_frames: the frozen encoder's output of each clip is computed once and
    its attention mask rebuilt per batch; the losses and weights are those of a run that encodes
    every batch."""
    manifest = corpus / "train.jsonl"
    runs = {}
    for cached in (False, True):
        losses: list[float] = []
        train([manifest], tmp_path / f"run-{cached}", _settings(train="decoder", max_steps=10, cache_frames=cached,
                                                               batch_seconds=4.0, max_batch_size=3),
              str(corpus / "start"), progress=False, on_step=lambda step, loss: losses.append(loss))
        runs[cached] = (losses, load_file(str(tmp_path / f"run-{cached}" / "model.safetensors")))
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-4), "the same losses, step by step"
    assert all(torch.allclose(runs[True][1][k], runs[False][1][k], atol=1e-5) for k in runs[True][1])
    encoder = [k for k in runs[True][1] if ".encoder." in f".{k}"]
    start = load_file(str(corpus / "start" / "model.safetensors"))
    assert encoder and all(torch.equal(runs[True][1][k], start[k]) for k in encoder), "the encoder stays frozen"


def test_each_clip_is_learned_as_it_is_heard_alone_whatever_it_is_batched_with(corpus, one_torch_thread):
    """Moonshine's first GroupNorm spans its whole input, padding included: a clip encoded in a
    padded batch is heard differently from the same clip read alone, as generation reads it. The
    trainer encodes each clip alone: a batch's loss is the sum of its clips' losses read alone."""
    from transformers import AutoFeatureExtractor, AutoTokenizer, MoonshineForConditionalGeneration

    from tala.finetune.moonshine import batch_loss
    from tala.models.moonshine import audio_inputs, label_tensor, target_ids

    start = corpus / "start"
    model = MoonshineForConditionalGeneration.from_pretrained(start).eval()
    extractor, tokenizer = AutoFeatureExtractor.from_pretrained(start), AutoTokenizer.from_pretrained(start)
    rows = [json.loads(line) for line in (corpus / "train.jsonl").read_text(encoding="utf-8").splitlines()][:3]
    audio = [sf.read(corpus / row["audio"], dtype="float32")[0] for row in rows]
    assert len({len(a) for a in audio}) == 3, "clips of different lengths: the shorter ones are padded"
    targets = [target_ids(tokenizer, row["normalized"]) for row in rows]

    def summed_loss(clips, ids):
        return float(model(**audio_inputs(extractor, clips, "cpu"), labels=label_tensor(ids, "cpu")).loss) * \
            sum(len(t) for t in ids)  # fmt: skip

    shortest = int(np.argmin([len(a) for a in audio]))
    with torch.no_grad():
        summed, tokens, _, _ = batch_loss(model, extractor, audio, targets, "cpu")
        alone = sum(summed_loss([a], [t]) for a, t in zip(audio, targets))
        heard = model.get_encoder()(**audio_inputs(extractor, [audio[shortest]], "cpu")).last_hidden_state[0]
        in_batch = model.get_encoder()(**audio_inputs(extractor, audio, "cpu")).last_hidden_state[shortest]
    assert tokens == sum(len(t) for t in targets)
    assert float(summed) == pytest.approx(alone, rel=1e-5)
    change = (in_batch[: len(heard)] - heard).norm() / heard.norm()
    assert change > 0.01, "encoded in a padded batch, the shortest clip would sound different"


def test_start_kl_keeps_lora_near_its_start_and_label_smoothing_smooths_the_targets(corpus, tmp_path,
                                                                                   one_torch_thread):
    """start_kl adds nothing while the adapters change nothing, grows as they move the model, and
    holds a run nearer its start; label_smoothing puts the smoothed cross-entropy of each clip (read
    alone) in place of the plain one; start_kl needs adapters to switch off."""
    import torch.nn.functional as F

    from tala.finetune.moonshine import batch_loss, load_start
    from tala.models.moonshine import audio_inputs, label_tensor, target_ids

    rows = [json.loads(line) for line in (corpus / "train.jsonl").read_text(encoding="utf-8").splitlines()][:3]
    audio = [sf.read(corpus / row["audio"], dtype="float32")[0] for row in rows]
    began = load_start(_settings(), str(corpus / "start"))  # new adapters: lora_B = 0
    model, extractor = began.model.eval(), began.feature_extractor
    targets = [target_ids(began.tokenizer, row["normalized"]) for row in rows]
    with torch.no_grad():
        _, _, _, added = batch_loss(model, extractor, audio, targets, "cpu", start_kl=1.0)
        assert abs(float(added)) < 1e-5, "adapters that change nothing are at their start"
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
        _, _, _, added = batch_loss(model, extractor, audio, targets, "cpu", start_kl=1.0)
        assert float(added) > 1e-3
        plain, _, _, smoothing = batch_loss(model, extractor, audio, targets, "cpu", label_smoothing=0.1)
        by_hand = sum(F.cross_entropy(model(**audio_inputs(extractor, [a], "cpu"), labels=label_tensor([t], "cpu"))
                                      .logits[0], torch.tensor(t), reduction="sum", label_smoothing=0.1)
                      for a, t in zip(audio, targets))  # fmt: skip
        assert float(plain + smoothing) == pytest.approx(float(by_hand), rel=1e-4)
        assert float(smoothing) > 0

    moved = {}
    for weight in (None, 10.0):
        out = tmp_path / f"kl-{weight}"
        train([corpus / "train.jsonl"], out, _settings(max_steps=20, start_kl=weight), str(corpus / "start"),
              progress=False)  # fmt: skip
        tuned, extractor, _, _ = load_moonshine_lora(out)
        with torch.no_grad():
            moved[weight] = float(batch_loss(tuned.eval(), extractor, audio, targets, "cpu", start_kl=1.0)[3])
    assert moved[10.0] < 0.5 * moved[None], moved
    logged = [json.loads(line) for line in (tmp_path / "kl-10.0" / "training_log.jsonl").read_text().splitlines()]
    steps = [r for r in logged if "regularized_loss" in r]
    assert steps and all(r["regularized_loss"] >= r["loss"] - 1e-6 for r in steps), "the log shows what is minimized"
    with pytest.raises(ValueError, match="start_kl must be >= 0 and needs train=lora"):
        _settings(train="decoder", start_kl=1.0).check()
    _settings(train="decoder", start_kl=0.0).check()  # 0: off


def test_guided_attention_pulls_the_cross_attention_to_the_diagonal_cached_or_not(corpus, tmp_path, one_torch_thread):
    """guided_attention (a decoder trained from scratch): the logged guided loss falls, and a run that
    reads each clip's frames from the cache takes the steps of one that asks the encoder's mask."""
    runs = {}
    for cached in (False, True):
        train([corpus / "train.jsonl"], tmp_path / f"run-{cached}",
              _settings(train="decoder", max_steps=30, cache_frames=cached, guided_attention=5.0, log_every=5,
                        batch_seconds=4.0, max_batch_size=3),
              str(corpus / "start"), progress=False, keep_checkpoint_dir=True)  # fmt: skip
        runs[cached] = guided_losses(tmp_path / f"run-{cached}.checkpoints")
    assert len(runs[True]) == 6 and runs[True][-1] < 0.8 * runs[True][0], runs[True]
    assert runs[True] == pytest.approx(runs[False], rel=1e-3)


def test_guided_attention_from_the_command_line_moves_the_lora_adapters(corpus, tmp_path, one_torch_thread):
    """--guided-attention reaches both trainers' settings, and in lora mode (fine-tuning a start
    pre-trained with it, as the demo's) the adapters learn to read where the guide says: the
    logged guided loss falls."""
    from tala.finetune import moonshine, speechllm
    from tala.finetune.options import shared_settings

    for trainer in (moonshine, speechllm):
        args = trainer.parse_args(["--train", "t.jsonl", "--out", "o", "--start", "s", "--guided-attention", "0.5",
                                   "--guided-attention-width", "0.2"])  # fmt: skip
        shared = shared_settings(args)
        assert (shared["guided_attention"], shared["guided_attention_width"]) == (0.5, 0.2), trainer
    out = tmp_path / "run"
    assert moonshine.main(["--start", str(corpus / "start"), "--train", str(corpus / "train.jsonl"), "--out", str(out),
                           "--max-steps", "30", "--lr", "1e-2", "--warmup-steps", "5", "--batch-seconds", "4",
                           "--max-batch-size", "3", "--lora-r", "8", "--lora-alpha", "16", "--guided-attention", "5",
                           "--log-every", "5", "--device", "cpu", "--keep-checkpoint-dir", "--no-progress"]) == 0
    losses = guided_losses(tmp_path / "run.checkpoints")
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0], losses
    assert json.loads((out / "training.json").read_text())["settings"]["guided_attention"] == 5.0


def test_the_artifact_test_names_clips_as_the_workflow_does(tmp_path, monkeypatch):
    """artifact_test.json names a clip inside the working directory relative to it (two clean runs in
    different folders write the same bytes) and one outside it absolutely."""
    monkeypatch.chdir(tmp_path)
    assert _as_named(tmp_path / "results" / "x" / "a.wav") == "results/x/a.wav"
    assert _as_named(Path("results/x/a.wav")) == "results/x/a.wav"
    assert _as_named(tmp_path.parent / "elsewhere.wav") == str(tmp_path.parent / "elsewhere.wav")


def test_chapter_folds_hold_out_each_chapter_and_pool_their_cer_without_rerunning(corpus, tmp_path):
    """tala.finetune.chapter_folds: each chapter is the validation of one run per setting, trained on
    the others' clips alone; the table pools the chapters' CER by their characters; a finished run is
    read again, not rerun; one chapter, a bad setting, a setting's runs claimed by other options or
    made from other clips, and a failing run are one clear error each."""
    from tala.ctc_text import normalize_for_scoring
    from tala.errors import InputError
    from tala.finetune import chapter_folds

    rows = [json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows):
        row["recording"] = "GEN_001" if i < 3 else "RUT_001"
    manifests = tmp_path / "data"
    manifests.mkdir()
    (manifests / "clips").symlink_to(corpus / "clips")
    (manifests / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:5]))
    (manifests / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[5:]))
    work = tmp_path / "work"
    argv = ["--trainer", "moonshine", "--manifests", str(manifests / "a.jsonl"), str(manifests / "b.jsonl"),
            "--work", str(work), "--jobs", "2", "--setting", "fast=--lr 3e-3", "--setting", "slow=--lr 1e-3", "--",
            *_command(corpus, tmp_path / "unused", max_steps=2)[3:]]  # fmt: skip
    for option in ("--train", "--out"):  # each fold's own
        del argv[argv.index(option): argv.index(option) + 2]
    argv[argv.index("--eval-every") + 1] = "1"
    assert chapter_folds.main(argv) == 0

    for held, others in (("GEN_001", "RUT_001"), ("RUT_001", "GEN_001")):
        folder = work / "folds" / held
        train = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
        valid = [json.loads(line) for line in (folder / "valid.jsonl").read_text().splitlines()]
        assert {r["recording"] for r in train} == {others} and {r["recording"] for r in valid} == {held}
        assert len(train) + len(valid) == 8 and all(Path(r["audio"]).is_file() for r in train + valid)
        info = json.loads((work / "runs" / "fast" / held / "training.json").read_text())
        assert info["settings"]["learning_rate"] == 3e-3 and info["valid_manifests"] == [str(folder / "valid.jsonl")]
    table = json.loads((work / "folds.json").read_text())
    weights = {c: sum(len(normalize_for_scoring(r["normalized"])) for r in rows if r["recording"] == c)
               for c in ("GEN_001", "RUT_001")}  # fmt: skip
    assert table["chapters"] == weights
    assert [(r["setting"], r["step"]) for r in table["rows"]] == [(s, n) for s in ("fast", "slow") for n in (0, 1, 2)]
    for row in table["rows"]:
        log = work / "runs" / row["setting"] / "GEN_001" / "training_log.jsonl"
        cers = [json.loads(line)["eval_cer"] for line in log.read_text().splitlines() if '"eval_cer"' in line
                and '"event"' not in line]  # fmt: skip
        assert row["chapters"]["GEN_001"] == cers[row["step"]]
        pooled = sum(row["chapters"][c] * w for c, w in weights.items()) / sum(weights.values())
        assert row["cer"] == pytest.approx(pooled, abs=1e-5)
    assert table["best"]["cer"] == min(r["cer"] for r in table["rows"])
    assert (work / "folds.tsv").read_text().splitlines()[0] == "setting\tstep\tcer\tGEN_001\tRUT_001"

    done = work / "runs" / "slow" / "RUT_001" / "training_log.jsonl"
    before = done.stat().st_mtime_ns
    assert chapter_folds.main(argv) == 0 and done.stat().st_mtime_ns == before, "a finished run is not run again"

    with pytest.raises(InputError, match="'slow' was run with other options"):
        chapter_folds.main([*argv[:argv.index("--setting")], "--setting", "slow=--lr 1e-4", *argv[argv.index("--"):]])
    with pytest.raises(InputError, match="'a b' and 'a_b' name the same runs"):
        chapter_folds.main([*argv[:argv.index("--setting")], "--setting", "a b=--lr 1e-4", "--setting", "a_b=--lr 2e-4",
                            *argv[argv.index("--"):]])  # fmt: skip
    changed = [{**r, "normalized": r["normalized"] + " foi"} if i == 0 else r for i, r in enumerate(rows[5:])]
    (manifests / "rebuilt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in changed))
    fold = (work / "folds" / "GEN_001" / "train.jsonl").read_text()
    with pytest.raises(InputError, match="'fast' was run on other clips than the manifests hold now"):
        chapter_folds.main([*argv[:4], str(manifests / "rebuilt.jsonl"), *argv[5:]])
    assert (work / "folds" / "GEN_001" / "train.jsonl").read_text() == fold, "the folds are left as they were"
    with pytest.raises(InputError, match="1 chapter"):
        chapter_folds.main([*argv[:3], str(manifests / "b.jsonl"), *argv[4:]])
    with pytest.raises(SystemExit):
        chapter_folds.main([*argv[:argv.index("--setting")], "--setting", "no-options", "--"])
    with pytest.raises(InputError, match=r"the trainer failed .*its log: "):
        chapter_folds.main([*argv[:argv.index("--setting")], "--setting", "bad=--lr -1", *argv[argv.index("--"):]])


def test_lora_on_the_hub_model_download_models_put_in_models_dir(corpus, tmp_path, one_torch_thread):
    """What a user with the real model does: --start UsefulSensors/moonshine-tiny, read offline from
    download_models' folder. The adapters learn, the saved folder names the hub id as its base (in
    peft's adapter_config.json too, so that it can be shared) and loads with plain transformers +
    peft from the same folder, the base as it was."""
    import shutil

    from tala.hub import model_dir_name

    hub_id = "UsefulSensors/moonshine-tiny"
    models = tmp_path / "models"
    shutil.copytree(corpus / "start", models / model_dir_name(hub_id))
    losses = []
    train([corpus / "train.jsonl"], tmp_path / "tuned", _settings(max_steps=30), hub_id, models_dir=models,
          progress=False, on_step=lambda step, loss: losses.append(loss))  # fmt: skip
    adapter = json.loads((tmp_path / "tuned" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == hub_id, "peft's config names the hub id, not this machine's copy"
    # every clip in each step: a smooth fall from log(60) = 4.09 (thirty steps on a random base: ~3.8)
    assert np.mean(losses[-5:]) < 0.97 * np.mean(losses[:5]), losses
    model, _, _, config = load_moonshine_lora(tmp_path / "tuned", models_dir=models)
    assert config.base == hub_id
    base = load_file(str(corpus / "start" / "model.safetensors"))
    untouched = {k.replace(".base_layer", ""): v for k, v in model.get_base_model().state_dict().items()
                 if "lora_" not in k}  # fmt: skip
    assert all(torch.equal(v, untouched[k]) for k, v in base.items() if k != "proj_out.weight"), "the base unchanged"
    assert any("lora_" in k for k in model.state_dict()), "the adapters are loaded"


def test_a_damaged_recognizer_folder_is_one_line_naming_the_file(corpus, tmp_path, capsys, one_torch_thread):
    """A tuned folder, and a whole model, as a copy or a sync cut short leaves them: evaluate_asr
    says which file and why, in one line."""
    manifest = corpus / "train.jsonl"
    train([manifest], tmp_path / "tuned", _settings(max_steps=1), str(corpus / "start"), progress=False)
    assert_damaged_recognizer_folders_are_named("moonshine", tmp_path / "tuned", manifest, {
        "adapter": ("adapter_model.safetensors", "cut"), "config": ("moonshine.json", "not json"),
        "field": ("moonshine.json", {"layers_of_a_later_version": 3}),
    }, tmp_path, capsys)  # fmt: skip
    assert_damaged_recognizer_folders_are_named("moonshine", corpus / "start", manifest, {
        "whole": ("model.safetensors", "cut")}, tmp_path, capsys)
