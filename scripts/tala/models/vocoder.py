"""The unit vocoder's networks: ``GeneratorV2`` (acoustic units + pitch bins -> 16 kHz speech) and
``DiscriminatorV2`` (HiFi-GAN's multi-period + multi-scale discriminators), with their losses.

``GeneratorV2`` is a HiFi-GAN generator (transposed-convolution upsampling, multi-receptive-field
residual blocks) conditioned on embeddings of the discrete inputs, as seed 002 asks: one embedding
of the unit ids and one of the pitch bins (plus an optional speaker embedding), summed per 20 ms
frame. Pitch that *follows its input* is the hard part (an unconditioned HiFi-GAN on 50 Hz units
settles on a buzz locked to the frame rate): so, as NSF-HiFiGAN and SiFi-GAN do, a harmonic source
is built from the conditioned F0 at the output rate — a sum of sines at f0, 2·f0, … for voiced
samples, noise for unvoiced ones — and added to every upsampling stage through a strided
convolution that brings it to that stage's rate. The F0 of the source is the centre of each pitch
bin, so the pitch heard is the pitch given.

Pitch bins: bin 0 is unvoiced; bins 1..n are log-spaced between ``f0_min`` and ``f0_max``
(:func:`pitch_to_bins`, :func:`bins_to_pitch`).

Written here rather than taken from a library: ``unit-hifigan`` (PyPI) conditions on units,
speakers and styles but not on F0 ("support for f0 will come later"); SpeechBrain's
``UnitHifiganGenerator`` has units, a speaker embedding and a duration predictor but no pitch, and
SpeechBrain requires torchaudio (whose registry wheels are CUDA-only and break transformers with a
CPU torch). The HiFi-GAN parts follow the reference design (jik876/hifi-gan, as speech-resynthesis
uses it): transposed-convolution upsampling with multi-receptive-field residual blocks, the
multi-period discriminator (periods 2, 3, 5, 7, 11) and the multi-scale one (raw, 2x and 4x
average-pooled), least-squares adversarial and feature-matching losses; the harmonic source follows
NSF-HiFiGAN.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class GeneratorV2Config:
    n_units: int = 100
    n_pitch_bins: int = 64  # voiced bins; bin 0 (unvoiced) comes on top
    f0_min: float = 50.0
    f0_max: float = 500.0
    n_speakers: int = 0  # 0: no speaker embedding
    embed_dim: int = 128
    channels: int = 256  # after the input convolution; halved at each upsampling stage
    upsample_rates: tuple[int, ...] = (10, 8, 2, 2)  # product: samples per unit frame (320 = 20 ms)
    upsample_kernels: tuple[int, ...] = (20, 16, 4, 4)
    resblock_kernels: tuple[int, ...] = (3, 7, 11)
    resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    harmonics: int = 8  # sines in the source: f0 .. harmonics * f0 (those under Nyquist)
    sine_amp: float = 0.1
    noise_std: float = 0.003
    harmonic_head: int = 0  # >0: a harmonic head of this many harmonics (DDSP style, see GeneratorV2)
    sample_rate: int = SAMPLE_RATE
    class_name: str = field(default="GeneratorV2", init=False)

    @property
    def hop(self) -> int:
        return math.prod(self.upsample_rates)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "GeneratorV2Config":
        values = {k: v for k, v in values.items() if k != "class_name"}
        if "resblock_dilations" in values:
            values["resblock_dilations"] = tuple(tuple(d) for d in values["resblock_dilations"])
        for key in ("upsample_rates", "upsample_kernels", "resblock_kernels"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def pitch_to_bins(f0: torch.Tensor, n_bins: int, f0_min: float, f0_max: float) -> torch.Tensor:
    """F0 in Hz per frame (0 or NaN: unvoiced) -> bin ids: 0 unvoiced, 1..n_bins log-spaced."""
    voiced = torch.isfinite(f0) & (f0 > 0)
    clipped = torch.clamp(torch.where(voiced, f0, torch.full_like(f0, f0_min)), f0_min, f0_max)
    position = (torch.log(clipped) - math.log(f0_min)) / (math.log(f0_max) - math.log(f0_min))
    bins = 1 + torch.clamp((position * n_bins).long(), 0, n_bins - 1)
    return torch.where(voiced, bins, torch.zeros_like(bins))


def bins_to_pitch(bins: torch.Tensor, n_bins: int, f0_min: float, f0_max: float) -> torch.Tensor:
    """The centre frequency of each bin (Hz); 0 for bin 0 (unvoiced)."""
    position = (bins.float() - 0.5) / n_bins
    f0 = torch.exp(math.log(f0_min) + position * (math.log(f0_max) - math.log(f0_min)))
    return torch.where(bins > 0, f0, torch.zeros_like(f0))


def harmonic_source(f0: torch.Tensor, hop: int, sample_rate: int, harmonics: int, sine_amp: float, noise_std: float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """The excitation at the output rate from frame F0 (batch x frames, Hz; 0 = unvoiced):
    ``batch x 1 x frames*hop``. Voiced samples: sines at f0..harmonics*f0 (below Nyquist), their
    phase the running integral of the instantaneous frequency (so a glide stays continuous), plus a
    little noise; unvoiced samples: noise at the sines' level."""
    f0_up = F.interpolate(f0.unsqueeze(1), scale_factor=hop, mode="nearest").squeeze(1)  # B x T
    voiced = (f0_up > 0).float()
    k = torch.arange(1, harmonics + 1, device=f0.device, dtype=f0.dtype)
    freqs = f0_up.unsqueeze(-1) * k  # B x T x H
    below_nyquist = (freqs < sample_rate / 2).float()
    phase = 2 * math.pi * torch.cumsum(freqs / sample_rate, dim=1)
    sines = (torch.sin(phase) * below_nyquist).sum(-1) * (sine_amp / math.sqrt(harmonics))
    noise = torch.randn(f0_up.shape, generator=generator, device=f0.device, dtype=f0.dtype)
    source = voiced * (sines + noise_std * noise) + (1 - voiced) * (sine_amp / 3) * noise
    return source.unsqueeze(1)


class ResBlock(nn.Module):
    """HiFi-GAN's residual block (V1 style): dilated convolution pairs with leaky ReLU."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, dilation=d, padding=(kernel * d - d) // 2))
            for d in dilations)  # fmt: skip
        self.convs2 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2)) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, 0.1)), 0.1))
        return x


class GeneratorV2(nn.Module):
    """Units + pitch bins (+ speaker) per 20 ms frame -> waveform (``batch x 1 x frames*hop``)."""

    def __init__(self, config: GeneratorV2Config):
        super().__init__()
        self.config = config
        c = config
        if len(c.upsample_rates) != len(c.upsample_kernels):
            raise ValueError("upsample_rates and upsample_kernels must have the same length")
        self.unit_embedding = nn.Embedding(c.n_units, c.embed_dim)
        self.pitch_embedding = nn.Embedding(c.n_pitch_bins + 1, c.embed_dim)
        self.speaker_embedding = nn.Embedding(c.n_speakers, c.embed_dim) if c.n_speakers else None
        self.conv_pre = weight_norm(nn.Conv1d(c.embed_dim, c.channels, 7, padding=3))
        self.ups, self.source_convs, self.resblocks = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        channels = c.channels
        for i, (rate, kernel) in enumerate(zip(c.upsample_rates, c.upsample_kernels)):
            out = channels // 2
            self.ups.append(weight_norm(nn.ConvTranspose1d(channels, out, kernel, rate, padding=(kernel - rate) // 2)))
            # The source at this stage's rate: the product of the remaining upsampling rates.
            stride = math.prod(c.upsample_rates[i + 1:])
            self.source_convs.append(nn.Conv1d(1, out, 2 * stride, stride, padding=stride // 2) if stride > 1
                                     else nn.Conv1d(1, out, 1))  # fmt: skip
            self.resblocks.append(nn.ModuleList(ResBlock(out, k, d) for k, d in zip(c.resblock_kernels,
                                                                                    c.resblock_dilations)))
            channels = out
        self.conv_post = weight_norm(nn.Conv1d(channels, 1, 7, padding=3))
        if c.harmonic_head:
            self.harmonic_amplitudes = nn.Sequential(
                nn.Conv1d(c.channels, c.channels, 3, padding=1), nn.LeakyReLU(0.1),
                nn.Conv1d(c.channels, c.harmonic_head, 3, padding=1))  # fmt: skip
            nn.init.constant_(self.harmonic_amplitudes[-1].bias, -6.0)  # starts quiet: softplus(-6) ~ 0.0025

    def harmonics(self, features: torch.Tensor, pitch_bins: torch.Tensor) -> torch.Tensor:
        """The harmonic head's output ``batch x 1 x frames*hop``: harmonics 1..H of the given F0,
        each with an amplitude predicted per frame from the input features (linearly interpolated
        to the sample rate); silent where unvoiced and above Nyquist. Its pitch is the pitch given,
        by construction, whatever the training voice's range."""
        c = self.config
        f0 = bins_to_pitch(pitch_bins, c.n_pitch_bins, c.f0_min, c.f0_max)  # B x T
        amplitudes = F.softplus(self.harmonic_amplitudes(features))  # B x H x T
        amplitudes = F.interpolate(amplitudes, scale_factor=c.hop, mode="linear", align_corners=False)
        f0_up = F.interpolate(f0.unsqueeze(1), scale_factor=c.hop, mode="nearest")  # B x 1 x S
        k = torch.arange(1, c.harmonic_head + 1, device=f0.device, dtype=f0.dtype).view(1, -1, 1)
        phase = 2 * math.pi * torch.cumsum(f0_up / c.sample_rate, dim=-1)  # B x 1 x S
        audible = ((f0_up * k) < c.sample_rate / 2) & (f0_up > 0)
        return (amplitudes * torch.sin(phase * k) * audible).sum(1, keepdim=True)

    def source(self, pitch_bins: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        c = self.config
        f0 = bins_to_pitch(pitch_bins, c.n_pitch_bins, c.f0_min, c.f0_max)
        return harmonic_source(f0, c.hop, c.sample_rate, c.harmonics, c.sine_amp, c.noise_std, generator)

    def forward(self, units: torch.Tensor, pitch_bins: torch.Tensor, speakers: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """``units``, ``pitch_bins``: ``batch x frames`` long; ``speakers``: ``batch`` long."""
        if units.shape != pitch_bins.shape:
            raise ValueError(f"units {tuple(units.shape)} and pitch bins {tuple(pitch_bins.shape)} differ in shape")
        x = self.unit_embedding(units) + self.pitch_embedding(pitch_bins)
        if self.speaker_embedding is not None:
            if speakers is None:
                raise ValueError("this generator has a speaker embedding: pass speakers")
            x = x + self.speaker_embedding(speakers).unsqueeze(1)
        x = self.conv_pre(x.transpose(1, 2))
        harmonic = self.harmonics(x, pitch_bins) if self.config.harmonic_head else None
        source = self.source(pitch_bins, generator)
        for up, source_conv, blocks in zip(self.ups, self.source_convs, self.resblocks):
            x = up(F.leaky_relu(x, 0.1))
            s = source_conv(source)
            x = x + s[..., : x.shape[-1]]
            x = sum(block(x) for block in blocks) / len(blocks)
        x = self.conv_post(F.leaky_relu(x))
        return torch.tanh(x if harmonic is None else x + harmonic)


# --------------------------------------------------------------------------- discriminators


def _scores_and_features(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A sub-discriminator's pass: leaky-ReLU convolutions, then the score layer; every map kept."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), 0.1)
        features.append(x)
    x = post(x)
    features.append(x)
    return x.flatten(1), features


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int):
        super().__init__()
        self.period = period
        chans = [1, 32, 128, 512, 1024]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(chans[i], chans[i + 1], (5, 1), (3, 1), padding=(2, 0))) for i in range(4))
        self.convs.append(weight_norm(nn.Conv2d(1024, 1024, (5, 1), 1, padding=(2, 0))))
        self.post = weight_norm(nn.Conv2d(1024, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), "reflect" if t > self.period else "constant")
        return _scores_and_features(self.convs, self.post, x.view(b, c, -1, self.period))


class ScaleDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv1d(1, 128, 15, 1, padding=7)),
            weight_norm(nn.Conv1d(128, 128, 41, 2, groups=4, padding=20)),
            weight_norm(nn.Conv1d(128, 256, 41, 2, groups=16, padding=20)),
            weight_norm(nn.Conv1d(256, 512, 41, 4, groups=16, padding=20)),
            weight_norm(nn.Conv1d(512, 1024, 41, 4, groups=16, padding=20)),
            weight_norm(nn.Conv1d(1024, 1024, 41, 1, groups=16, padding=20)),
            weight_norm(nn.Conv1d(1024, 1024, 5, 1, padding=2)),
        ])  # fmt: skip
        self.post = weight_norm(nn.Conv1d(1024, 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return _scores_and_features(self.convs, self.post, x)


@dataclass(frozen=True)
class DiscriminatorV2Config:
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    scales: int = 3  # the waveform, then average-pooled by 2, 4
    class_name: str = field(default="DiscriminatorV2", init=False)


class DiscriminatorV2(nn.Module):
    """HiFi-GAN's multi-period (MPD) and multi-scale (MSD) discriminators in one module: for a
    batch of waveforms, every sub-discriminator's scores and feature maps."""

    def __init__(self, config: DiscriminatorV2Config = DiscriminatorV2Config()):
        super().__init__()
        self.config = config
        self.period_discriminators = nn.ModuleList(PeriodDiscriminator(p) for p in config.periods)
        self.scale_discriminators = nn.ModuleList(ScaleDiscriminator() for _ in range(config.scales))
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        scores, features = [], []
        for d in self.period_discriminators:
            s, f = d(x)
            scores.append(s)
            features.append(f)
        y = x
        for i, d in enumerate(self.scale_discriminators):
            if i:
                y = self.pool(y)
            s, f = d(y)
            scores.append(s)
            features.append(f)
        return scores, features


# --------------------------------------------------------------------------- losses


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN: real scores to 1, generated ones to 0, summed over sub-discriminators."""
    return sum(torch.mean((1 - r) ** 2) + torch.mean(f**2) for r, f in zip(real, fake))


def generator_adversarial_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    return sum(torch.mean((1 - f) ** 2) for f in fake)


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminators' feature maps of real and generated audio (HiFi-GAN: × 2)."""
    return 2 * sum(torch.mean(torch.abs(r.detach() - f)) for rs, fs in zip(real, fake) for r, f in zip(rs, fs))
