"""The settings both LoRA recognizer trainers share (tala.finetune.options): each is checked alike."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tala.finetune.moonshine import MoonshineSettings
from tala.finetune.speechllm import SpeechLLMSettings

BAD = [("train", "everything", "train must be one of"), ("best_metric", "bleu", "best_metric must be one of"),
       ("num_beams", 0, "num_beams must be >= 1"), ("part_seconds", 0.0, "part_seconds must be > 0"),
       ("guided_attention", -1.0, "guided_attention must be >= 0"),
       ("guided_attention_width", 0.0, "guided_attention_width positive")]  # fmt: skip


@pytest.mark.parametrize("settings", [SpeechLLMSettings(), MoonshineSettings()], ids=["speechllm", "moonshine"])
@pytest.mark.parametrize("field,value,message", BAD, ids=[b[0] for b in BAD])
def test_each_trainer_refuses_a_bad_shared_setting_by_name(settings, field, value, message):
    settings.check()  # the defaults pass
    with pytest.raises(ValueError, match=message):
        replace(settings, **{field: value}).check()
