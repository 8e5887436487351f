"""The demo speech-LLM and Moonshine stand-ins (resources/demo/speechllm, resources/demo/moonshine):
complete, small, loaded as the workflow loads them, their recorded evaluation reproduced; and the
recipes' helpers (windows packed on both frame grids, frames matched by time, word times, chunks,
joined clips)
and the verse clips they are judged on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO
from tala.demo.distill import TEACHER_HOP, Placed, pack_windows, student_frames
from tala.demo.evaluate import chapter_wav, evaluate_verses, verse_clips
from tala.demo.text import demo_truths

DEMO = REPO / "resources" / "demo"
SPEECHLLM = DEMO / "speechllm"
MOONSHINE = DEMO / "moonshine"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- the recipes' helpers


@pytest.mark.parametrize("align", [1, 6])
def test_windows_hold_every_utterance_once_on_the_grid_and_never_overlap(align):
    rng = np.random.default_rng(0)
    lengths = rng.integers(50, 1200, size=200)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    windows = pack_windows("smo", offsets, np.random.default_rng(1), align)
    placed = [p for w in windows for p in w.placed]
    assert sorted(p.index for p in placed) == list(range(200)), "each utterance exactly once"
    for window in windows:
        assert all(p.frame % align == 0 for p in window.placed), "starts on the grid both frame rates share"
        ends = [p.frame + p.frames + 1 for p in window.placed]
        assert all(end <= p.frame for end, p in zip(ends, window.placed[1:])), "no overlap"
        assert ends[-1] <= 1500, "inside 30 s"
    # next-fit: two neighbouring windows together hold more than one window's frames
    assert len(windows) <= 2 * int(np.ceil(lengths.sum() / 1500)) + 1, "windows are filled"
    again = pack_windows("smo", offsets, np.random.default_rng(1), align)
    assert again == windows, "a pure function of the seed (resume gets the same windows)"


def test_student_frames_are_matched_to_the_teacher_by_time():
    first, teacher = student_frames(Placed(index=0, frame=12, frames=100), hop=TEACHER_HOP, total=1500)
    assert first == 12 and teacher.tolist() == list(range(100)), "Whisper's grid is the teacher's"
    first, teacher = student_frames(Placed(index=0, frame=12, frames=100), hop=384, total=1248)
    assert first == 10, "12 teacher frames = 3,840 samples = 10 Moonshine frames"
    assert len(teacher) == 100 * 320 // 384 and teacher[-1] <= 99
    times_student, times_teacher = np.arange(len(teacher)) * 384, teacher * TEACHER_HOP
    assert np.abs(times_student - times_teacher).max() <= TEACHER_HOP / 2, "the nearest teacher frame"
    first, teacher = student_frames(Placed(index=0, frame=1494, frames=100), hop=384, total=1248)
    assert first + len(teacher) == 1248, "cut at the window's end"


def test_distillation_can_teach_where_each_frame_is_on_cut_windows_after_fitting_the_heads(tmp_path):
    """The Moonshine recipe's position stage (DistillSettings.position_weight, cut_seconds,
    heads_steps): the encoder stays as it was while the heads are fitted, each batch's windows are
    cut to one seeded length on the grid both frame rates share, the time head's squared error is
    logged and its R² on the validation clips reported."""
    import torch
    from safetensors.torch import load_file, save_file

    from tala.demo.distill import DistillSettings, Student, distill
    from tala.training import LOG_FILE, checkpoint_dirs, checkpoint_root

    class Framer(torch.nn.Module):  # 384 samples a frame, as Moonshine's encoder
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(384, 8)

        def forward(self, audio):
            frames = audio.shape[1] // 384
            return self.proj(audio[:, : frames * 384].reshape(len(audio), frames, 384))

    rng = np.random.default_rng(0)
    (tmp_path / "clips").mkdir()
    manifests, logp, offsets = {"xx": {}}, [], [0]
    for split, count in (("train", 12), ("valid", 3)):
        rows = []
        for i in range(count):
            samples = rng.normal(0, 0.1, int(rng.uniform(0.6, 1.8) * 16_000)).astype(np.float32)
            sf.write(tmp_path / "clips" / f"{split}{i}.wav", samples, 16_000)
            rows.append({"audio": f"clips/{split}{i}.wav", "text": "ab ba"})
            if split == "train":
                logp.append(np.log(rng.dirichlet(np.ones(4), len(samples) // TEACHER_HOP)).astype(np.float16))
                offsets.append(offsets[-1] + len(logp[-1]))
        manifests["xx"][split] = tmp_path / f"{split}.jsonl"
        manifests["xx"][split].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    np.savez(tmp_path / "teacher.npz", logp=np.concatenate(logp), offsets=np.asarray(offsets))
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "vocab.json").write_text(json.dumps({"xx": {"<pad>": 0, "|": 1, "a": 2, "b": 3}}), encoding="utf-8")
    lengths = []

    def hidden(encoder, audio):
        if encoder.training:  # a training step's windows, not a validation clip
            lengths.append(len(audio[0]))
        return encoder(torch.from_numpy(np.stack(audio)))

    student = Student(name="Framer", hop=384, align=6, dim=8, build=Framer, encoder_of=lambda m: m, hidden=hidden,
                      save=lambda m, folder: save_file(m.state_dict(), str(folder / "model.safetensors")))
    settings = DistillSettings(steps=8, lr=1e-2, warmup=0, windows_per_batch=2, eval_every=0, checkpoint_every=4,
                               log_every=1, decay="constant", position_weight=1.0, cut_seconds=(0.5, 1.5),
                               heads_steps=4, heads_lr=3e-2)  # fmt: skip
    out = tmp_path / "out"
    distill(out, manifests, {"xx": {"train": tmp_path / "teacher.npz"}}, teacher, student, settings, seed=3,
            settings_record={}, progress=False)  # fmt: skip

    torch.manual_seed(3)
    start = Framer().state_dict()
    saved = {step: load_file(str(path / "student.safetensors")) for step, path in checkpoint_dirs(checkpoint_root(out))}
    assert sorted(saved) == [4, 8]
    assert all(torch.equal(saved[4][f"encoder.{k}"], v) for k, v in start.items()), "frozen while the heads fit"
    assert not torch.equal(saved[8]["encoder.proj.weight"], start["proj.weight"]), "then it learns"
    assert not torch.equal(saved[4]["position.weight"], saved[8]["position.weight"])
    assert len(lengths) == 8 and all(n % 1920 == 0 and 0.5 * 16_000 - 1920 < n <= 1.5 * 16_000 for n in lengths)
    assert len(set(lengths)) > 1, "a length drawn for each step"
    log = [json.loads(line) for line in (checkpoint_root(out) / LOG_FILE).read_text().splitlines()]
    assert all("time_mse" in row for row in log if "loss" in row)
    final = json.loads((out / "distillation.json").read_text())["final_eval"]
    assert {"cer", "wer", "time_r2", "time_mae_s"} <= set(final) and final["time_mae_s"] >= 0


def test_verse_clips_cut_in_the_pauses_and_leave_the_heading_out():
    truth = demo_truths(DEMO, "smo")[0]
    samples = np.zeros(int(truth["duration"] * 16_000), np.float32)
    clips = verse_clips(samples, truth)
    assert [n for n, _, _ in clips] == [v["number"] for v in truth["verses"]]
    first = truth["verses"][0]
    assert len(clips[0][1]) / 16_000 >= first["end"] - first["start"]
    assert len(clips[0][1]) / 16_000 < first["end"] - truth["heading"]["end"]


def test_word_times_follow_the_teachers_peaks_through_its_mistakes():
    """The teacher's greedy path says "ab xd" for the text "ab cd" (one wrong letter): every word
    still gets its time from the peaks, the wrong letter's interpolated between its neighbours'."""
    from tala.demo.distill import greedy_word_times

    chars = {1: "a", 2: "b", 3: " ", 4: "c", 5: "d", 6: "x"}
    path = [0, 1, 1, 0, 2, 0, 0, 3, 0, 6, 0, 0, 5, 0]  # frames: a@1 b@4 space@7 x@9 d@12
    logp = np.full((len(path), 7), -10.0)
    logp[np.arange(len(path)), path] = 0.0
    step = TEACHER_HOP / 16_000
    times = greedy_word_times(logp, "ab cd", chars, blank=0)
    # "c" is not on the path: halfway between the space (frame 7) and "d" (frame 12)
    assert times == [(round(1 * step, 3), round(5 * step, 3)), (round(9.5 * step, 3), round(13 * step, 3))]


def test_chunks_take_consecutive_words_within_their_bounds():
    from tala.demo.distill import chunk_words

    ranges = chunk_words([(0.0, 0.1)] * 47, np.random.default_rng(0), 3, 10)
    assert ranges[0][0] == 0 and ranges[-1][1] == 47 and all(b == c for (_, b), (c, _) in zip(ranges, ranges[1:]))
    assert all(3 <= b - a <= 10 for a, b in ranges[:-1]) and 1 <= ranges[-1][1] - ranges[-1][0] <= 10


def test_joined_groups_hold_each_utterance_once_within_the_longest():
    from tala.demo.distill import join_groups

    durations = list(np.random.default_rng(3).uniform(1.0, 27.0, size=300)) + [31.0]
    groups = join_groups(durations, np.random.default_rng(0), 15.0, 29.0)
    assert sorted(i for g in groups for i in g) == list(range(300)), "each once; the one over 29 s left out"
    totals = [sum(durations[i] for i in g) for g in groups]
    assert max(totals) <= 29.0 and np.median(totals) >= 15.0, totals


def test_joined_clips_carry_their_words_and_times(tmp_path):
    """Two timed utterances joined: the audio end to end, the texts joined, the second's word times
    moved by the first's length."""
    from tala.demo.distill import stage_joined

    rate, rows = 16_000, []
    for i, (seconds, text, times) in enumerate([(2.0, "a b", [[0.1, 0.5], [0.9, 1.8]]),
                                                 (3.0, "c", [[0.5, 2.5]])]):  # fmt: skip
        sf.write(tmp_path / f"u{i}.wav", np.full(int(seconds * rate), 0.1 * (i + 1), np.float32), rate)
        rows.append(json.dumps({"audio": f"u{i}.wav", "text": text, "duration": seconds, "word_times": times}))
    (tmp_path / "train.timed.jsonl").write_text("\n".join(rows) + "\n")
    out = stage_joined({"smo": tmp_path / "train.timed.jsonl"}, seed=0, shortest_s=4.0, longest_s=6.0)
    (record,) = [json.loads(line) for line in out["smo"].read_text().splitlines()]
    audio, _ = sf.read(tmp_path / record["audio"], dtype="float32")
    assert len(audio) == 5 * rate and record["duration"] == 5.0
    first = 2.0 if record["text"] == "a b c" else 3.0
    assert record["text"] in ("a b c", "c a b")
    if record["text"] == "a b c":
        assert record["word_times"] == [[0.1, 0.5], [0.9, 1.8], [2.5, 4.5]]
    else:
        assert record["word_times"] == [[0.5, 2.5], [3.1, 3.5], [3.9, 4.8]]
    assert abs(float(audio[int(first * rate) + 10]) - (0.2 if first == 2.0 else 0.1)) < 1e-3, "the second clip follows"



@pytest.mark.parametrize("present, trained", [((), ["easy", "full", "joined", "narrative", "more"]),
                                              (("joined",), ["narrative", "more"]), (("easy", "more"), [])])
def test_speechllm_recipe_runs_the_decoder_stages_after_the_last_one_made(tmp_path, monkeypatch, present, trained):
    """Each stage starts from the one before; the stages before the last whose output exists are
    not run again (a work folder may keep only the last one); the prose joins the training and
    validation of the stage after the joined clips, and the more utterances the last one's
    training."""
    import tala.finetune.speechllm as trainer
    from tala.demo.speechllm_recipe import DECODER_STAGES, SpeechLLMRecipe, stage_speechllm

    calls = []

    def fake_train(data, out, settings, valid_manifests=(), start=None, encoder=None, **_):
        calls.append((out.name, start.name if start else None, [p.name for p in data],
                      [p.name for p in valid_manifests]))

    monkeypatch.setattr(trainer, "train", fake_train)
    for stage in present:
        (tmp_path / "models" / DECODER_STAGES[stage]).mkdir(parents=True)
        (tmp_path / "models" / DECODER_STAGES[stage] / "speechllm.json").write_text("{}")
    manifests = {lang: {"valid": tmp_path / f"{lang}-valid.jsonl"} for lang in ("smo", "por")}
    folders = stage_speechllm(
        tmp_path, manifests, {lang: tmp_path / f"{lang}-easy.jsonl" for lang in manifests},
        {lang: tmp_path / f"{lang}-timed.jsonl" for lang in manifests},
        {lang: tmp_path / f"{lang}-joined.jsonl" for lang in manifests},
        {"por": {"narrative": tmp_path / "por-narrative.jsonl", "narrative-valid": tmp_path / "por-nv.jsonl"}},
        {lang: tmp_path / f"{lang}-more.jsonl" for lang in manifests},
        tmp_path / "encoder", tmp_path / "decoder", SpeechLLMRecipe(), 0, progress=False)  # fmt: skip
    assert list(folders) == list(DECODER_STAGES) and [c[0] for c in calls] == [DECODER_STAGES[s] for s in trained]
    names = list(DECODER_STAGES.values())
    previous = {stage: (names[i - 1] if i else None) for i, stage in enumerate(DECODER_STAGES)}
    assert [c[1] for c in calls] == [previous[s] for s in trained]
    prose = ["smo-timed.jsonl", "smo-joined.jsonl", "por-timed.jsonl", "por-joined.jsonl", "por-narrative.jsonl"]
    expected = {"narrative": prose, "more": prose + ["smo-more.jsonl", "por-more.jsonl"]}
    for (_, _, data, valid), stage in zip(calls, trained):
        if stage in expected:
            assert data == expected[stage]
            assert valid == ["smo-valid.jsonl", "por-valid.jsonl", "por-nv.jsonl"]
        else:
            assert valid == ["smo-valid.jsonl", "por-valid.jsonl"]


@pytest.mark.parametrize("present, trained", [((), ["easy", "chunks", "full", "joint", "joint2"]),
                                              (("full",), ["joint", "joint2"]), (("joint",), ["joint2"]),
                                              (("easy", "joint2"), [])])
def test_moonshine_recipe_runs_the_stages_after_the_last_one_made(tmp_path, monkeypatch, present, trained):
    """Each stage starts from the one before (the first from the position stage's encoder); the
    stages before the last whose output exists are not run again; the joint stages train the
    encoder too ("all", nothing cached) on the full stage's data, the second in a new order."""
    import tala.finetune.moonshine as trainer
    from tala.demo.moonshine_recipe import DECODER_STAGES, MoonshineRecipe, stage_moonshine

    calls = []

    def fake_train(data, out, settings, start, valid_manifests=(), **_):
        calls.append((out.name, Path(start).name, [p.name for p in data], settings.train, settings.cache_frames,
                      settings.seed))

    monkeypatch.setattr(trainer, "train", fake_train)
    for stage in present:
        (tmp_path / "models" / DECODER_STAGES[stage]).mkdir(parents=True)
        (tmp_path / "models" / DECODER_STAGES[stage] / "model.safetensors").write_bytes(b"")
    langs = ("smo", "por")
    named = {kind: {lang: tmp_path / f"{lang}-{kind}.jsonl" for lang in langs} for kind in ("easy", "chunks", "timed")}
    folders = stage_moonshine(tmp_path, {lang: {"valid": tmp_path / f"{lang}-valid.jsonl"} for lang in langs},
                              named["easy"], named["chunks"], named["timed"], {"por": tmp_path / "por-more.jsonl"},
                              tmp_path / "position", MoonshineRecipe(), 0, progress=False)  # fmt: skip
    assert list(folders) == list(DECODER_STAGES) and [c[0] for c in calls] == [DECODER_STAGES[s] for s in trained]
    names = ["position", *DECODER_STAGES.values()]
    assert [c[1] for c in calls] == [names[list(DECODER_STAGES).index(s)] for s in trained]
    full = ["smo-timed.jsonl", "por-timed.jsonl", "por-more.jsonl"]
    for (_, _, data, mode, cached, seed), stage in zip(calls, trained):
        assert (mode, cached) == (("all", False) if stage.startswith("joint") else ("decoder", True))
        assert seed == (1 if stage == "joint2" else 0)
        if stage in ("full", "joint", "joint2"):
            assert data == full


def test_moonshine_work_folder_unpacked_from_the_shipped_stand_in_goes_on_after_its_last_stage(tmp_path):
    """``--unpack``: the shipped model in the folder of the stage that made it (and as the encoder's
    and position's outputs), every stage's log where the packer reads it, the records packed
    again as they were; the recipe then runs only the stages after that one."""
    from tala.demo.moonshine import LAST_LOG, unpack
    from tala.demo.moonshine_recipe import DECODER_STAGES
    from tala.training import LOG_FILE, checkpoint_root

    info = json.loads((MOONSHINE / "training.json").read_text(encoding="utf-8"))
    made = info["stages"]["moonshine"].get("stage", "full")
    written = unpack(MOONSHINE, tmp_path, "resources/demo/moonshine@abc1234")
    models = tmp_path / "models"
    later = list(DECODER_STAGES)[list(DECODER_STAGES).index(made) + 1:]
    assert {p.name for p in written} == ({"moonshine-init", "moonshine-position"} |
                                         {DECODER_STAGES[s] for s in DECODER_STAGES if s not in later})  # fmt: skip
    shipped = (MOONSHINE / "model.safetensors").read_bytes()
    for name in ("moonshine-init", "moonshine-position", DECODER_STAGES[made]):
        assert (models / name / "model.safetensors").read_bytes() == shipped
    for stage in DECODER_STAGES:
        if stage != made:
            assert not (models / DECODER_STAGES[stage] / "model.safetensors").exists()
    encoder = json.loads((models / "moonshine-init" / "distillation.json").read_text())
    assert encoder == {"final_eval": info["stages"]["encoder"]["final_eval"],
                       "unpacked_from": "resources/demo/moonshine@abc1234"}
    last = json.loads((models / DECODER_STAGES[made] / "training.json").read_text())
    assert last["final_eval"] == info["stages"]["moonshine"]["final_eval"] and last["versions"] == info["versions"]
    last_log = checkpoint_root(models / DECODER_STAGES[made]) / LOG_FILE
    assert last_log.read_bytes() == (MOONSHINE / LAST_LOG).read_bytes()
    assert (checkpoint_root(models / "moonshine-position") / LOG_FILE).read_bytes() == \
        (MOONSHINE / "position_log.jsonl").read_bytes()  # fmt: skip
    before = {p: p.stat().st_mtime_ns for p in models.rglob("*")}
    assert unpack(MOONSHINE, tmp_path, "x") == [] and before == {p: p.stat().st_mtime_ns for p in models.rglob("*")}


# --------------------------------------------------------------------------- the shipped stand-ins


def test_speechllm_stand_in_is_complete_small_and_loads_with_plain_transformers_and_peft():
    from tala.models.speechllm import load_speechllm

    names = {p.name for p in SPEECHLLM.iterdir()}
    assert {"speechllm.json", "projector.safetensors", "encoder", "decoder", "README.md", "eval.json",
            "training.json", "training_log.jsonl", "narrative_log.jsonl", "joined_log.jsonl", "full_log.jsonl",
            "easy_log.jsonl", "encoder_log.jsonl"} <= names  # fmt: skip
    size = sum(p.stat().st_size for p in SPEECHLLM.rglob("*") if p.is_file())
    assert size < 25e6, size
    config = json.loads((SPEECHLLM / "speechllm.json").read_text())
    assert config["encoder"] == "encoder" and config["decoder"] == "decoder", "relative: the folder moves whole"
    model, tokenizer, _ = load_speechllm(SPEECHLLM)
    assert type(model.encoder).__name__ == "WhisperEncoder" and model.encoder.config.max_source_positions == 1500
    assert type(model.decoder).__name__ == "LlamaForCausalLM" and tokenizer.eos_token == "</s>"


def test_moonshine_stand_in_is_complete_small_and_loads_as_the_hubs():
    from transformers import AutoFeatureExtractor, AutoTokenizer, MoonshineForConditionalGeneration

    names = {p.name for p in MOONSHINE.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json", "README.md", "eval.json",
            "training.json", "training_log.jsonl", "encoder_log.jsonl", "position_log.jsonl"} <= names  # fmt: skip
    assert sum(p.stat().st_size for p in MOONSHINE.iterdir()) < 20e6
    model = MoonshineForConditionalGeneration.from_pretrained(MOONSHINE)
    assert model.config.max_position_embeddings == 194, "moonshine-tiny's transcript bound"
    AutoFeatureExtractor.from_pretrained(MOONSHINE)
    assert AutoTokenizer.from_pretrained(MOONSHINE).eos_token_id == model.config.eos_token_id


@pytest.mark.parametrize("kind, folder", [("speechllm", SPEECHLLM), ("moonshine", MOONSHINE)])
def test_recorded_evaluation_is_reproduced_on_a_chapter(kind, folder, tmp_path):
    """Re-transcribing one demo chapter's verses gives the CER the stand-in's eval.json recorded."""
    from tala.finetune.evaluate_asr import System, recognizer

    recorded = json.loads((folder / "eval.json").read_text())
    entry = recorded["chapters"][0]
    model = recognizer(kind, System("stand-in", str(folder), None), None, "cpu", "float32")
    truths = [t for t in demo_truths(DEMO, entry["lang"]) if t["recording"] == entry["recording"]]
    report = evaluate_verses(model, str(folder), DEMO, tmp_path, [entry["lang"]], truths=truths)
    assert report["chapters"][0]["cer"] == pytest.approx(entry["cer"], abs=1e-4)
    samples, _ = sf.read(chapter_wav(DEMO, entry["lang"], truths[0], tmp_path), dtype="float32")
    assert len(verse_clips(samples, truths[0])) == entry["verses"]


@pytest.mark.parametrize("module, folder", [("tala.demo.speechllm", SPEECHLLM), ("tala.demo.moonshine", MOONSHINE)])
def test_shipped_card_is_what_the_recipe_writes_of_its_records(module, folder):
    """Each stand-in's README is ``card()`` of its own ``training.json`` and ``eval.json``: a card
    edited by hand, or a ``card()`` that no longer reads the records it ships, fails here."""
    import importlib

    card = importlib.import_module(module).card
    info = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    report = json.loads((folder / "eval.json").read_text(encoding="utf-8"))
    assert card(info, report) == (folder / "README.md").read_text(encoding="utf-8")
