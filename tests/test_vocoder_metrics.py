"""tala.vocoder.metrics: MCD (mel cepstra, DTW, scale, silence), F0 agreement, SNR, length ratio, pooling.

Audio: synthesized vowel sequences, 16 kHz: a harmonic source with a gliding F0 (100-190 Hz) through
three formant resonances that hold each vowel and glide to the next, plus seeded noise at -54 dB."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tala.vocoder.metrics import (
    MCD_SCALE,
    N_MELS,
    dtw_path,
    f0_metrics,
    length_ratio,
    mcd,
    mcd_from_cepstra,
    mel_cepstra,
    pool,
    snr_db,
)

SR = 16_000
VOWELS_A = [(700, 1200, 2600), (300, 2300, 3000), (500, 900, 2400), (400, 1900, 2600)]
VOWELS_B = [(300, 800, 2300), (650, 1700, 2500), (350, 1400, 2200), (600, 1000, 2800)]
DELAY = 320  # 20 ms, 4 frames of 5 ms


def vowels(formants: list[tuple[int, int, int]], seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 140 + 40 * np.sin(2 * np.pi * 1.3 * t) + 10 * np.sin(2 * np.pi * 5.0 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    held = np.clip(t / (seconds / len(formants)) - 0.5, 0, len(formants) - 1)
    tracks = [np.interp(held, np.arange(len(formants)), [v[i] for v in formants]) for i in range(3)]
    k = np.arange(1, SR // 2 // 100)[:, None]
    freq = k * f0
    amp = sum(1 / (1 + ((freq - f) / (60 + 0.05 * f)) ** 2) for f in tracks) * (freq < SR / 2) / np.sqrt(k)
    x = (amp * np.sin(k * phase)).sum(axis=0)
    return (0.5 * x / np.abs(x).max() + 1e-3 * rng.standard_normal(t.size)).astype(np.float32)


def delayed(x: np.ndarray, samples: int) -> np.ndarray:
    return np.concatenate([np.zeros(samples, np.float32), x[:-samples]])


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return vowels(VOWELS_A)


# --------------------------------------------------------------------------- mel cepstra and MCD


def test_mel_cepstra_are_thirteen_per_5ms_frame_level_free_and_zero_for_digital_silence(speech):
    cepstra = mel_cepstra(speech)
    assert cepstra.shape == (1 + len(speech) // 80, 13) and np.isfinite(cepstra).all()
    assert np.abs(cepstra).max() > 0.1
    np.testing.assert_allclose(mel_cepstra(0.25 * speech), cepstra, atol=1e-3)  # a gain is c0 only
    assert np.all(mel_cepstra(np.zeros(1600, np.float32)) == 0)


def test_librosa_db_mfccs_are_ours_times_20_over_ln10_times_sqrt_half_the_bands(speech):
    """The scale of the module docstring: librosa's MFCCs (dB of the power, orthonormal DCT) on the same
    frames and filterbank are 20/ln 10 · √(K/2) × ours (38.8 at 40 mels)."""
    import librosa

    power = librosa.feature.melspectrogram(y=speech, sr=SR, n_fft=512, hop_length=80, win_length=400,
                                           pad_mode="constant", n_mels=N_MELS, fmax=SR / 2)  # fmt: skip
    theirs = librosa.feature.mfcc(S=librosa.power_to_db(power, top_db=None), n_mfcc=14)[1:].T
    np.testing.assert_allclose(theirs, 20 / math.log(10) * math.sqrt(N_MELS / 2) * mel_cepstra(speech), atol=1e-3)


def test_mcd_of_a_signal_with_itself_is_zero(speech):
    result = mcd(speech, speech)
    assert result == {"mcd_db": 0.0, "frames": 301, "ref_frames": 301, "syn_frames": 301}


def test_dtw_undoes_a_20ms_delay_that_costs_without_it(speech):
    late = delayed(speech, DELAY)
    aligned, frame_by_frame = mcd(speech, late), mcd(speech, late, dtw=False)
    assert aligned["mcd_db"] < 0.5 and aligned["frames"] >= 301
    assert frame_by_frame["mcd_db"] > 1.0 and frame_by_frame["mcd_db"] > 5 * aligned["mcd_db"]
    ref_idx, syn_idx = dtw_path(mel_cepstra(speech), mel_cepstra(late))
    assert np.median(syn_idx - ref_idx) == DELAY // 80
    assert (ref_idx[0], syn_idx[0], ref_idx[-1], syn_idx[-1]) == (0, 0, 300, 300)
    assert np.all(np.diff(ref_idx) >= 0) and np.all(np.diff(syn_idx) >= 0)
    assert np.all(np.diff(ref_idx) + np.diff(syn_idx) >= 1)
    # A wide band finds the same path; one narrower than the delay cannot follow it.
    assert mcd(speech, late, band_s=0.1) == aligned
    assert mcd(speech, late, band_s=0.005)["mcd_db"] > 2 * aligned["mcd_db"]


@pytest.mark.parametrize("n, m", [(37, 53), (53, 37), (1, 9), (60, 12)])
def test_dtw_path_costs_what_librosa_finds_and_a_band_keeps_it_a_path(n, m):
    import librosa

    rng = np.random.default_rng(n * m)
    a, b = rng.standard_normal((n, 13)), rng.standard_normal((m, 13))
    distance = np.sqrt(((a[:, None] - b[None]) ** 2).sum(axis=2))
    for band in (None, 0.0, 2.0):
        ref_idx, syn_idx = dtw_path(a, b, band)
        steps = np.stack([np.diff(ref_idx), np.diff(syn_idx)], axis=1)
        assert (ref_idx[0], syn_idx[0], ref_idx[-1], syn_idx[-1]) == (0, 0, n - 1, m - 1)
        assert {tuple(step) for step in steps} <= {(0, 1), (1, 0), (1, 1)}
        cost = distance[ref_idx, syn_idx].sum()
        if band is None:
            full = cost
            assert cost == pytest.approx(librosa.sequence.dtw(C=distance)[0][-1, -1], rel=1e-9)
        assert cost >= full - 1e-9


def test_different_spectral_envelopes_give_a_clearly_larger_mcd(speech):
    other = vowels(VOWELS_B, seed=1)
    assert mcd(speech, other)["mcd_db"] > 2.0
    assert mcd(speech, vowels(VOWELS_A, seed=1))["mcd_db"] < 1.0  # the same vowels, other noise


def test_mcd_scale_on_a_hand_computed_two_frame_example():
    ref = np.zeros((2, 13))
    syn = np.zeros((2, 13))
    syn[0, :2] = 3.0, 4.0  # distance 5
    syn[1, 12] = -1.0  # distance 1
    expected = 10 * math.sqrt(2) / math.log(10) * (5 + 1) / 2
    assert MCD_SCALE == pytest.approx(6.141851, abs=1e-6)
    for dtw in (False, True):
        result = mcd_from_cepstra(ref, syn, dtw=dtw)
        assert result["mcd_db"] == pytest.approx(expected, rel=1e-12) and result["frames"] == 2
    assert mcd_from_cepstra(ref, syn, ref_silent=np.array([True, False]), syn_silent=np.array([True, True])) == {
        "mcd_db": pytest.approx(MCD_SCALE * 1.0), "frames": 1, "ref_frames": 2, "syn_frames": 2}  # fmt: skip


def test_mcd_is_the_rms_db_difference_of_the_cepstrally_smoothed_mel_log_amplitudes(speech):
    ref, syn = mel_cepstra(speech), mel_cepstra(vowels(VOWELS_B, seed=1))
    k = np.arange(N_MELS)
    cosines = np.cos(np.pi * np.arange(1, 14)[:, None] * (k + 0.5) / N_MELS)  # 13 x bands
    db_difference = 20 / math.log(10) * (ref - syn) @ cosines  # frames x bands, 20 log10 of amplitude
    rms = np.sqrt((db_difference**2).mean(axis=1)).mean()
    assert mcd_from_cepstra(ref, syn, dtw=False)["mcd_db"] == pytest.approx(rms, rel=1e-9)


def test_pairs_silent_on_both_sides_are_left_out(speech):
    pause = np.zeros(4800, np.float32)
    ref = np.concatenate([pause, speech, pause])
    syn = ref.copy()
    syn[:4800] = syn[-4800:] = 1e-4 * vowels(VOWELS_B, 0.3, seed=2)  # a coloured floor 74 dB down
    kept, every = mcd(ref, syn), mcd(ref, syn, silence_db=None)
    assert every["frames"] == 421 and kept["frames"] < every["frames"] - 100
    assert kept["mcd_db"] < 0.5 and every["mcd_db"] > 1.0
    assert mcd(ref, syn, silence_db=80)["frames"] > kept["frames"] + 100  # the floor is 74 dB down


# --------------------------------------------------------------------------- F0, SNR, length


def test_f0_metrics_on_known_tracks():
    ref = np.array([0, 200, 200, 200, 0, 200, np.nan, 200])
    syn = np.array([0, 210, 190, 0, 210, 210, 0, 210, 999])  # one frame longer: trimmed
    result = f0_metrics(ref, syn)
    assert result == {"f0_rmse_hz": pytest.approx(10.0), "f0_sq_err_sum": pytest.approx(400.0),
                      "voicing_disagreement": pytest.approx(2 / 8), "f0_within_20pct": 1.0, "voiced_both": 4,
                      "f0_frames": 8}  # fmt: skip
    off = f0_metrics(np.full(4, 200.0), np.array([239.0, 161.0, 241.0, 100.0]))
    assert off["f0_within_20pct"] == 0.5 and off["voicing_disagreement"] == 0.0
    assert off["f0_rmse_hz"] == pytest.approx(math.sqrt((39**2 + 39**2 + 41**2 + 100**2) / 4))
    unvoiced = f0_metrics(np.zeros(5), np.array([0, 100.0, 0, 0, 0]))
    assert math.isnan(unvoiced["f0_rmse_hz"]) and math.isnan(unvoiced["f0_within_20pct"])
    assert unvoiced["voiced_both"] == 0 and unvoiced["voicing_disagreement"] == pytest.approx(0.2)


def test_snr_and_length_ratio(speech):
    assert snr_db(speech, speech) == math.inf
    assert snr_db(speech, 0.5 * speech) == pytest.approx(20 * math.log10(2), abs=1e-6)  # 6.02 dB
    assert snr_db(speech, np.concatenate([0.5 * speech, speech])) == pytest.approx(6.0206, abs=1e-4)
    assert snr_db(speech, -speech) == pytest.approx(-6.0206, abs=1e-4)
    assert length_ratio(speech[:1000], speech[:1500]) == 1.5 and length_ratio(speech, speech[:400]) == 400 / 24000


# --------------------------------------------------------------------------- pooling


def test_pool_weights_frame_measures_by_their_frames_and_averages_clip_measures():
    clips = [{"mcd_db": 2.0, "frames": 100, "snr_db": -3.0, "length_ratio": 1.0},
             {"mcd_db": 6.0, "frames": 300, "snr_db": 1.0, "length_ratio": 1.5}]  # fmt: skip
    assert pool(clips, ["mcd_db", "snr_db", "length_ratio"]) == {"mcd_db": 5.0, "snr_db": -1.0, "length_ratio": 1.25}
    # F0: pooled over frames, as one clip of the concatenated tracks; a clip without voiced frames
    # adds its voicing errors but nothing to the RMSE or the 20 % share.
    tracks = [(np.array([200.0, 200, 0, 100]), np.array([210.0, 250, 100, 100])),
              (np.array([0.0, 0, 0]), np.array([0.0, 120, 0])),
              (np.array([150.0, 150]), np.array([125.0, 150]))]  # fmt: skip
    keys = ["f0_rmse_hz", "voicing_disagreement", "f0_within_20pct"]
    whole = f0_metrics(np.concatenate([r for r, _ in tracks]), np.concatenate([s for _, s in tracks]))
    pooled = pool([f0_metrics(r, s) for r, s in tracks], keys)
    assert pooled == pytest.approx({key: whole[key] for key in keys}, rel=1e-12)
    assert pooled["f0_rmse_hz"] == pytest.approx(math.sqrt((100 + 2500 + 0 + 625 + 0) / 5))
    assert pooled["f0_within_20pct"] == pytest.approx(4 / 5) and pooled["voicing_disagreement"] == pytest.approx(2 / 9)
    assert math.isnan(pool([f0_metrics(np.zeros(3), np.zeros(3))], keys)["f0_rmse_hz"])
