"""tala.units.kmeans: streaming k-means against a one-shot fit, chunking invariance, resumption, nearest()."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from tala.units.kmeans import KMeansError, StreamingKMeans, inertia, nearest


def blobs(n_per: int = 500, k: int = 8, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, (k, dim))
    frames = np.concatenate([c + rng.normal(0, 0.5, (n_per, dim)) for c in centers])
    return rng.permutation(frames).astype(np.float32), centers


def feed(km: StreamingKMeans, frames: np.ndarray, sizes: np.random.Generator | list[int] | None = None) -> None:
    """Add ``frames`` in chunks: random sizes (a Generator), the given sizes cycled, or all at once."""
    start = 0
    i = 0
    while start < len(frames):
        if sizes is None:
            size = len(frames)
        elif isinstance(sizes, np.random.Generator):
            size = int(sizes.integers(1, 400))
        else:
            size = sizes[i % len(sizes)]
        km.add(frames[start : start + size])
        start += size
        i += 1


def fit(frames, k, passes, sizes=None, **kwargs) -> StreamingKMeans:
    km = StreamingKMeans(k, frames.shape[1], **kwargs)
    for _ in range(passes):
        feed(km, frames, sizes)
        km.end_pass()
    return km


def test_streaming_fit_matches_one_shot_kmeans():
    from sklearn.cluster import KMeans

    frames, _ = blobs()
    km = fit(frames, 8, passes=4, sizes=np.random.default_rng(1), seed=3, batch_frames=500, init_frames=1000)
    ref = KMeans(n_clusters=8, n_init=10, random_state=0).fit(frames)
    ours, theirs = km.centroids, ref.cluster_centers_
    cost = ((ours[:, None, :] - theirs[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    assert np.abs(ours[rows] - theirs[cols]).max() < 0.1
    ours_inertia = inertia([frames[:1000], frames[1000:]], km.centroids)
    assert ours_inertia == pytest.approx(ref.inertia_, rel=0.01)
    assert km.passes_done == 4 and km.frames_seen == 4 * len(frames)
    # the by-product: the last pass's inertia with the centroids of each batch's time, close to the final one
    assert km.last_pass_inertia == pytest.approx(ours_inertia, rel=0.02)
    assert km.centroids.dtype == np.float32 and km.centroids.shape == (8, 16)


def test_chunking_does_not_change_a_bit():
    frames = np.random.default_rng(5).normal(size=(3000, 8))  # float64 in, float32 inside
    kwargs = dict(seed=7, batch_frames=256, init_frames=700)
    whole = fit(frames, 5, 2, None, **kwargs)
    for sizes in ([1], [3, 250, 17], np.random.default_rng(9)):
        other = fit(frames, 5, 2, sizes, **kwargs)
        assert other.centroids.tobytes() == whole.centroids.tobytes()
        assert other.last_pass_inertia == whole.last_pass_inertia
    assert fit(frames, 5, 2, None, **{**kwargs, "seed": 8}).centroids.tobytes() != whole.centroids.tobytes()


@pytest.mark.parametrize("cut", [0, 300, 699, 700, 701, 1000, 3000, 3400, 5999])
def test_save_load_mid_stream_continues_bit_identically(tmp_path, cut):
    frames = np.random.default_rng(11).normal(size=(3000, 6)).astype(np.float32)
    stream = np.concatenate([frames, frames])  # two passes; a cut at 3000 falls between them
    kwargs = dict(seed=2, batch_frames=256, init_frames=700)
    reference = fit(frames, 4, 2, [123], **kwargs)

    km = StreamingKMeans(4, 6, **kwargs)
    feed(km, stream[: min(cut, 3000)], [123])
    if cut >= 3000:
        km.end_pass()
        feed(km, stream[3000:cut], [123])
    state = km.state_dict()
    assert all(isinstance(v, np.ndarray) and v.dtype.kind in "biuf" for v in state.values())
    km.save(tmp_path / "state.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["state.npz"]
    resumed = StreamingKMeans.load(tmp_path / "state.npz")
    assert resumed.initialized == km.initialized and resumed.frames_seen == cut
    feed(resumed, stream[cut:3000] if cut < 3000 else stream[cut:], [77])
    resumed.end_pass()
    if cut < 3000:
        feed(resumed, frames, [55])
        resumed.end_pass()
    assert resumed.centroids.tobytes() == reference.centroids.tobytes()
    assert resumed.last_pass_inertia == reference.last_pass_inertia
    assert (resumed.passes_done, resumed.frames_seen) == (2, 6000)


def test_fewer_frames_than_k():
    km = StreamingKMeans(10, 3)
    km.add(np.zeros((7, 3)))
    assert not km.initialized
    with pytest.raises(KMeansError, match="not initialized"):
        km.centroids
    with pytest.raises(KMeansError, match=r"k=10\b.*\b7\b"):
        km.end_pass()
    with pytest.raises(KMeansError, match="dims"):
        km.add(np.zeros((2, 4)))


def test_end_pass_initializes_from_a_partial_buffer():
    frames, _ = blobs(n_per=20, k=4, dim=3)
    km = fit(frames, 4, 1, [7])  # default init_frames (10,000) never fills
    assert km.initialized and km.last_pass_inertia > 0
    assert len(np.unique(nearest(frames, km.centroids)[0])) == 4


def test_nearest_equals_brute_force():
    rng = np.random.default_rng(3)
    frames, centroids = rng.normal(size=(5000, 32)), rng.normal(size=(40, 32)).astype(np.float32)
    labels, dist = nearest(frames, centroids)
    full = ((frames.astype(np.float32)[:, None, :] - centroids[None]) ** 2).sum(-1)
    assert labels.dtype == np.int32 and dist.dtype == np.float32
    assert (labels == full.argmin(1)).mean() > 0.999  # float32 rounding may flip exact near-ties
    np.testing.assert_allclose(dist, full[np.arange(len(full)), labels], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(full[np.arange(len(full)), labels], full.min(1), rtol=1e-5, atol=1e-4)
    empty_labels, empty_dist = nearest(np.zeros((0, 32)), centroids)
    assert empty_labels.shape == (0,) and empty_dist.shape == (0,) and empty_labels.dtype == np.int32
    again = nearest(frames, centroids)
    assert again[0].tobytes() == labels.tobytes() and again[1].tobytes() == dist.tobytes()
    assert inertia([], centroids) == 0.0
