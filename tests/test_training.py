"""tala.training, the trainers' shared core, on tiny torch models: checkpoints of several modules and
optimizers (a GAN's), atomicity, keep-N plus the best, resume with the log cut back, the step loop,
early stopping, the resumable sampler and the lr schedules."""

from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tala.errors import InputError
from tala.training import (
    LOG_FILE,
    POSITION_FILE,
    Cadence,
    DataPosition,
    Evaluation,
    StepResult,
    StopRule,
    StopState,
    checkpoint_dirs,
    duration_batches,
    iterate_batches,
    load_checkpoint,
    restore_best,
    new_position,
    pack_batches,
    resume,
    run_loop,
    save_checkpoint,
    should_stop,
    trim_log,
    update_stopping,
    warmup_decay_factor,
    warmup_decay_schedule,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gan(seed: int) -> tuple[dict, dict]:
    """A generator and a discriminator, each with its optimizer and schedule: the two-optimizer case."""
    torch.manual_seed(seed)
    generator = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 4))
    discriminator = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    g_opt = torch.optim.AdamW(generator.parameters(), lr=1e-2)
    d_opt = torch.optim.AdamW(discriminator.parameters(), lr=2e-2)
    modules = {"generator": generator, "discriminator": discriminator}
    states = {"generator_optimizer": g_opt, "discriminator_optimizer": d_opt,
              "generator_scheduler": warmup_decay_schedule(g_opt, 2, 20),
              "discriminator_scheduler": warmup_decay_schedule(d_opt, 3, 20, "linear", 0.1)}  # fmt: skip
    return modules, states


def gan_step(modules: dict, states: dict) -> float:
    """One alternating update; it draws from torch's generator (noise, dropout)."""
    g, d = modules["generator"], modules["discriminator"]
    real = torch.randn(8, 4) + 1.0
    fake = g(torch.randn(8, 4))
    d_loss = torch.nn.functional.softplus(d(fake.detach())).mean() + torch.nn.functional.softplus(-d(real)).mean()
    states["discriminator_optimizer"].zero_grad()
    d_loss.backward()
    states["discriminator_optimizer"].step()
    g_loss = torch.nn.functional.softplus(-d(fake)).mean()
    states["generator_optimizer"].zero_grad()
    g_loss.backward()
    states["generator_optimizer"].step()
    states["generator_scheduler"].step()
    states["discriminator_scheduler"].step()
    return float(g_loss.detach())


def draws() -> tuple:
    return float(torch.rand(1)), float(np.random.rand()), random.random()


def test_checkpoint_round_trip_of_two_modules_two_optimizers_two_schedulers_and_the_rng(tmp_path):
    modules, states = gan(0)
    for _ in range(3):
        gan_step(modules, states)
    path = save_checkpoint(tmp_path, 3, modules, states, {"step": 3, "note": "x"}, keep=2)
    expected_draws = draws()
    expected_losses = [gan_step(modules, states) for _ in range(3)]

    fresh_modules, fresh_states = gan(1)
    draws()  # move the generators on
    position = load_checkpoint(path, fresh_modules, fresh_states)
    assert position == {"step": 3, "note": "x"}
    assert draws() == expected_draws
    assert [gan_step(fresh_modules, fresh_states) for _ in range(3)] == expected_losses
    for name, module in modules.items():
        for key, tensor in module.state_dict().items():
            assert torch.equal(tensor, fresh_modules[name].state_dict()[key]), (name, key)
    assert fresh_states["discriminator_scheduler"].last_epoch == 6
    assert fresh_states["discriminator_scheduler"].get_last_lr() == states["discriminator_scheduler"].get_last_lr()
    assert {p.name for p in path.iterdir()} == {"generator.safetensors", "discriminator.safetensors",
                                               "trainer_state.pt", POSITION_FILE}  # fmt: skip
    torch.load(path / "trainer_state.pt", weights_only=True)


def test_a_missing_module_or_state_names_the_checkpoint(tmp_path):
    modules, states = gan(0)
    path = save_checkpoint(tmp_path, 1, {"generator": modules["generator"]}, {}, {"step": 1}, keep=1)
    with pytest.raises(InputError, match="discriminator.safetensors"):
        load_checkpoint(path, modules, {})
    with pytest.raises(InputError, match="generator_optimizer"):
        load_checkpoint(path, {"generator": modules["generator"]},
                        {"generator_optimizer": states["generator_optimizer"]})  # fmt: skip
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path, 2, {}, {"position": states["generator_optimizer"]}, {"step": 2}, keep=1)


def test_a_checkpoint_without_its_completion_marker_is_never_resumed(tmp_path):
    modules, states = gan(0)
    save_checkpoint(tmp_path, 4, modules, states, {"step": 4}, keep=5)
    save_checkpoint(tmp_path, 8, modules, states, {"step": 8}, keep=5)
    (tmp_path / "step-000008" / POSITION_FILE).unlink()  # as if the machine died before the marker
    (tmp_path / ".step-000012.abc.part").mkdir()  # a killed save's temporary folder
    assert checkpoint_dirs(tmp_path) == [(4, tmp_path / "step-000004")]
    resumed = resume(tmp_path, new_position(), *gan(1), start={})
    assert resumed.step == 4 and resumed.checkpoint == tmp_path / "step-000004"
    save_checkpoint(tmp_path, 9, modules, states, {"step": 9}, keep=5)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["step-000004", "step-000009"]


def test_a_save_that_fails_half_way_leaves_the_previous_checkpoints_alone(tmp_path, monkeypatch):
    modules, states = gan(0)
    save_checkpoint(tmp_path, 2, modules, states, {"step": 2}, keep=1)

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, 4, modules, states, {"step": 4}, keep=1)
    assert checkpoint_dirs(tmp_path) == [(2, tmp_path / "step-000002")]
    assert [p.name for p in tmp_path.iterdir()] == ["step-000002"]


def test_keeps_the_newest_n_and_the_best(tmp_path):
    modules, states = gan(0)
    for step in range(1, 7):
        save_checkpoint(tmp_path, step, modules, states, {"step": step}, keep=2, best_step=3)
    assert [step for step, _ in checkpoint_dirs(tmp_path)] == [3, 5, 6]
    save_checkpoint(tmp_path, 7, modules, states, {"step": 7}, keep=0)
    assert [step for step, _ in checkpoint_dirs(tmp_path)] == [7], "at least the newest is kept"


def test_resume_cuts_the_log_back_to_the_checkpoint_and_refuses_other_settings(tmp_path):
    modules, states = gan(0)
    fresh = resume(tmp_path, new_position(settings={"lr": 1}), modules, states, start={"model": "m"})
    assert fresh.step is None and fresh.checkpoint is None
    log = tmp_path / LOG_FILE
    assert [json.loads(line) for line in log.read_text().splitlines()] == [{"step": 0, "event": "start", "model": "m"}]
    with log.open("a") as handle:
        handle.write('{"step": 2, "loss": 1.0}\n{"step": 4, "loss": 0.5}\n{"step": 6, "lo')
    save_checkpoint(tmp_path, 4, modules, states, {**new_position(settings={"lr": 1}), "step": 4}, keep=2)
    resumed = resume(tmp_path, new_position(settings={"lr": 1}), modules, states, start={"model": "m"},
                     match=("settings",))  # fmt: skip
    assert resumed.step == 4
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [0, 2, 4, 4]
    assert json.loads(log.read_text().splitlines()[-1])["event"] == "resume"
    with pytest.raises(InputError, match="other settings"):
        resume(tmp_path, new_position(settings={"lr": 2}), modules, states, start={}, match=("settings",))


def test_a_fresh_start_after_a_kill_before_the_first_checkpoint_starts_a_fresh_log(tmp_path):
    log = tmp_path / LOG_FILE
    log.write_text('{"step": 0, "event": "start"}\n{"step": 2, "loss": 1.0}\n')
    resume(tmp_path, new_position(), *gan(0), start={"model": "m"})
    assert [json.loads(line) for line in log.read_text().splitlines()] == [{"step": 0, "event": "start", "model": "m"}]


def test_trim_log_keeps_lines_up_to_the_step_and_drops_a_cut_line(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 0}\n{"step": 3}\n{"step": 5}\n{"st')
    trim_log(log, 3)
    assert log.read_text() == '{"step": 0}\n{"step": 3}\n'
    trim_log(log, None)
    assert log.read_text() == ""


# --------------------------------------------------------------------------- the step loop


def regression(seed: int = 0):
    """A tiny model with dropout, its data, a train step and an evaluation, for run_loop."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Dropout(0.1), torch.nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    scheduler = warmup_decay_schedule(optimizer, 3, 30)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(40, 3)), dtype=torch.float32)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    durations = list(rng.uniform(1, 5, 40))

    def train_step(index: list[int]) -> StepResult:
        loss = torch.nn.functional.mse_loss(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        return StepResult({"loss": loss.item()}, {"lr": scheduler.get_last_lr()[0]},
                          audio_s=sum(durations[i] for i in index))  # fmt: skip

    def evaluate(step: int) -> Evaluation:
        model.eval()
        with torch.no_grad():
            mse = float(torch.nn.functional.mse_loss(model(x), y))
        model.train()
        return Evaluation({"mse": mse})

    def batches_of_epoch(epoch: int) -> list[list[int]]:
        return duration_batches(durations, 7, epoch, batch_seconds=20.0, max_batch_size=6)

    return {"model": model}, {"optimizer": optimizer, "scheduler": scheduler}, train_step, evaluate, batches_of_epoch


class Killed(Exception):
    pass


def loop(root: Path, cadence: Cadence, kill_at: int | None = None, stop_rule: StopRule | None = None,
         calls: list | None = None):
    modules, states, train_step, evaluate, batches_of_epoch = regression()
    resumed = resume(root, new_position(), modules, states, start={"model": "regression"})

    def on_step(step: int, result: StepResult) -> None:
        if calls is not None:
            calls.append(step)
        if step == kill_at:
            raise Killed

    position, final = run_loop(root, resumed.position, cadence, batches_of_epoch, train_step, evaluate, modules,
                               states, stop_rule=stop_rule, on_step=on_step, progress=False)  # fmt: skip
    return modules["model"], position, final


def log_records(root: Path) -> list[dict]:
    timing = {"steps_per_s", "audio_s_per_s", "elapsed_s"}
    return [{k: v for k, v in json.loads(line).items() if k not in timing}
            for line in (root / LOG_FILE).read_text().splitlines() if json.loads(line).get("event") != "resume"]


def test_a_loop_killed_and_resumed_ends_like_an_uninterrupted_one(tmp_path):
    cadence = Cadence(max_steps=30, log_every=5, eval_every=10, checkpoint_every=6, keep_checkpoints=2)
    reference, ref_position, ref_final = loop(tmp_path / "ref", cadence)
    with pytest.raises(Killed):
        loop(tmp_path / "run", cadence, kill_at=15)
    assert [step for step, _ in checkpoint_dirs(tmp_path / "run")] == [6, 12]
    model, position, final = loop(tmp_path / "run", cadence)
    for key, tensor in reference.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[key]), key
    assert log_records(tmp_path / "run") == log_records(tmp_path / "ref")
    assert final == ref_final and position["step"] == 30 and position["epoch"] == ref_position["epoch"] > 1
    records = log_records(tmp_path / "ref")
    assert [r["step"] for r in records if "loss" in r] == [5, 10, 15, 20, 25, 30]
    evals = [r for r in records if "eval_mse" in r]
    assert [r["step"] for r in evals] == [10, 20, 30] and round(final.metrics["mse"], 5) == evals[-1]["eval_mse"]
    assert evals[-1]["eval_mse"] < 0.5 * evals[0]["eval_mse"], "the model learns"


def test_early_stopping_ends_the_loop_keeps_the_best_and_stays_stopped(tmp_path):
    cadence = Cadence(max_steps=60, log_every=5, eval_every=5, checkpoint_every=100, keep_checkpoints=1)
    # An evaluation that gets worse after step 10 (what the metric is does not matter to the rule).
    scores = {5: 3.0, 10: 2.0, 15: 2.5, 20: 1.99, 25: 2.2}
    modules, states, train_step, _, batches_of_epoch = regression()
    rule = StopRule("score", "min", patience=3, min_delta=0.05)

    def evaluate(step: int) -> Evaluation:
        return Evaluation({"score": scores[step]})

    calls: list[int] = []

    def run():
        resumed = resume(tmp_path, new_position(), modules, states, start={})
        return run_loop(tmp_path, resumed.position, cadence, batches_of_epoch, train_step, evaluate, modules, states,
                        stop_rule=rule, on_step=lambda step, _: calls.append(step), progress=False)  # fmt: skip

    position, final = run()
    assert position["step"] == 25 and final.metrics == {"score": 2.2}
    assert position["stopping"] == {"best": 2.0, "best_step": 10, "bad_evals": 3}
    assert [step for step, _ in checkpoint_dirs(tmp_path)] == [10, 25], "the best and the newest"
    assert json.loads((tmp_path / LOG_FILE).read_text().splitlines()[-1])["event"] == "early_stop"
    steps_before = list(calls)
    position_again, final_again = run()
    assert calls == steps_before, "a rerun after an early stop trains no further"
    assert final_again == final and position_again["step"] == 25


def test_early_stopping_state_machine():
    rule = StopRule("cer", "min", patience=2, min_delta=0.01)
    state = StopState()
    for step, value in [(1, 0.50), (2, 0.45), (3, 0.445), (4, 0.46)]:
        state = update_stopping(rule, state, step, value)
    assert state == StopState(0.45, 2, 2) and should_stop(rule, state)
    assert update_stopping(rule, state, 5, 0.30) == StopState(0.30, 5, 0)

    higher = StopRule("accuracy", "max", patience=1)
    state = update_stopping(higher, StopState(), 1, 0.8)
    assert update_stopping(higher, state, 2, 0.9) == StopState(0.9, 2, 0)
    assert should_stop(higher, update_stopping(higher, state, 2, 0.7))
    assert update_stopping(higher, StopState(), 1, math.nan) == StopState(None, None, 1), "NaN never improves"
    assert not should_stop(StopRule("cer", patience=0), StopState(0.1, 1, 99)), "patience 0 never stops"
    with pytest.raises(ValueError):
        StopRule("cer", "lowest")


# --------------------------------------------------------------------------- batches and schedules


def test_duration_batches_are_seeded_complete_and_bounded():
    durations = list(np.random.default_rng(0).uniform(1, 20, 300))
    first = duration_batches(durations, 3, 0, batch_seconds=60.0, max_batch_size=8, max_duration_s=18.0)
    assert first == duration_batches(durations, 3, 0, batch_seconds=60.0, max_batch_size=8, max_duration_s=18.0)
    assert first != duration_batches(durations, 3, 1, batch_seconds=60.0, max_batch_size=8, max_duration_s=18.0)
    assert first != duration_batches(durations, 4, 0, batch_seconds=60.0, max_batch_size=8, max_duration_s=18.0)
    assert sorted(i for batch in first for i in batch) == [i for i, d in enumerate(durations) if d <= 18.0]
    for batch in first:
        assert len(batch) <= 8 and (len(batch) == 1 or len(batch) * max(durations[i] for i in batch) <= 60.0)


def test_pack_batches_cuts_a_sorted_order_by_padded_seconds():
    durations = [1.0, 2.0, 3.0, 10.0, 30.0]
    assert pack_batches(range(5), durations, batch_seconds=8.0, max_batch_size=4) == [[0, 1], [2], [3], [4]]
    assert pack_batches(range(3), durations, batch_seconds=100.0, max_batch_size=2) == [[0, 1], [2]]


def test_the_sampler_resumed_mid_epoch_gives_the_remaining_batches():
    durations = list(np.random.default_rng(1).uniform(1, 10, 50))

    def batches_of_epoch(epoch: int) -> list[list[int]]:
        return duration_batches(durations, 11, epoch, batch_seconds=25.0, max_batch_size=4)

    per_epoch = len(batches_of_epoch(0))
    stream = iterate_batches(batches_of_epoch)
    taken = [next(stream) for _ in range(per_epoch + 3)]  # into the second epoch
    for cut in (1, per_epoch - 1, per_epoch, per_epoch + 2):
        _, _, after = taken[cut - 1]
        resumed = iterate_batches(batches_of_epoch, after)
        assert [next(resumed)[1] for _ in range(len(taken) - cut)] == [batch for _, batch, _ in taken[cut:]]
    assert taken[per_epoch - 1][2] == DataPosition(1, 0) and taken[per_epoch][0] == DataPosition(1, 0)
    assert taken[0][1] != next(iterate_batches(batches_of_epoch, DataPosition(1, 0)))[1]


def test_warmup_then_cosine_linear_or_no_decay():
    assert [warmup_decay_factor(step, 3, 13) for step in range(3)] == [0.25, 0.5, 0.75]
    assert warmup_decay_factor(3, 3, 13) == 1.0
    assert warmup_decay_factor(8, 3, 13) == pytest.approx(0.5)  # half way: cos(pi/2)
    assert warmup_decay_factor(8, 3, 13, min_ratio=0.2) == pytest.approx(0.6)
    assert warmup_decay_factor(13, 3, 13, min_ratio=0.2) == pytest.approx(0.2)
    assert warmup_decay_factor(50, 3, 13, min_ratio=0.2) == pytest.approx(0.2), "flat after max_steps"
    assert warmup_decay_factor(5, 0, 10, "linear") == pytest.approx(0.5)
    assert warmup_decay_factor(6, 3, 13, "linear") < warmup_decay_factor(6, 3, 13, "cosine")
    assert [warmup_decay_factor(step, 2, 10, "constant", 0.2) for step in (0, 2, 9, 20)] == [1 / 3, 1.0, 1.0, 1.0]


def test_the_schedule_sets_the_lr_and_its_state_loads_with_weights_only():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = warmup_decay_schedule(optimizer, 2, 10, "cosine", 0.1)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.1 * warmup_decay_factor(step, 2, 10, "cosine", 0.1) for step in range(10)])
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    other = warmup_decay_schedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), 2, 10, "cosine", 0.1)
    other.load_state_dict(torch.load(buffer, weights_only=True))
    assert other.last_epoch == 10 and other.get_last_lr() == scheduler.get_last_lr()
    with pytest.raises(ValueError):
        warmup_decay_schedule(optimizer, 2, 10, "step")


def test_restore_best_loads_the_better_checkpoint_and_keeps_the_final_weights_on_ties(tmp_path):
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(1.0)
    save_checkpoint(tmp_path, 2, {"net": net}, {}, {"step": 2}, keep=2)
    with torch.no_grad():
        net.weight.fill_(5.0)
    rule = StopRule("loss")
    position = {"step": 4, "stopping": {"best": 0.1, "best_step": 2, "bad_evals": 1}}
    kept = restore_best(tmp_path, position, Evaluation({"loss": 0.5}), {"net": net}, rule,
                        lambda step: Evaluation({"loss": 0.1 if step == 2 else 9.0}))  # fmt: skip
    assert float(net.weight.detach()[0, 0]) == 1.0 and kept.metrics["loss"] == 0.1 and position["best"] == {"step": 2, "loss": 0.1}
    with torch.no_grad():
        net.weight.fill_(5.0)
    tie = {"step": 4, "stopping": {"best": 0.5, "best_step": 2, "bad_evals": 1}}
    final = Evaluation({"loss": 0.5})
    assert restore_best(tmp_path, tie, final, {"net": net}, rule, lambda step: Evaluation({"loss": 9.0})) is final
    assert float(net.weight.detach()[0, 0]) == 5.0 and tie["best"] == {"step": 4, "loss": 0.5}
