"""A trainer's learning curves as an inline SVG for the report (what TensorBoard shows a Hugging
Face user, from the ``training_log.jsonl`` every tala trainer writes).

Two panels side by side: the losses (training, and validation where there is a validation split)
and the validation error rates (CER, and WER where the trainer logs it), by optimizer step. A
trainer of several phases (the MMS adapter's ``lm_head`` then ``adapter``) has them laid end to end,
a dotted line where each begins; the step whose weights were kept (the last phase's ``best`` event,
else its last step) is a dashed line. Plain SVG, no plotting library: the page stays one file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

PANEL_W, PANEL_H = 320, 190
MARGIN = {"left": 46, "right": 10, "top": 24, "bottom": 34}
COLOURS = {"training loss": "#1f77b4", "validation loss": "#ff7f0e", "validation CER": "#2ca02c",
           "validation WER": "#d62728"}  # fmt: skip


@dataclass
class Curves:
    """The series (name -> [(x, value, phase index)]) of a log, x being the step counted across
    phases (a line is not drawn from one phase into the next)."""

    losses: dict[str, list[tuple[int, float, int]]] = field(default_factory=dict)
    rates: dict[str, list[tuple[int, float, int]]] = field(default_factory=dict)
    phases: list[tuple[int, str]] = field(default_factory=list)  # (first x, name) of each phase after the first
    kept: int = 0  # the step whose weights were kept
    last: int = 0

    @property
    def empty(self) -> bool:
        return not any(self.losses.values()) and not any(self.rates.values())


def read_log(path: Path) -> list[dict]:
    """The records of a training log; a line that is not JSON (a log cut by a kill) is skipped."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def curves_of(records: Iterable[dict]) -> Curves:
    """The series of a training log's records, each phase's steps after the previous phase's last."""
    curves, offset, phase, phase_end = Curves(), 0, None, 0
    kept_step, kept_phase = None, None
    for record in records:
        name = record.get("phase")
        if name != phase:
            if phase is not None:  # a new phase starts after the last step of the one before
                offset = phase_end
                curves.phases.append((offset, str(name)))
            phase = name
        x = offset + record["step"]
        phase_end = max(phase_end, x)
        if record.get("event") == "best" and isinstance(record.get("best_step"), int):
            kept_step, kept_phase = offset + record["best_step"], name
            continue
        if "event" in record:
            continue
        part = len(curves.phases)
        if isinstance(record.get("loss"), (int, float)):
            curves.losses.setdefault("training loss", []).append((x, float(record["loss"]), part))
        if isinstance(record.get("eval_loss"), (int, float)):
            curves.losses.setdefault("validation loss", []).append((x, float(record["eval_loss"]), part))
        for key, label in (("eval_cer", "validation CER"), ("eval_wer", "validation WER")):
            if isinstance(record.get(key), (int, float)):
                curves.rates.setdefault(label, []).append((x, 100 * float(record[key]), part))
    curves.last = phase_end
    curves.kept = kept_step if kept_step is not None and kept_phase == phase else phase_end
    return curves


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round ticks from at or below ``low`` to the first at or above ``high``."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [math.floor(low / step) * step]
    while ticks[-1] < high - 1e-9 * step:
        ticks.append(ticks[-1] + step)
    return ticks


def _label(value: float) -> str:
    return f"{value:.3g}"


def _panel(x0: int, title: str, series: dict[str, list[tuple[int, float, int]]], last: int,
           marks: Sequence[tuple[int, str, str]], clip: float | None = None) -> str:
    """One panel at ``x0``: axes, ticks, a polyline per series, and the vertical ``marks`` (x, the
    line's dashes, what it marks)."""
    left, top = x0 + MARGIN["left"], MARGIN["top"]
    width, height = PANEL_W - MARGIN["left"] - MARGIN["right"], PANEL_H - MARGIN["top"] - MARGIN["bottom"]
    values = [v for points in series.values() for _, v, _ in points]
    low, high = min(values + [0.0]), max(values)
    if clip is not None:  # a rate can start far above the rest (an untrained start): cut the axis there
        high = min(high, clip)
    ticks = _ticks(low, high)
    low, high = ticks[0], max(ticks[-1], high)
    span_x = max(last, 1)

    def px(x: float) -> float:
        return left + width * x / span_x

    def py(v: float) -> float:
        return top + height * (1 - (min(v, high) - low) / (high - low or 1))

    parts = [f'<text x="{x0 + PANEL_W / 2:.0f}" y="14" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#999"/>']
    for tick in ticks:
        y = py(tick)
        parts.append(f'<line x1="{left - 3}" y1="{y:.1f}" x2="{left + width}" y2="{y:.1f}" stroke="#eee"/>'
                     f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end">{_label(tick)}</text>')
    for tick in _ticks(0, span_x):
        if tick <= span_x:
            parts.append(f'<text x="{px(tick):.1f}" y="{top + height + 14}" text-anchor="middle">{_label(tick)}</text>')
    parts.append(f'<text x="{left + width / 2:.0f}" y="{PANEL_H - 4}" text-anchor="middle">step</text>')
    for x, dashes, what in marks:
        parts.append(f'<line x1="{px(x):.1f}" y1="{top}" x2="{px(x):.1f}" y2="{top + height}" stroke="#666" '
                     f'stroke-dasharray="{dashes}"><title>{escape(what)}</title></line>')  # fmt: skip
    for row, (name, points) in enumerate(series.items()):
        colour = COLOURS.get(name, "#555")
        for part in sorted({p for _, _, p in points}):  # one line a phase
            line = [(x, v) for x, v, p in points if p == part]
            path = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in line)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"><title>'
                         f'{escape(name)}</title></polyline>')  # fmt: skip
            parts.extend(f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="2" fill="{colour}"/>' for x, v in line
                         if len(line) <= 12)  # a few points: each one shown
        parts.append(f'<text x="{left + width - 4}" y="{top + 12 + 12 * row}" text-anchor="end" fill="{colour}">'
                     f'{escape(name)}</text>')  # fmt: skip
    return "".join(parts)


def curves_svg(records: Iterable[dict]) -> str:
    """The learning curves of a training log's records as one SVG element ('' when it has none)."""
    curves = curves_of(records)
    if curves.empty:
        return ""
    marks = [(x, "1,3", f"phase {name} begins") for x, name in curves.phases]
    marks.append((curves.kept, "5,3", f"step {curves.kept}: the weights kept"))
    panels = [("loss", curves.losses, None), ("validation error rate, %", curves.rates, 100.0)]
    panels = [(t, s, c) for t, s, c in panels if any(s.values())]
    body = "".join(_panel(i * PANEL_W, title, series, curves.last, marks, clip)
                   for i, (title, series, clip) in enumerate(panels))  # fmt: skip
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{PANEL_W * len(panels)}" height="{PANEL_H}" '
            f'font-family="sans-serif" font-size="10" role="img" aria-label="learning curves; the weights kept: '
            f'step {curves.kept}">{body}</svg>')  # fmt: skip
