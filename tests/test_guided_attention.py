"""tala.finetune.guided: the diagonal prior's loss, and both trainers pulling their attention to it."""

from __future__ import annotations

import json

import pytest
import torch

from tala.finetune.guided import Span, aligned_prior, aligned_span, diagonal_prior, guided_attention_loss, token_times


def _attention(weights: torch.Tensor, heads: int = 2) -> list[torch.Tensor]:
    return [weights[None, None].expand(1, heads, *weights.shape)]


def test_the_loss_ranks_the_diagonal_below_uniform_below_the_anti_diagonal():
    rows, cols = 12, 60
    prior = diagonal_prior(rows, cols, 0.1)
    diagonal = prior / prior.sum(-1, keepdim=True)
    uniform = torch.full((rows, cols), 1 / cols)
    losses = [float(guided_attention_loss(_attention(a), [Span(0, rows, 0, cols)], 0.1))
              for a in (diagonal, uniform, diagonal.flip(0))]
    assert losses[0] < losses[1] < losses[2], losses
    assert prior[0].argmax() < prior[rows // 2].argmax() < prior[-1].argmax()


def test_only_the_span_and_half_the_heads_are_scored():
    """Rows and columns outside an example's span (padding, text tokens) and the free heads do not count."""
    rows, cols = 6, 20
    prior = diagonal_prior(rows, cols, 0.1)
    diagonal = prior / prior.sum(-1, keepdim=True)
    layer = torch.full((1, 4, 10, 30), 1 / 30)
    layer[0, :2, 2:8, 5:25] = diagonal  # heads 0-1 guided; 2-3 free (left uniform)
    alone = guided_attention_loss(_attention(diagonal), [Span(0, rows, 0, cols)], 0.1)
    assert float(guided_attention_loss([layer], [Span(2, rows, 5, cols)], 0.1)) == pytest.approx(float(alone))
    with pytest.raises(ValueError, match="eager attention"):
        guided_attention_loss([], [Span(0, rows, 0, cols)], 0.1)


def guided_losses(checkpoints) -> list[float]:
    """The guided-attention losses a run logged (its checkpoint folder kept)."""
    records = [json.loads(line) for line in (checkpoints / "training_log.jsonl").read_text().splitlines()]
    return [r["guided_loss"] for r in records if "guided_loss" in r]


def test_token_times_put_each_token_inside_its_word_and_eos_at_the_end():
    from test_speechllm_model import SAMOAN, _tokenizer

    tokenizer = _tokenizer(SAMOAN)
    text = SAMOAN[0]
    words = text.split()
    word_times = [(0.5 * k + 0.1, 0.5 * k + 0.4) for k in range(len(words))]
    ids = tokenizer(text, add_special_tokens=False).input_ids
    times = token_times(tokenizer, text, ids, word_times)
    assert len(times) == len(ids) + 1 and times[-1][0] == word_times[-1][1]
    centers = [c for c, _ in times[:-1]]
    assert centers == sorted(centers), "in reading order"
    assert all(any(a <= c <= b for a, b in word_times) for c in centers), "each inside a word"
    assert token_times(tokenizer, text, ids, word_times[:-1]) is None, "words that do not match: the diagonal"
    assert token_times(tokenizer, text, ids[:-1], word_times) is None, "ids that are not the text's"


def test_an_aligned_span_aims_each_row_at_its_time():
    span = aligned_span(0, 3, 0, 100, [(0.2, 0.04), (0.5, 0.04), (0.9, 0.1)], columns_per_s=100)
    prior = aligned_prior(span.centers, span.sigmas, span.cols)
    assert prior.argmax(-1).tolist() == [19, 49, 89]  # column k holds (k + 0.5) / 100 s
    assert aligned_span(0, 2, 0, 100, [(0.2, 0.04)], 100).centers is None, "times for other rows: the diagonal"
