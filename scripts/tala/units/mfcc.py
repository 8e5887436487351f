"""MFCCs on the wav2vec2 frame grid: the baseline features for units (the HuBERT paper's starting point).

wav2vec2's convolutional feature encoder (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2) turns 16 kHz
audio into one frame per 320 samples (20 ms), frame i computed from samples ``[320 i, 320 i + 400)``
(25 ms); :func:`num_frames` is its frame count. :func:`mfcc_frames` computes one 39-dimensional MFCC
vector per such frame, from exactly those 400 samples, so a k-means on MFCCs and one on a model
layer label the same frames and score against the same letters.

Per frame (all of it vectorized over a strided view of the frames):

* pre-emphasis 0.97 inside the frame (``y[0] = x[0] - 0.97 x[0]``, as Kaldi), so that a frame depends
  on its own 400 samples only;
* a 400-point (symmetric) Hamming window, zero-padded to a 512-point FFT, power spectrum;
* 40 triangular filters spaced on the HTK mel scale (``2595 log10(1 + f / 700)``) from 0 Hz to the
  Nyquist frequency, unnormalized (HTK), natural log with a floor of 1e-10;
* 13 cepstra, c0 included, by an orthonormal DCT-II matrix;
* deltas and delta-deltas (deltas of the deltas, HTK) by the regression over ±2 frames,
  ``d_t = sum_{n=1..2} n (c_{t+n} - c_{t-n}) / 10``, edge frames repeated;
* per-utterance mean and variance normalization of each of the 39 columns (a column with no
  variance is only centred).

numpy only. The function takes one segment (up to ~30 s: a 30 s segment is 1,500 frames of 512
FFT points); the caller cuts long recordings into blocks on the frame grid (multiples of 320
samples), as for the model's features. Note that CMVN is per call: blocks of one recording are
normalized each with its own statistics.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # samples: the conv stack's receptive field (25 ms)
FRAME_STRIDE = 320  # samples: its total stride (20 ms)
N_FFT = 512
N_MELS = 40
N_CEPS = 13
PREEMPHASIS = 0.97
DELTA_WIDTH = 2  # ±2 frames
LOG_FLOOR = 1e-10
NUM_FEATURES = 3 * N_CEPS

_CONV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
_CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)


def num_frames(num_samples: int) -> int:
    """wav2vec2's frame count for ``num_samples`` samples: the conv formula layer by layer
    (``floor((n - kernel) / stride) + 1``), which equals ``(n - 400) // 320 + 1``, and 0 below 400."""
    n = int(num_samples)
    if n < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    for kernel, stride in zip(_CONV_KERNELS, _CONV_STRIDES):
        if n < kernel:
            return 0
        n = (n - kernel) // stride + 1
    return n


def hz_to_mel(hz):
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=None)
def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, centres equally spaced on the HTK mel scale
    between 0 Hz and sample_rate / 2, peak 1, evaluated at the FFT bins' frequencies. Read-only."""
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_hz - lower) / (centre - lower)
    falling = (upper - fft_hz) / (upper - centre)
    bank = np.maximum(0.0, np.minimum(rising, falling))
    bank.setflags(write=False)
    return bank


@lru_cache(maxsize=None)
def dct_matrix(n_out: int = N_CEPS, n_in: int = N_MELS) -> np.ndarray:
    """(n_out, n_in) orthonormal DCT-II: ``c_k = s_k sum_n x_n cos(pi k (2n + 1) / (2 n_in))`` with
    ``s_0 = sqrt(1 / n_in)``, ``s_k = sqrt(2 / n_in)``. Read-only."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    m[0] *= np.sqrt(0.5)
    m.setflags(write=False)
    return m


@lru_cache(maxsize=None)
def _window() -> np.ndarray:
    w = np.hamming(FRAME_LENGTH)
    w.setflags(write=False)
    return w


def deltas(features: np.ndarray, width: int = DELTA_WIDTH) -> np.ndarray:
    """Regression deltas along axis 0 over ±width frames, edge frames repeated (HTK):
    ``d_t = sum_{n=1..width} n (x_{t+n} - x_{t-n}) / (2 sum_{n=1..width} n^2)``."""
    x = np.asarray(features, dtype=np.float64)
    if len(x) == 0:
        return x.copy()
    padded = np.concatenate([np.repeat(x[:1], width, axis=0), x, np.repeat(x[-1:], width, axis=0)])
    n = len(x)
    out = np.zeros_like(x)
    for k in range(1, width + 1):
        out += k * (padded[width + k : width + k + n] - padded[width - k : width - k + n])
    return out / (2.0 * sum(k * k for k in range(1, width + 1)))


def log_mel_frames(samples: np.ndarray) -> np.ndarray:
    """(num_frames, 40) float64 log mel energies, row i from samples [320 i, 320 i + 400)."""
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {x.shape}")
    n = num_frames(len(x))
    if n == 0:
        return np.zeros((0, N_MELS), dtype=np.float64)
    frames = np.lib.stride_tricks.sliding_window_view(x, FRAME_LENGTH)[: (n - 1) * FRAME_STRIDE + 1 : FRAME_STRIDE]
    frames = frames.astype(np.float64)  # (n, 400), a copy
    emphasized = np.empty_like(frames)
    emphasized[:, 1:] = frames[:, 1:] - PREEMPHASIS * frames[:, :-1]
    emphasized[:, 0] = frames[:, 0] * (1.0 - PREEMPHASIS)
    spectrum = np.fft.rfft(emphasized * _window(), n=N_FFT, axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    return np.log(np.maximum(power @ mel_filterbank().T, LOG_FLOOR))


def mfcc_frames(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """39-dim MFCC (13 cepstra incl. c0 from a 40-band log-mel filterbank on a 25 ms Hamming window,
    plus deltas and delta-deltas over ±2 frames) at the wav2vec2 frame grid: exactly
    ``num_frames(len(samples))`` rows, row i computed from samples ``[320*i, 320*i + 400)``.
    float32, (n, 39). Per-utterance mean/variance normalization (CMVN) of each column.

    ``samples``: 1-D mono audio at 16 kHz (float in [-1, 1] or integer PCM: the scale does not matter
    after CMVN, apart from the log floor). Only 16 kHz is accepted: the grid is wav2vec2's.
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"mfcc_frames works on the wav2vec2 grid at {SAMPLE_RATE} Hz; got {sample_rate} Hz (resample first)")
    ceps = log_mel_frames(samples) @ dct_matrix().T  # (n, 13)
    if len(ceps) == 0:
        return np.zeros((0, NUM_FEATURES), dtype=np.float32)
    d1 = deltas(ceps)
    d2 = deltas(d1)
    feats = np.concatenate([ceps, d1, d2], axis=1)
    feats -= feats.mean(axis=0)
    std = feats.std(axis=0)
    feats /= np.where(std > 1e-8, std, 1.0)
    return feats.astype(np.float32)
