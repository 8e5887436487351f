"""Guided attention: a diagonal prior on where a decoder reads the audio, for decoders trained from
scratch.

An attention decoder trained from random weights on a few hours of speech sits for thousands of
steps on the plateau of a language model that ignores the audio (its loss is the text's own
entropy): nothing tells it where in the clip the n-th token is. Read speech runs roughly at a
steady pace, so token n of N lies near frame n/N of the clip. Tachibana et al. (2018, "Efficiently
trainable text-to-speech ... with guided attention") penalize attention far from that diagonal;
here the guided heads are rewarded for the attention mass they put near it::

    prior[n, t] = exp(-(n/N - t/T)^2 / (2 width^2))
    loss        = -mean over guided heads and tokens of log(sum_t attention[n, t] * prior[n, t])

Half of each layer's heads are guided (at least one); the others stay free to read the text
written so far. The prior is soft (``width`` is a fraction of the clip), so the cross-entropy
still decides the exact place. Off by default: a pretrained decoder already knows where to read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Guide:
    weight: float  # added to the cross-entropy (mean per token) times this
    width: float = 0.1  # the prior's standard deviation, as a fraction of the clip


@dataclass(frozen=True)
class Span:
    """Where one example's tokens (rows) and audio (columns) lie in an attention matrix."""

    row: int
    rows: int
    col: int
    cols: int


def diagonal_prior(rows: int, cols: int, width: float, device=None) -> torch.Tensor:
    """(rows, cols): 1 on the diagonal from the clip's start to its end, falling off as a Gaussian."""
    n = (torch.arange(rows, device=device, dtype=torch.float32) + 0.5) / rows
    t = (torch.arange(cols, device=device, dtype=torch.float32) + 0.5) / cols
    return torch.exp(-((n[:, None] - t[None, :]) ** 2) / (2 * width**2))


def guided_heads(heads: int) -> int:
    return max(1, heads // 2)


def guided_attention_loss(attentions: Sequence[torch.Tensor], spans: Sequence[Span], width: float) -> torch.Tensor:
    """The mean over layers, examples, guided heads and tokens of ``-log`` (attention mass near the
    diagonal). ``attentions``: per layer (batch, heads, queries, keys), softmax weights;
    ``spans``: per example of the batch."""
    if not attentions:
        raise ValueError("guided attention needs the model's attention weights (eager attention)")
    total, count = attentions[0].new_zeros((), dtype=torch.float32), 0
    for layer in attentions:
        heads = guided_heads(layer.shape[1])
        for i, span in enumerate(spans):
            if span.rows == 0 or span.cols == 0:
                continue
            weights = layer[i, :heads, span.row : span.row + span.rows, span.col : span.col + span.cols].float()
            prior = diagonal_prior(span.rows, span.cols, width, weights.device)
            mass = (weights * prior).sum(-1)
            total = total - torch.log(mass + 1e-6).mean()
            count += 1
    return total / max(count, 1)


def eager_attention(model: torch.nn.Module) -> None:
    """Switch a Hugging Face model to eager attention, the one implementation that returns its weights."""
    model.set_attn_implementation("eager")
