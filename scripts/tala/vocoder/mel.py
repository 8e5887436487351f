"""The log-mel spectrogram the vocoder is trained and judged on (HiFi-GAN's loss features, at 16 kHz).

One definition for the training loss (torch, differentiable), the validation metric and the
Griffin-Lim baselines of ``test_vocoder`` (numpy, through librosa's inverse), so that the three
speak of the same spectrogram:

* magnitude STFT (power 1), ``n_fft`` 1024, Hann window of 1024, hop 160 (10 ms), centred with
  reflect padding (librosa's and torch's default);
* 80 mel filters from 0 to 8 kHz, librosa's Slaney scale and area normalization (librosa's default,
  as HiFi-GAN);
* natural log with a floor of 1e-5 (HiFi-GAN's ``dynamic_range_compression``).

:data:`MEL_LOSS_WEIGHT` (45) is HiFi-GAN's weight of the L1 mel term; the validation loss and the
early-stopping ``min_delta`` are on that scale (45 × the mean absolute log-mel difference).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch

MEL_LOSS_WEIGHT = 45.0
LOG_FLOOR = 1e-5


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 16_000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 160
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0

    def to_dict(self) -> dict:
        return asdict(self)


MEL = MelConfig()


@lru_cache(maxsize=4)
def mel_basis(config: MelConfig = MEL) -> np.ndarray:
    """``n_mels x (n_fft/2 + 1)`` float32 filterbank (librosa's, Slaney)."""
    import librosa

    return librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                               fmin=config.fmin, fmax=config.fmax).astype(np.float32)  # fmt: skip


class LogMel(torch.nn.Module):
    """``batch x samples`` (or ``batch x 1 x samples``) -> ``batch x n_mels x frames`` natural-log mel."""

    def __init__(self, config: MelConfig = MEL):
        super().__init__()
        self.config = config
        self.register_buffer("basis", torch.from_numpy(mel_basis(config)), persistent=False)
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() == 3:
            audio = audio.squeeze(1)
        c = self.config
        spec = torch.stft(audio.float(), c.n_fft, c.hop_length, c.win_length, self.window, center=True,
                          pad_mode="reflect", return_complex=True)  # fmt: skip
        magnitude = torch.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
        return torch.log(torch.clamp(self.basis @ magnitude, min=LOG_FLOOR))


def log_mel(audio: np.ndarray, config: MelConfig = MEL) -> np.ndarray:
    """One waveform (float, ``samples``) -> ``n_mels x frames`` float32, as :class:`LogMel`."""
    with torch.no_grad():
        return LogMel(config)(torch.from_numpy(np.asarray(audio, dtype=np.float32))[None])[0].numpy()


def mel_to_audio(mel: np.ndarray, config: MelConfig = MEL, n_iter: int = 32, length: int | None = None,
                 seed: int = 0) -> np.ndarray:
    """Griffin-Lim from a :func:`log_mel` spectrogram: the magnitude STFT by the filterbank's
    pseudo-inverse (clipped at 0; librosa's NNLS inversion is ~100x slower for a similar result),
    then ``n_iter`` of librosa's Griffin-Lim iterations from a seeded random phase."""
    import librosa

    magnitude = np.maximum(_pseudo_inverse(config) @ np.exp(mel), 0.0)
    return librosa.griffinlim(magnitude, n_iter=n_iter, hop_length=config.hop_length, win_length=config.win_length,
                              length=length, random_state=seed).astype(np.float32)  # fmt: skip


@lru_cache(maxsize=4)
def _pseudo_inverse(config: MelConfig) -> np.ndarray:
    return np.linalg.pinv(mel_basis(config)).astype(np.float32)
