"""Unit quality against aligned letters (purities, PNMI as in HuBERT), unit statistics, and the numpy MFCCs."""

import json
import math

import numpy as np
import pytest

from tala.units.mfcc import (
    dct_matrix,
    deltas,
    log_mel_frames,
    mel_filterbank,
    mfcc_frames,
    num_frames,
)
from tala.units.quality import UnitLetterCounts, UnitStatistics, frame_letters, unit_statistics


def counts_from_table(table, k=None):
    """UnitLetterCounts whose letter i ("l0", "l1", …) has table[i][z] frames of unit z."""
    table = np.asarray(table)
    letters, units = [], []
    for i, row in enumerate(table):
        for z, n in enumerate(row):
            letters += [f"l{i}"] * int(n)
            units += [z] * int(n)
    c = UnitLetterCounts(k or table.shape[1])
    c.add(letters, np.array(units))
    return c


# ---------------------------------------------------------------- purities and PNMI


def test_one_to_one_mapping_is_perfect():
    rng = np.random.default_rng(0)
    letters = rng.choice(list("abc"), size=300).tolist()
    mapping = {"a": 5, "b": 2, "c": 7}
    units = np.array([mapping[x] for x in letters])
    c = UnitLetterCounts(10)
    c.add(letters, units)
    s = c.scores()
    assert s["frames"] == 300 and s["letters"] == 3
    assert s["letter_purity"] == pytest.approx(1.0)
    assert s["cluster_purity"] == pytest.approx(1.0)
    assert s["pnmi"] == pytest.approx(1.0)


def test_independent_units_give_zero_pnmi():
    # letter l0: 6 frames, l1: 3 frames, each spread uniformly over units 0..2.
    # letter purity = sum_z max_y p = 3 * 2/9 = 2/3 = share of the most frequent letter;
    # cluster purity = sum_y max_z p = 2/9 + 1/9 = 1/3; I(y; z) = 0.
    s = counts_from_table([[2, 2, 2], [1, 1, 1]]).scores()
    assert s["pnmi"] == pytest.approx(0.0, abs=1e-12)
    assert s["letter_purity"] == pytest.approx(2 / 3)
    assert s["cluster_purity"] == pytest.approx(1 / 3)
    # H(y) = H_b(1/3) = log2(3) - 2/3
    assert s["letter_entropy_bits"] == pytest.approx(math.log2(3) - 2 / 3)


def test_two_by_two_table_by_hand():
    # counts [[3, 1], [1, 3]], N = 8: p(y, z) = [[3/8, 1/8], [1/8, 3/8]], p(y) = p(z) = (1/2, 1/2).
    # letter purity = 3/8 + 3/8 = 0.75, cluster purity = 0.75, H(y) = 1 bit,
    # I(y; z) = H(y) - H(y|z) = 1 - H_b(1/4) = 1 - (0.25 log2 4 + 0.75 log2 (4/3)) = 1 - 0.8112781244591328
    #         = 0.18872187554086717, so PNMI = 0.18872187554086717.
    s = counts_from_table([[3, 1], [1, 3]]).scores()
    assert s["frames"] == 8 and s["letters"] == 2
    assert s["letter_purity"] == pytest.approx(0.75)
    assert s["cluster_purity"] == pytest.approx(0.75)
    assert s["letter_entropy_bits"] == pytest.approx(1.0)
    assert s["pnmi"] == pytest.approx(0.18872187554086717, abs=1e-12)


def test_purity_asymmetry():
    # One unit covering two letters: each unit predicts its letter badly (letter purity 0.5) but
    # each letter sits on a single unit (cluster purity 1). PNMI 0: the unit tells nothing.
    s = counts_from_table([[2, 0], [2, 0]]).scores()
    assert s["letter_purity"] == pytest.approx(0.5)
    assert s["cluster_purity"] == pytest.approx(1.0)
    assert s["pnmi"] == pytest.approx(0.0, abs=1e-12)
    # The reverse: one letter split over two units (plus a letter of its own unit).
    # p = [[2/6, 2/6, 0], [0, 0, 2/6]]: letter purity 1, cluster purity 2/6 + 2/6 = 2/3, PNMI 1.
    s = counts_from_table([[2, 2, 0], [0, 0, 2]]).scores()
    assert s["letter_purity"] == pytest.approx(1.0)
    assert s["cluster_purity"] == pytest.approx(2 / 3)
    assert s["pnmi"] == pytest.approx(1.0)


def test_empty_and_single_letter():
    s = UnitLetterCounts(4).scores()
    assert s["frames"] == 0 and s["letters"] == 0
    assert s["letter_purity"] is s["cluster_purity"] is s["pnmi"] is s["letter_entropy_bits"] is None
    c = UnitLetterCounts(4)
    c.add([None, None], np.array([1, 2]))  # frames without letters are not counted
    assert c.scores()["frames"] == 0 and c.letters == []
    c.add(["a", "a", None], np.array([0, 1, 3]))
    s = c.scores()
    assert s["frames"] == 2 and s["pnmi"] is None and s["letter_entropy_bits"] == 0.0


def test_counts_accumulate_merge_and_roundtrip():
    a = counts_from_table([[3, 1], [1, 3]])
    b = UnitLetterCounts(2)
    b.add(["l1", "x", None, "l0"], np.array([1, 0, 0, 0]))
    merged = UnitLetterCounts.merged([a, b])
    assert merged.letters == ["l0", "l1", "x"]
    assert merged.counts.tolist() == [[4, 1], [1, 4], [1, 0]]
    back = UnitLetterCounts.from_dict(json.loads(json.dumps(merged.to_dict())))
    assert back.letters == merged.letters and back.counts.tolist() == merged.counts.tolist()
    assert back.scores() == merged.scores()
    back.add(["x"], np.array([1]))  # the inventory keeps working after from_dict
    assert back.counts.tolist()[2] == [1, 1]
    empty = UnitLetterCounts.from_dict(json.loads(json.dumps(UnitLetterCounts(3).to_dict())))
    assert empty.counts.shape == (0, 3)
    with pytest.raises(ValueError):
        a.add(["l0"], np.array([2]))  # unit outside [0, k)
    with pytest.raises(ValueError):
        a.add(["l0", "l1"], np.array([0]))


def test_add_spans_equals_add_of_frame_letters():
    spans = [("a", 0.05, 0.11), ("b", 0.11, 0.16), ("a", 0.30, 0.35)]
    units = np.array([0, 1, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 3, 3, 3])
    via_spans = UnitLetterCounts(4)
    via_spans.add_spans(spans, 0.01, units)
    idx = frame_letters(spans, 0.01, len(units))
    via_add = UnitLetterCounts(4)
    via_add.add([spans[j][0] if j >= 0 else None for j in idx], units)
    assert via_spans.letters == via_add.letters
    assert via_spans.counts.tolist() == via_add.counts.tolist()
    assert via_spans.scores()["frames"] == int((idx >= 0).sum()) > 0


# ---------------------------------------------------------------- frame_letters


def test_frame_letters_centres_boundaries_gaps():
    # Binary fractions so that centres fall exactly on span boundaries: frames of 0.25 s from 1.0 s,
    # centres 1.125, 1.375, 1.625, 1.875, 2.125, 2.375, 2.625, 2.875.
    spans = [("a", 1.25, 1.625), ("b", 1.625, 1.875), ("c", 2.25, 2.625), ("d", 4.0, 4.5)]
    idx = frame_letters(spans, 1.0, 8, frame_s=0.25)
    # 1.125: before "a"; 1.375: a; 1.625: start of b (half-open [start, end): b, not a);
    # 1.875: end of b → no letter; 2.125: gap; 2.375: c; 2.625: end of c → none; 2.875: gap.
    assert idx.dtype == np.int64
    assert idx.tolist() == [-1, 0, 1, -1, -1, 2, -1, -1]
    # before all letters, after all letters, the end of the last one
    assert frame_letters(spans, 0.0, 3, frame_s=0.25).tolist() == [-1, -1, -1]
    assert frame_letters(spans, 5.0, 3, frame_s=0.25).tolist() == [-1, -1, -1]
    assert frame_letters(spans, 4.0, 3, frame_s=0.25).tolist() == [3, 3, -1]  # 4.125, 4.375; 4.625
    assert frame_letters([], 0.0, 4).tolist() == [-1] * 4
    assert frame_letters(spans, 0.0, 0).tolist() == []
    # The default 20 ms grid, spans on the alignment's own 20 ms grid: centres never tie with edges.
    grid = [("x", 0.04, 0.10), ("y", 0.10, 0.12), ("z", 0.16, 0.20)]
    assert frame_letters(grid, 0.0, 11).tolist() == [-1, -1, 0, 0, 0, 1, -1, -1, 2, 2, -1]
    with pytest.raises(ValueError):
        frame_letters([("a", 1.0, 1.1), ("b", 0.5, 0.6)], 0.0, 3)


def test_frame_letters_matches_brute_force():
    rng = np.random.default_rng(1)
    edges = np.sort(rng.uniform(0, 10, 400))
    spans = [(chr(97 + i % 26), float(edges[2 * i]), float(edges[2 * i + 1])) for i in range(200)]
    start = 0.37
    n = 500
    idx = frame_letters(spans, start, n)
    for i in range(n):
        c = start + (i + 0.5) * 0.02
        want = [j for j, (_, s, e) in enumerate(spans) if s <= c < e]
        assert idx[i] == (want[0] if want else -1)


# ---------------------------------------------------------------- unit statistics


def test_unit_statistics_by_hand():
    # runs: [0 0 0][1][2 2] | [2 2][0 0 0 0]; 12 frames in 5 runs → 2.4 frames = 48 ms.
    # counts: unit 0: 7, 1: 1, 2: 4 of 12 → H = -(7/12 log2 7/12 + 1/12 log2 1/12 + 4/12 log2 4/12).
    seqs = [np.array([0, 0, 0, 1, 2, 2]), np.array([2, 2, 0, 0, 0, 0]), np.array([], dtype=np.int64)]
    r = unit_statistics(seqs, k=5)
    h = -sum(p * math.log2(p) for p in (7 / 12, 1 / 12, 4 / 12))
    assert r["segments"] == 3 and r["frames"] == 12 and r["units_used"] == 3 and r["k"] == 5
    assert r["entropy_bits"] == pytest.approx(h)
    assert r["perplexity"] == pytest.approx(2**h)
    assert r["mean_run_length"] == pytest.approx(2.4)
    assert r["mean_run_ms"] == pytest.approx(48.0)
    # streaming in pieces and merging give the same
    a, b = UnitStatistics(5), UnitStatistics(5)
    a.add(seqs[0])
    b.add(seqs[1])
    b.add(seqs[2])
    a.merge(b)
    assert a.result() == r
    # uniform over 4 units, all runs of 1: 2 bits, perplexity 4
    r = unit_statistics([np.arange(4)], k=4)
    assert r["entropy_bits"] == pytest.approx(2.0) and r["perplexity"] == pytest.approx(4.0)
    assert r["mean_run_length"] == 1.0
    empty = unit_statistics([], k=3)
    assert empty["frames"] == 0 and empty["entropy_bits"] is None and empty["mean_run_ms"] is None
    with pytest.raises(ValueError):
        unit_statistics([np.array([3])], k=3)


# ---------------------------------------------------------------- MFCC


@pytest.mark.parametrize("n, frames", [(0, 0), (399, 0), (400, 1), (720, 2), (16000, 49)])
def test_mfcc_frame_count_and_shape(n, frames):
    assert num_frames(n) == frames
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    m = mfcc_frames(x)
    assert m.shape == (frames, 39) and m.dtype == np.float32
    assert np.isfinite(m).all()


def test_num_frames_equals_the_conv_stack():
    torch = pytest.importorskip("torch")
    convs = torch.nn.Sequential(
        *[torch.nn.Conv1d(1, 1, k, s) for k, s in zip([10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2])]
    )
    for n in [400, 401, 719, 720, 721, 1039, 1040, 16000, 16319, 16320, 48000, 48321]:
        with torch.no_grad():
            assert convs(torch.zeros(1, 1, n)).shape[-1] == num_frames(n), n
    for n in range(0, 5000, 7):
        assert num_frames(n) == (0 if n < 400 else (n - 400) // 320 + 1)


def test_mfcc_frames_are_local_to_their_400_samples():
    x = np.random.default_rng(2).standard_normal(16000 + 123)
    full = log_mel_frames(x)
    for i in (0, 1, 17, len(full) - 1):
        alone = log_mel_frames(x[320 * i : 320 * i + 400])
        np.testing.assert_allclose(full[i], alone[0], rtol=1e-10, atol=1e-10)


def test_mfcc_components_match_librosa_and_scipy():
    librosa = pytest.importorskip("librosa")
    scipy_fft = pytest.importorskip("scipy.fft")
    ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=40, fmin=0.0, fmax=8000.0, htk=True, norm=None)
    np.testing.assert_allclose(mel_filterbank(), ref, atol=1e-6)
    x = np.random.default_rng(3).standard_normal((7, 40))
    np.testing.assert_allclose(x @ dct_matrix().T, scipy_fft.dct(x, type=2, norm="ortho", axis=1)[:, :13], atol=1e-12)
    y = np.random.default_rng(4).standard_normal((30, 13))
    np.testing.assert_allclose(deltas(y), librosa.feature.delta(y, width=5, order=1, axis=0, mode="nearest"), atol=1e-10)


def slow_mfcc(x):
    """A frame-by-frame reference, written out: explicit DFT, explicit window formula."""
    n_frames = num_frames(len(x))
    k = np.arange(257)[:, None]
    t = np.arange(512)[None, :]
    dft = np.exp(-2j * np.pi * k * t / 512)
    window = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(400) / 399)
    fb = mel_filterbank()
    rows = []
    for i in range(n_frames):
        seg = x[320 * i : 320 * i + 400].astype(np.float64)
        emph = np.array([seg[0] - 0.97 * seg[0]] + [seg[j] - 0.97 * seg[j - 1] for j in range(1, 400)])
        padded = np.zeros(512)
        padded[:400] = emph * window
        power = np.abs(dft @ padded) ** 2
        logmel = np.log(np.maximum(fb @ power, 1e-10))
        c = [
            math.sqrt((1 if q == 0 else 2) / 40) * sum(logmel[m] * math.cos(math.pi * q * (2 * m + 1) / 80) for m in range(40))
            for q in range(13)
        ]
        rows.append(c)
    ceps = np.array(rows)

    def delta(a):
        out = np.zeros_like(a)
        for t_ in range(len(a)):
            for d in (1, 2):
                out[t_] += d * (a[min(t_ + d, len(a) - 1)] - a[max(t_ - d, 0)])
        return out / 10

    d1 = delta(ceps)
    feats = np.concatenate([ceps, d1, delta(d1)], axis=1)
    return (feats - feats.mean(0)) / feats.std(0)


def test_mfcc_matches_slow_reference():
    rng = np.random.default_rng(5)
    t = np.arange(8000 + 77) / 16000
    x = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + t)) + 0.05 * rng.standard_normal(len(t))
    m = mfcc_frames(x.astype(np.float32))
    ref = slow_mfcc(x.astype(np.float32))
    assert m.shape == ref.shape == (num_frames(len(x)), 39)
    np.testing.assert_allclose(m, ref, atol=2e-4)
    np.testing.assert_allclose(m.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(m.std(0), 1, atol=1e-4)


def test_mfcc_rejects_other_rates_and_stereo():
    with pytest.raises(ValueError):
        mfcc_frames(np.zeros(16000), sample_rate=8000)
    with pytest.raises(ValueError):
        mfcc_frames(np.zeros((16000, 2)))
