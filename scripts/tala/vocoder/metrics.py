"""Objective measures of a unit vocoder's resynthesis, per held-out clip, and their pooling (``test_vocoder``).

Audio is mono float at 16 kHz; F0 is Hz per frame with 0 (or NaN) for unvoiced.

**Mel cepstra** (:func:`mel_cepstra`): 25 ms Hann frames every 5 ms (SPTK's and WORLD's usual 5 ms
frame period; centred, zero-padded at the ends; FFT of 512), the power spectrum through 40 mel
filters (librosa's Slaney filterbank, 0 Hz to Nyquist), the natural log of each band's amplitude
``½ ln(mel power + 1e-10)``, and its cosine series over the 40 bands:
``c_m = √(2/K) · DCT-II_ortho(½ ln P)[m]`` (``K`` = 40), keeping ``c1 .. c13`` (``c0``, the level, is
dropped, so a gain change is no distance).

**Why that scale.** SPTK's mel-cepstrum (``mcep``/``mgcep``, α ≈ 0.42 at 16 kHz, γ = 0) models the
log *amplitude* with a one-sided series, ``ln|H(ω̃)| = c0 + Σ_{m≥1} c_m cos(m ω̃)`` on a warped (≈ mel)
axis. By Parseval, the mean over the axis of ``(Δ ln|H|)²`` is then ``Δc0² + ½ Σ_{m≥1} Δc_m²``, so

    MCD = 10·√2/ln 10 · √(Σ_{m≥1} Δc_m²) = 20/ln 10 · √(½ Σ Δc_m²)

is exactly the RMS distance in dB (``20 log10`` of amplitude) between the two level-free envelopes:
that is where the constant comes from. The orthonormal DCT-II is the same cosine series on the K band
centres up to the factor ``√(2/K)`` (its inverse is ``x_k = C0/√K + √(2/K) Σ C_m cos(π m (k+½)/K)``), so
with that factor and the log *amplitude* (½ of the log power) our ``c_m`` follow SPTK's convention, and
:func:`mcd` is the RMS over the 40 mel bands of the dB difference of the 13-term cepstrally smoothed
log spectra. It is on the same scale as SPTK-based MCD but not the same number: the envelope is a
filterbank's, not a mel-cepstral fit (low bands partly resolve harmonics, so some F0 leaks in), and
13 coefficients instead of SPTK's usual 24 give smaller values. Compare MCDs from this module only.

**librosa's MFCCs inflate it.** ``librosa.feature.mfcc`` takes ``10 log10`` of the mel power
(``10/ln 10 ≈ 4.34`` × the natural log of the power, ``20/ln 10 ≈ 8.69`` × that of the amplitude),
clips at 80 dB below the peak, and uses the orthonormal DCT (``√(K/2)`` × the cosine series: 8 for its
default 128 mels). Put naively into the formula above, its coefficients give an MCD ≈ 8.69·√(K/2)
times ours (39× at 40 mels, ≈ 70× at 128) — and even with a natural-log-power front end, the dB scale
alone is a factor ≈ 4.3.

**Alignment** (:func:`dtw_path`): dynamic time warping on the Euclidean distance between cepstra, steps
(1,0), (0,1), (1,1) with weight 1, from the first frame pair to the last; MCD is the mean over the
path's pairs (each pair counts once, as in most MCD-DTW tools). The kernel (numba) keeps two rows of
accumulated cost and a uint8 back-pointer per cell, never the cost matrix: ``N·M`` bytes, 36 MB for two
30 s clips (6000 frames each). ``band_s`` restricts the path to a Sakoe-Chiba band of that half-width
around the diagonal of the (possibly non-square) grid, and the memory to ``N·(2·band + 1)`` bytes.

**Silence**: pairs whose two frames are both more than ``silence_db`` (60 dB) below the reference's
loudest frame are dropped after the alignment (leading and trailing silences otherwise weigh in with
whatever noise floor each side has). ``frames`` counts the pairs kept.

**Pooling** (:func:`pool`) over clips: a frame-level measure is pooled over the frames of all clips
(as if they were one clip), a clip-level one (SNR, length ratio) is the plain mean of the clips.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from numba import njit

SAMPLE_RATE = 16_000
FRAME_S = 0.025
HOP_S = 0.005
N_MELS = 40
N_CEPS = 13  # c1 .. c13
POWER_FLOOR = 1e-10
SILENCE_DB = 60.0
MCD_SCALE = 10.0 * math.sqrt(2.0) / math.log(10.0)  # 6.1418: one-sided ln-amplitude cepstra -> RMS dB
MAX_DTW_CELLS = 1 << 30  # back-pointer bytes; above, ask for a band
_DIAG, _UP, _LEFT = 0, 1, 2  # the step into a cell: from (i-1, j-1), (i-1, j), (i, j-1)


# --------------------------------------------------------------------------- mel cepstra

def _analysis(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames x 13 cepstra, frame energy ``Σ|X|²``) of one clip."""
    import librosa
    from scipy.fft import dct

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"expected non-empty mono audio, got shape {audio.shape}")
    win = round(FRAME_S * sample_rate)
    hop = round(HOP_S * sample_rate)
    n_fft = 1 << (win - 1).bit_length()
    spec = librosa.stft(audio, n_fft=n_fft, hop_length=hop, win_length=win, window="hann", center=True,
                        pad_mode="constant")  # fmt: skip
    power = (spec.real.astype(np.float64) ** 2 + spec.imag.astype(np.float64) ** 2).T  # frames x bins
    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=N_MELS, fmin=0.0, fmax=sample_rate / 2)
    log_amplitude = 0.5 * np.log(power @ basis.T.astype(np.float64) + POWER_FLOOR)
    cepstra = math.sqrt(2.0 / N_MELS) * dct(log_amplitude, type=2, norm="ortho", axis=1)[:, 1 : N_CEPS + 1]
    return cepstra, power.sum(axis=1)


def mel_cepstra(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``frames x 13`` float64 mel cepstra ``c1 .. c13`` (``1 + len // hop`` frames, hop 5 ms).

    ``c_m = √(2/K) · DCT-II_ortho(½ ln(mel power + 1e-10))[m]`` over ``K`` = 40 mel bands: the
    cosine-series coefficients of the natural-log band amplitude, SPTK's convention (module docstring).
    """
    return _analysis(audio, sample_rate)[0]


# --------------------------------------------------------------------------- DTW

@njit(cache=True, nogil=True)
def _dtw_steps(a, b, lo, hi, offsets, steps):
    """Accumulated Euclidean cost inside the band ``lo[i] <= j <= hi[i]``; fills ``steps`` (the step
    into each cell, row ``i`` at ``offsets[i] + j - lo[i]``) and returns the total cost."""
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    prev = np.full(m, np.inf)
    cur = np.full(m, np.inf)
    for i in range(n):
        for j in range(lo[i], hi[i] + 1):
            dist = 0.0
            for k in range(d):
                diff = a[i, k] - b[j, k]
                dist += diff * diff
            dist = math.sqrt(dist)
            best = np.inf
            step = _DIAG
            if i == 0 and j == 0:
                best = 0.0
            else:
                if i > 0 and j > 0 and lo[i - 1] <= j - 1 <= hi[i - 1]:
                    best = prev[j - 1]
                if i > 0 and lo[i - 1] <= j <= hi[i - 1] and prev[j] < best:
                    best = prev[j]
                    step = _UP
                if j > lo[i] and cur[j - 1] < best:
                    best = cur[j - 1]
                    step = _LEFT
            cur[j] = best + dist
            steps[offsets[i] + j - lo[i]] = step
        prev, cur = cur, prev
    return prev[m - 1]


@njit(cache=True, nogil=True)
def _backtrack(steps, offsets, lo, n, m):
    ref_idx = np.empty(n + m - 1, np.int64)
    syn_idx = np.empty(n + m - 1, np.int64)
    i, j, k = n - 1, m - 1, 0
    while True:
        ref_idx[k] = i
        syn_idx[k] = j
        k += 1
        if i == 0 and j == 0:
            break
        step = steps[offsets[i] + j - lo[i]]
        if step == _DIAG:
            i -= 1
            j -= 1
        elif step == _UP:
            i -= 1
        else:
            j -= 1
    return ref_idx[:k][::-1].copy(), syn_idx[:k][::-1].copy()


def _band(n: int, m: int, half_width: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Per row ``i``, the first and last column of the band (the whole row without ``half_width``)."""
    if half_width is None:
        return np.zeros(n, np.int64), np.full(n, m - 1, np.int64)
    slope = (m - 1) / (n - 1) if n > 1 else 0.0
    width = max(float(half_width), slope, 1.0)  # consecutive rows' bands must touch
    centre = np.arange(n) * slope
    lo = np.clip(np.floor(centre - width), 0, m - 1).astype(np.int64)
    hi = np.clip(np.ceil(centre + width), 0, m - 1).astype(np.int64)
    lo[0], hi[-1] = 0, m - 1
    return lo, hi


def dtw_path(ref_cep: np.ndarray, syn_cep: np.ndarray,
             band_frames: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(reference frame, synthesis frame) index arrays of the minimum-cost DTW path (module docstring).

    ``band_frames``: half-width of a Sakoe-Chiba band around the grid's diagonal (from the first frame
    pair to the last), in frames, at least 1 and the diagonal's slope (so that the bands of consecutive
    rows touch); None: unconstrained. Memory: one byte per cell of the band.
    """
    a = np.ascontiguousarray(ref_cep, dtype=np.float64)
    b = np.ascontiguousarray(syn_cep, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) == 0 or len(b) == 0:
        raise ValueError(f"expected two non-empty frames x dims arrays, got {a.shape} and {b.shape}")
    n, m = len(a), len(b)
    lo, hi = _band(n, m, band_frames)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(hi - lo + 1, out=offsets[1:])
    if offsets[-1] > MAX_DTW_CELLS:
        raise ValueError(f"DTW of {n} x {m} frames needs {offsets[-1] / 2**20:.0f} MiB: give a band")
    steps = np.empty(offsets[-1], np.uint8)
    _dtw_steps(a, b, lo, hi, offsets, steps)
    return _backtrack(steps, offsets, lo, n, m)


# --------------------------------------------------------------------------- MCD

def mcd_from_cepstra(ref_cep: np.ndarray, syn_cep: np.ndarray, dtw: bool = True, band_frames: float | None = None,
                     ref_silent: np.ndarray | None = None, syn_silent: np.ndarray | None = None) -> dict:
    """:func:`mcd` on given cepstra (``frames x dims``); with both masks, a pair is dropped when both
    of its frames are marked silent. Without ``dtw``, frame ``i`` pairs with frame ``i`` up to the
    shorter length."""
    ref_cep = np.asarray(ref_cep, dtype=np.float64)
    syn_cep = np.asarray(syn_cep, dtype=np.float64)
    if dtw:
        ref_idx, syn_idx = dtw_path(ref_cep, syn_cep, band_frames)
    else:
        ref_idx = syn_idx = np.arange(min(len(ref_cep), len(syn_cep)))
    if ref_silent is not None and syn_silent is not None:
        keep = ~(np.asarray(ref_silent)[ref_idx] & np.asarray(syn_silent)[syn_idx])
        ref_idx, syn_idx = ref_idx[keep], syn_idx[keep]
    distance = np.sqrt(((ref_cep[ref_idx] - syn_cep[syn_idx]) ** 2).sum(axis=1))
    return {"mcd_db": MCD_SCALE * float(distance.mean()) if distance.size else math.nan, "frames": int(distance.size),
            "ref_frames": len(ref_cep), "syn_frames": len(syn_cep)}  # fmt: skip


def mcd(ref: np.ndarray, syn: np.ndarray, sample_rate: int = SAMPLE_RATE, dtw: bool = True,
        band_s: float | None = None, silence_db: float | None = SILENCE_DB) -> dict:
    """Mel-cepstral distortion of ``syn`` against ``ref``, in dB:

    ``mcd_db = 10·√2/ln 10 · mean over aligned frame pairs of √(Σ_{d=1..13} (c_d − c'_d)²)`` on
    :func:`mel_cepstra`, pairs from :func:`dtw_path` (``band_s``: Sakoe-Chiba half-width in seconds,
    None for none) or frame ``i`` with ``i`` without ``dtw``; pairs silent on both sides (both frames
    ``silence_db`` below the reference's loudest; None keeps all) are dropped. Also ``frames`` (pairs
    counted), ``ref_frames`` and ``syn_frames``. NaN when no pair is left.
    """
    ref_cep, ref_energy = _analysis(ref, sample_rate)
    syn_cep, syn_energy = _analysis(syn, sample_rate)
    ref_silent = syn_silent = None
    if silence_db is not None:
        floor = ref_energy.max() * 10.0 ** (-silence_db / 10.0)
        ref_silent, syn_silent = ref_energy < floor, syn_energy < floor
    band = None if band_s is None else band_s / HOP_S
    return mcd_from_cepstra(ref_cep, syn_cep, dtw, band, ref_silent, syn_silent)


# --------------------------------------------------------------------------- F0, SNR, length

def f0_metrics(ref_f0: np.ndarray, syn_f0: np.ndarray) -> dict:
    """F0 agreement of two tracks on the same frame grid (Hz; 0, negative or NaN = unvoiced), trimmed
    to the shorter one:

    * ``f0_rmse_hz``: √(mean (syn − ref)²) over frames voiced in both (NaN when none);
    * ``f0_sq_err_sum``: Σ (syn − ref)² over those frames (what :func:`pool` pools the RMSE from);
    * ``voicing_disagreement``: share of frames voiced in exactly one (NaN when no frames);
    * ``f0_within_20pct``: share of the frames voiced in both with ``|syn − ref| / ref <= 0.2`` (NaN
      when none);
    * ``voiced_both``: how many frames are voiced in both; ``f0_frames``: frames compared.
    """
    n = min(len(ref_f0), len(syn_f0))
    ref = np.asarray(ref_f0, dtype=np.float64)[:n]
    syn = np.asarray(syn_f0, dtype=np.float64)[:n]
    ref_voiced = np.isfinite(ref) & (ref > 0)
    syn_voiced = np.isfinite(syn) & (syn > 0)
    both = ref_voiced & syn_voiced
    voiced_both = int(both.sum())
    error = syn[both] - ref[both]
    sq_err_sum = float((error**2).sum())
    return {
        "f0_rmse_hz": math.sqrt(sq_err_sum / voiced_both) if voiced_both else math.nan,
        "f0_sq_err_sum": sq_err_sum,
        "voicing_disagreement": float((ref_voiced != syn_voiced).mean()) if n else math.nan,
        "f0_within_20pct": float((np.abs(error) <= 0.2 * ref[both]).mean()) if voiced_both else math.nan,
        "voiced_both": voiced_both,
        "f0_frames": n,
    }


def snr_db(ref: np.ndarray, syn: np.ndarray) -> float:
    """``10·log10(Σ ref² / Σ (ref − syn)²)`` over the common length (inf for identical signals).

    A sample-by-sample comparison: it needs phase-aligned signals, so it is near or below 0 dB for any
    vocoder (which does not reproduce the phase) and is reported only because the seed vocoder test did.
    """
    n = min(len(ref), len(syn))
    ref64 = np.asarray(ref, dtype=np.float64)[:n]
    signal = float((ref64**2).sum())
    noise = float(((ref64 - np.asarray(syn, dtype=np.float64)[:n]) ** 2).sum())
    if noise == 0.0:
        return math.inf if signal > 0.0 else math.nan
    return 10.0 * math.log10(signal / noise) if signal > 0.0 else -math.inf


def length_ratio(ref: np.ndarray, syn: np.ndarray) -> float:
    """``len(syn) / len(ref)``."""
    if len(ref) == 0:
        raise ValueError("empty reference")
    return len(syn) / len(ref)


# --------------------------------------------------------------------------- pooling

# A frame-level share or mean, pooled as the mean over all frames: its weight per clip.
FRAME_WEIGHTS = {"mcd_db": "frames", "voicing_disagreement": "f0_frames", "f0_within_20pct": "voiced_both"}


def pool(per_clip: list[dict], keys: Iterable[str]) -> dict:
    """Pool per-clip measures (each clip's dict holding the outputs of :func:`mcd`, :func:`f0_metrics`
    and any others) into one value per key:

    * ``mcd_db``, ``voicing_disagreement``, ``f0_within_20pct``: the mean weighted by the clip's
      ``frames``, ``f0_frames``, ``voiced_both`` (:data:`FRAME_WEIGHTS`): the value over all frames;
    * ``f0_rmse_hz``: ``√(Σ f0_sq_err_sum / Σ voiced_both)``;
    * any other key (``snr_db``, ``length_ratio``, ...): the plain mean over clips.

    Clips with a NaN value (or a weight of 0) are left out of that key; NaN when none is left.
    """
    pooled = {}
    for key in keys:
        if key == "f0_rmse_hz":
            count = sum(clip["voiced_both"] for clip in per_clip)
            pooled[key] = math.sqrt(sum(clip["f0_sq_err_sum"] for clip in per_clip) / count) if count else math.nan
            continue
        values = np.array([clip[key] for clip in per_clip], dtype=np.float64)
        if key in FRAME_WEIGHTS:
            weights = np.array([clip[FRAME_WEIGHTS[key]] for clip in per_clip], dtype=np.float64)
        else:
            weights = np.ones(len(values))
        use = ~np.isnan(values) & (weights > 0)
        pooled[key] = float((values[use] * weights[use]).sum() / weights[use].sum()) if use.any() else math.nan
    return pooled
