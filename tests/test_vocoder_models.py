"""tala.models.vocoder: GeneratorV2's shapes and pitch source, DiscriminatorV2 and the GAN losses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tala.models.vocoder import (
    DiscriminatorV2,
    DiscriminatorV2Config,
    GeneratorV2,
    GeneratorV2Config,
    bins_to_pitch,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    harmonic_source,
    pitch_to_bins,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = GeneratorV2Config(n_units=20, n_pitch_bins=32, embed_dim=16, channels=32, resblock_kernels=(3,),
                          resblock_dilations=((1, 3),), harmonics=4)  # fmt: skip


def test_one_unit_frame_becomes_twenty_milliseconds_of_audio():
    torch.manual_seed(0)
    generator = GeneratorV2(SMALL)
    units = torch.randint(0, 20, (2, 25))
    bins = torch.randint(0, 33, (2, 25))
    audio = generator(units, bins, generator=torch.Generator().manual_seed(1))
    assert SMALL.hop == 320 and audio.shape == (2, 1, 25 * 320)
    assert torch.all(audio.abs() <= 1) and torch.isfinite(audio).all()
    with pytest.raises(ValueError, match="differ in shape"):
        generator(units, bins[:, :10])


def test_same_seed_same_weights_and_config_round_trips_through_json():
    torch.manual_seed(3)
    a = GeneratorV2(SMALL).state_dict()
    torch.manual_seed(3)
    b = GeneratorV2(SMALL).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert GeneratorV2Config.from_dict(json.loads(json.dumps(SMALL.to_dict()))) == SMALL
    assert SMALL.to_dict()["class_name"] == "GeneratorV2"


def test_pitch_bins_round_trip_within_half_a_bin_and_zero_is_unvoiced():
    f0 = torch.tensor([0.0, float("nan"), 50.0, 80.0, 100.0, 123.4, 200.0, 499.0, 700.0])
    bins = pitch_to_bins(f0, 64, 50.0, 500.0)
    assert bins[:2].tolist() == [0, 0] and bins[2] == 1 and bins[-1] == 64
    back = bins_to_pitch(bins, 64, 50.0, 500.0)
    half_bin = math.exp(math.log(10.0) / 64 / 2)
    for hz, got in zip(f0[2:8].tolist(), back[2:8].tolist()):
        assert hz / half_bin <= got * 1.0001 and got <= hz * half_bin * 1.0001


def _frame_pitch(signal: np.ndarray, rate: int, window: int) -> list[float]:
    pitches = []
    for start in range(0, len(signal) - window, window):
        frame = signal[start:start + window] * np.hanning(window)
        spectrum = np.abs(np.fft.rfft(frame, 16 * window))
        pitches.append(np.argmax(spectrum) * rate / (16 * window))
    return pitches


def test_the_source_follows_a_pitch_glide_within_five_percent():
    """A glide 100 -> 200 Hz over 1 s (50 frames): the excitation's pitch is the pitch given."""
    f0 = torch.linspace(100.0, 200.0, 50).unsqueeze(0)
    source = harmonic_source(f0, 320, 16000, harmonics=1, sine_amp=0.1, noise_std=0.0)[0, 0].numpy()
    measured = _frame_pitch(source, 16000, 640)  # 40 ms windows = two frames
    wanted = [float(f0[0, 2 * i:2 * i + 2].mean()) for i in range(len(measured))]
    assert all(abs(m - w) <= 0.05 * w for m, w in zip(measured, wanted)), list(zip(measured, wanted))
    # Unvoiced frames are noise, without a sine.
    silent = harmonic_source(torch.zeros(1, 10), 320, 16000, 4, 0.1, 0.0, torch.Generator().manual_seed(0))
    assert 0 < float(silent.std()) < 0.1


def test_discriminators_score_every_period_and_scale_and_the_losses_train():
    torch.manual_seed(0)
    discriminator = DiscriminatorV2(DiscriminatorV2Config(periods=(2, 3), scales=2))
    real, fake = torch.randn(2, 1, 4000) * 0.1, torch.randn(2, 1, 4000, requires_grad=True)
    real_scores, real_features = discriminator(real)
    fake_scores, fake_features = discriminator(fake)
    assert len(real_scores) == len(fake_features) == 4
    loss_d = discriminator_loss(real_scores, [s.detach() for s in fake_scores])
    loss_g = generator_adversarial_loss(fake_scores) + feature_matching_loss(real_features, fake_features)
    assert torch.isfinite(loss_d) and torch.isfinite(loss_g)
    loss_g.backward()
    assert fake.grad is not None and float(fake.grad.abs().sum()) > 0
    perfect = [torch.ones(2, 5)], [torch.zeros(2, 5)]
    assert float(discriminator_loss(*perfect)) == 0.0


def test_the_harmonic_head_sounds_the_pitch_it_is_given_even_untrained():
    """The head's harmonics sit on the given F0 by construction: a glide far outside any training
    voice comes out as that glide (Praat's tracker on the head's output, random weights)."""
    from tala.vocoder.pitch import track_f0

    config = GeneratorV2Config(n_units=20, n_pitch_bins=64, embed_dim=16, channels=32, resblock_kernels=(3,),
                               resblock_dilations=((1, 3),), harmonic_head=16)  # fmt: skip
    torch.manual_seed(0)
    generator = GeneratorV2(config)
    with torch.no_grad():
        generator.harmonic_amplitudes[-1].bias.fill_(-1.0)  # audible
    frames = 100
    f0 = torch.linspace(80.0, 240.0, frames)[None]
    bins = pitch_to_bins(f0, 64, 50.0, 500.0)
    units = torch.randint(0, 20, (1, frames))
    with torch.no_grad():
        features = generator.conv_pre((generator.unit_embedding(units) + generator.pitch_embedding(bins)).transpose(1, 2))
        head = generator.harmonics(features, bins)[0, 0].numpy()
        full = generator(units, bins, generator=torch.Generator().manual_seed(0))
    assert full.shape == (1, 1, frames * 320) and torch.isfinite(full).all()
    tracked = track_f0(head)
    given = bins_to_pitch(bins, 64, 50.0, 500.0)[0].numpy()
    inner = slice(3, -3)
    assert np.all(tracked[inner] > 0)
    assert np.max(np.abs(tracked[inner] / given[inner] - 1)) < 0.05
    # Unvoiced frames are silent in the head.
    silent = generator.harmonics(features, torch.zeros_like(bins))
    assert float(silent.abs().max()) == 0.0
