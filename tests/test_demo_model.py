"""The shipped demo model (resources/demo/model): loads offline as an MMS model, and reads the demo
chapters within the goal (greedy CER <= 5 %); plus the recipe's text and data helpers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from conftest import REPO, require
from tala.ctc_text import CtcVocabulary
from tala.demo.evaluate import (
    FRAME_S,
    evaluate_demo,
    load_demo_model,
    score_chapter,
    verse_hypotheses,
    windows_timed_chars,
)
from tala.demo.sentences import demo_ngrams, overlaps_demo, random_sentence
from tala.demo.text import LANGUAGES, OKINA, language_vocab, nested_vocab, normalize_text
from tala.demo.training_speech import plan_easy_utterance, plan_utterance, render_master, utterance_rng

MODEL = REPO / "resources" / "demo" / "model"
DEMO = REPO / "resources" / "demo"
GOAL_CER = 0.05


# A tiny model gains nothing from threads, and loses much when other work shares the cores.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def truth(lang: str, rec: str) -> dict:
    return json.loads((DEMO / LANGUAGES[lang].name / "truth" / f"{rec}.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the shipped folder


def test_shipped_folder_is_complete_and_small():
    names = {p.name for p in MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "adapter.por.safetensors", "adapter.smo.safetensors", "vocab.json",
            "tokenizer_config.json", "processor_config.json", "README.md", "eval.json", "training.json",
            "training_log.jsonl"} <= names  # fmt: skip
    assert sum(p.stat().st_size for p in MODEL.iterdir()) < 15e6
    assert json.loads((MODEL / "vocab.json").read_text(encoding="utf-8")) == nested_vocab(LANGUAGES)
    config = json.loads((MODEL / "config.json").read_text(encoding="utf-8"))
    assert config["adapter_attn_dim"] and config["do_stable_layer_norm"] and config["feat_extract_norm"] == "layer"


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_loads_offline_with_each_adapter_as_the_transcribe_step_does(lang):
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    model = Wav2Vec2ForCTC.from_pretrained(MODEL)
    model.load_adapter(lang)
    processor = Wav2Vec2Processor.from_pretrained(MODEL)
    processor.tokenizer.set_target_lang(lang)
    vocab = language_vocab(LANGUAGES[lang].alphabet)
    assert processor.tokenizer.encoder == vocab and model.lm_head.out_features == len(vocab)
    assert processor.feature_extractor.sampling_rate == 16_000 and processor.feature_extractor.return_attention_mask

    direct = Wav2Vec2ForCTC.from_pretrained(MODEL, target_lang=lang, ignore_mismatched_sizes=True)
    for name, param in model.state_dict().items():
        assert torch.equal(param, direct.state_dict()[name]), name


def test_adapters_differ_only_in_adapter_weights():
    from transformers import Wav2Vec2ForCTC

    smo = Wav2Vec2ForCTC.from_pretrained(MODEL)
    smo.load_adapter("smo")
    por = Wav2Vec2ForCTC.from_pretrained(MODEL)
    adapters = set(smo._get_adapters())
    for name, param in smo.state_dict().items():
        if name not in adapters:
            assert torch.equal(param, por.state_dict()[name]), name


@pytest.mark.parametrize(("lang", "rec"), [("smo", "PSA_121"), ("por", "PSA_121"), ("smo", "JHN_001"),
                                          ("por", "JHN_001")])  # fmt: skip
def test_reads_demo_chapters_within_the_goal(lang, rec, tmp_path):
    """Whole chapters (WAV and MP3: no ffmpeg needed), converted as the workflow converts them."""
    from tala.audio.convert import convert_file

    chapter = truth(lang, rec)
    wav = tmp_path / f"{rec}.wav"
    convert_file(DEMO / LANGUAGES[lang].name / chapter["audio"], wav, progress=False)
    model, processor = load_demo_model(MODEL, lang)
    for context_s in (2.0, 0.0):
        scored = score_chapter(model, processor, lang, wav, chapter, window_s=30.0, context_s=context_s)
        assert scored["cer"] <= GOAL_CER, (context_s, [v for v in scored["verses"] if v["cer"] > 0])


def test_recorded_evaluation_meets_the_goal_on_every_chapter():
    report = json.loads((MODEL / "eval.json").read_text(encoding="utf-8"))
    assert len(report["chapters"]) == 8
    for chapter in report["chapters"]:
        for mode in report["modes"]:
            assert chapter[mode]["cer"] <= GOAL_CER, (chapter["language"], chapter["recording"], mode)


# --------------------------------------------------------------------------- recipe helpers


def test_normalize_text_keeps_letters_and_unifies_the_okina():
    assert normalize_text("Ua faʻaigoa e le Atua; o le Pō.", "smo") == f"ua fa{OKINA}aigoa e le atua o le pō"
    for variant in ("'", "\u2018", "`", "\u2019"):
        assert normalize_text(f"fa{variant}aigoa", "smo") == f"fa{OKINA}aigoa"
    assert normalize_text("E disse Deus: Ajuntem-se as águas!", "por") == "e disse deus ajuntem se as águas"
    assert normalize_text("Capítulo  CÉU, ação.", "por") == "capítulo céu ação"


def test_every_demo_text_is_spelled_with_the_vocabulary():
    for lang, spec in LANGUAGES.items():
        for path in sorted((DEMO / spec.name / "truth").glob("*.json")):
            for verse in json.loads(path.read_text(encoding="utf-8"))["verses"]:
                assert set(normalize_text(verse["text"], lang).replace(" ", "")) <= set(spec.alphabet), path


def test_vocabularies_are_mms_shaped():
    vocab = nested_vocab(LANGUAGES, joint=True)
    assert set(vocab) == {"smo", "por", "mul"}
    for tokens in vocab.values():
        assert [tokens[t] for t in ("<pad>", "<s>", "</s>", "<unk>", "|")] == [0, 1, 2, 3, 4]
        assert sorted(tokens.values()) == list(range(len(tokens)))
    assert set(vocab["mul"]) == set(vocab["smo"]) | set(vocab["por"])


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_training_texts_never_contain_a_demo_sentence(lang):
    banned = demo_ngrams(DEMO, lang)
    assert ("i", "le", "amataga", "na") in banned or ("no", "princípio", "criou", "deus") in banned
    for index in range(150):
        planner = plan_easy_utterance if index % 3 == 0 else plan_utterance
        plan = planner(lang, utterance_rng(1, lang, "train", index), banned)
        assert plan.sentences and not any(overlaps_demo(s, lang, banned) for s in plan.sentences)
        assert set(normalize_text(plan.text, lang).replace(" ", "")) <= set(LANGUAGES[lang].alphabet)
        assert len(plan.pauses_s) == len(plan.sentences) - 1


def test_utterance_plans_are_seeded():
    a = plan_utterance("smo", utterance_rng(7, "smo", "train", 3), set())
    b = plan_utterance("smo", utterance_rng(7, "smo", "train", 3), set())
    c = plan_utterance("smo", utterance_rng(7, "smo", "train", 4), set())
    assert a == b and a != c
    rng = np.random.default_rng(0)
    assert random_sentence("por", rng)[0].isupper()


def test_rendered_utterance_has_the_demo_noise_floor_and_edges():
    require("espeak-ng")
    plan = plan_utterance("por", utterance_rng(2, "por", "test", 0), set())
    master = render_master(plan)
    assert np.array_equal(master, render_master(plan))
    lead = master[: int(0.9 * plan.lead_s * 22_050)]
    assert 20 * np.log10(np.sqrt(np.mean(lead**2))) == pytest.approx(plan.noise_dbfs, abs=1.0)
    assert 20 * np.log10(np.max(np.abs(master))) == pytest.approx(plan.peak_dbfs, abs=0.1)


def test_decoded_characters_are_cut_into_verses_by_time():
    vocabulary = CtcVocabulary.from_token_ids({"<pad>": 0, "|": 1, "a": 2, "b": 3})
    # "a a _ | b" from 0.2 s, then 1 s of blanks, then "b | a"
    path = [0] * 10 + [2, 2, 0, 1, 3] + [0] * 50 + [3, 1, 2]
    logits = torch.nn.functional.one_hot(torch.tensor(path), 4).float()
    chars = windows_timed_chars([(0.0, logits)], vocabulary)
    assert "".join(ch for ch, _ in chars) == "a bb a "  # the window edge ends with a word break
    assert chars[0][1] == pytest.approx(10 * FRAME_S) and chars[-2][1] == pytest.approx(67 * FRAME_S)
    truth = {"heading": {"start": 0.0, "end": 0.05},
             "verses": [{"start": 0.2, "end": 0.3}, {"start": 1.3, "end": 1.4}]}  # fmt: skip
    assert verse_hypotheses(chars, truth) == ["a b", "b a"]


def test_each_window_is_decoded_on_its_own():
    """A letter held across a window edge is written twice (each window starts anew), with a word
    break at the edge, at the times of the window it falls in."""
    vocabulary = CtcVocabulary.from_token_ids({"<pad>": 0, "<s>": 1, "|": 2, "a": 3})
    first = torch.nn.functional.one_hot(torch.tensor([0, 3, 3]), 4).float()
    second = torch.nn.functional.one_hot(torch.tensor([3, 1, 3]), 4).float()
    chars = windows_timed_chars([(0.0, first), (10.0, second)], vocabulary)
    assert [ch for ch, _ in chars] == ["a", " ", "a", "a", " "]  # <s> writes nothing but breaks the run
    assert [t for _, t in chars] == pytest.approx([FRAME_S, 3 * FRAME_S, 10.0, 10.0 + 2 * FRAME_S, 10.0 + 3 * FRAME_S])


@pytest.mark.slow
def test_reevaluating_the_shipped_model_reproduces_its_eval_json(tmp_path):
    """eval.json is what evaluate_demo says of the shipped folder, number for number."""
    require("ffmpeg")  # two chapters per language are AAC in MP4
    recorded = json.loads((MODEL / "eval.json").read_text(encoding="utf-8"))
    report = evaluate_demo(MODEL, DEMO, tmp_path)
    report["model"] = recorded["model"]
    assert report == recorded
