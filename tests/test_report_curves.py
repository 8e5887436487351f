"""tala.report.curves: a trainer's log drawn as learning curves (what TensorBoard would show)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from tala.report.curves import PANEL_W, curves_of, curves_svg, read_log

SVG = "{http://www.w3.org/2000/svg}"


def _two_phases() -> list[dict]:
    """The MMS adapter's log: lm_head for 10 steps, then the adapters for 20, whose step 5 is kept."""
    log = [{"phase": "lm_head", "step": 0, "event": "start"},
           {"phase": "lm_head", "step": 0, "eval_loss": 1.0, "eval_cer": 0.5},
           {"phase": "lm_head", "step": 10, "loss": 0.9},
           {"phase": "lm_head", "step": 10, "eval_loss": 0.8, "eval_cer": 0.4},
           {"phase": "adapter", "step": 0, "event": "start"},
           {"phase": "adapter", "step": 0, "eval_loss": 0.8, "eval_cer": 0.4},
           {"phase": "adapter", "step": 5, "loss": 0.7},
           {"phase": "adapter", "step": 5, "eval_loss": 0.6, "eval_cer": 0.2},
           {"phase": "adapter", "step": 20, "loss": 0.5},
           {"phase": "adapter", "step": 20, "eval_loss": 0.7, "eval_cer": 0.3},
           {"phase": "adapter", "step": 20, "event": "best", "best_step": 5, "eval_cer": 0.2}]  # fmt: skip
    return log


def test_phases_are_laid_end_to_end_and_the_kept_step_is_the_last_phases_best():
    curves = curves_of(_two_phases())
    assert curves.phases == [(10, "adapter")] and curves.last == 30 and curves.kept == 15
    assert curves.losses["training loss"] == [(10, 0.9, 0), (15, 0.7, 1), (30, 0.5, 1)]
    assert [x for x, _, _ in curves.rates["validation CER"]] == [0, 10, 10, 15, 30]
    assert curves.rates["validation CER"][3][1] == 20.0, "rates in %"
    assert "validation WER" not in curves.rates, "a trainer that logs no WER has no WER line"
    # without a best event the last step's weights are the ones kept (run_keeping_best's rule)
    assert curves_of(_two_phases()[:-1]).kept == 30


def test_the_svg_has_a_line_per_series_and_phase_and_marks_the_kept_step():
    svg = curves_svg(_two_phases())
    root = ET.fromstring(svg)  # well-formed, one element to inline in a page
    assert root.tag == f"{SVG}svg" and root.get("width") == str(2 * PANEL_W)
    titles = [line.find(f"{SVG}title").text for line in root.iter(f"{SVG}polyline")]
    # two panels: training and validation loss, validation CER; each drawn once per phase
    assert sorted(titles) == sorted(["training loss"] * 2 + ["validation loss"] * 2 + ["validation CER"] * 2)
    marks = {line.find(f"{SVG}title").text: line for line in root.iter(f"{SVG}line") if line.find(f"{SVG}title")
             is not None}  # fmt: skip
    kept, begins = marks["step 15: the weights kept"], marks["phase adapter begins"]
    assert float(kept.get("x1")) > float(begins.get("x1")), "the kept step is after the second phase began"
    assert "step 15" in root.get("aria-label")


def test_a_log_without_numbers_draws_nothing_and_a_cut_line_is_skipped(tmp_path):
    assert curves_svg([{"step": 0, "event": "start"}]) == ""
    log = tmp_path / "training_log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in _two_phases()) + '{"step": 21, "lo', encoding="utf-8")
    assert read_log(log) == _two_phases(), "a line cut by a kill is not a record"
