"""tala.finetune.card: the model card of a fine-tuned recognizer says what was kept and why."""

from __future__ import annotations

from tala.finetune.card import Split, recognizer_card, start_evaluation


def _card(**changes) -> str:
    base = dict(title="T", what="W", base="org/base", generator="tala.finetune.x",
                settings={"learning_rate": 3e-4, "lora_targets": ("q_proj", "v_proj"), "unlisted": 1, "seed": None},
                train=Split(("train.jsonl",), 8, 120.0, 1), valid=Split(("valid.jsonl",), 3, 48.0),
                start={"loss": 0.7, "cer": 0.052, "wer": 0.099}, final={"loss": 0.44, "cer": 0.019, "wer": 0.033},
                best={"step": 60}, steps=120, load="model = load('.')", start_name="`org/base`")  # fmt: skip
    return recognizer_card(**{**base, **changes})


def test_the_card_gives_the_data_settings_and_both_validations():
    card = _card()
    assert card.startswith("---\nbase_model: org/base\nlibrary_name: peft\n")
    assert "| train | `train.jsonl` | 8 | 2.0 | 1 |" in card and "| validation | `valid.jsonl` | 3 | 0.8 | 0 |" in card
    assert "120 steps: learning_rate 0.0003, lora_targets q_proj/v_proj." in card and "unlisted" not in card
    assert "| the start (`org/base`) | 0.700 | 5.2 % | 9.9 % |" in card
    assert "| fine-tuned (step 60, the best validation CER) | 0.440 | 1.9 % | 3.3 % |" in card
    assert "(step 60, the best validation WER)" in _card(best={"step": 60, "wer": 0.033}), "what picked it"
    assert "```python\nmodel = load('.')\n```" in card and "Artifact test" not in card
    off = _card(settings={"learning_rate": 3e-4, "guided_attention": 0.0})
    on = _card(settings={"learning_rate": 3e-4, "guided_attention": 1.0})
    assert "guided_attention" not in off and "learning_rate 0.0003, guided_attention 1.0." in on


def test_the_card_says_when_the_start_was_kept_or_nothing_was_validated():
    assert "(step 0: the start read best and is what was kept)" in _card(best={"step": 0})
    assert "(the end of phase 1; phase 2 read no better)" in _card(best={"step": 0, "label": "the end of phase 1; "
                                                                                           "phase 2 read no better"})
    card = _card(valid=Split(("valid.jsonl",), 0, 0.0), start=None, final=None, best=None, lora=False)
    assert "library_name: transformers" in card and "- lora" not in card
    assert "No validation clips: the last step's weights were kept" in card and "| the start" not in card
    assert "WER 12.5 %" in _card(artifact={"samples": [{}, {}], "wer": 0.125})


def test_the_start_is_read_from_the_log_when_it_was_evaluated(tmp_path):
    log = tmp_path / "training_log.jsonl"
    log.write_text('{"step": 0, "eval_loss": 0.9, "eval_cer": 0.1, "eval_wer": 0.2}\n{"step": 5, "loss": 1.0}\n'
                   '{"step": 5, "event": "best", "best_step": 0, "eval_cer": 0.1}\n')
    assert start_evaluation(log) == {"loss": 0.9, "cer": 0.1, "wer": 0.2}
    log.write_text('{"step": 5, "eval_cer": 0.1}\n')
    assert start_evaluation(log) is None
