"""Streaming (mini-batch) k-means for acoustic units: frames in, float32 centroids out.

The features of a whole sample (hours of speech, millions of 1024-dim frames) never sit in memory:
:class:`StreamingKMeans` takes them in chunks of any size (one speech segment at a time) and buffers
them into fixed batches of ``batch_frames``, so the result depends on the sequence of frames only,
never on how it was cut into :meth:`StreamingKMeans.add` calls (bit-identical on the same machine).

The algorithm is scikit-learn's ``MiniBatchKMeans`` fed with ``partial_fit``, minus its redundant
work (input validation per call, a second assignment pass for ``labels_``/``inertia_``):

* initialization: greedy k-means++ (``2 + ln k`` local trials, as scikit-learn) on the first
  ``init_frames`` frames (or on what is buffered when the pass ends first), with a seeded numpy
  ``Generator``; then those frames are used for updates like any others;
* per batch: each frame's nearest centroid (float32 BLAS matmuls with the centroids' norms
  precomputed, in blocks over a thread pool: :func:`_assign`), then Sculley's rule with per-centroid counts,
  ``c <- (c * n_old + sum_batch) / (n_old + n_batch)``; the batch's sums come from one sparse
  one-hot product (``k x n`` CSC with one entry per frame);
* reassignment (scikit-learn's rule): after each batch, centroids whose count is below
  ``REASSIGNMENT_RATIO`` of the largest count (dead or empty ones) move to frames of the batch
  drawn uniformly (at most half the batch), and their count is set to the smallest kept count.
  The random draws of batch ``b`` come from a generator seeded with ``(seed, b)``, so the whole
  random state is the batch counter.

:meth:`StreamingKMeans.state_dict` (numeric numpy arrays only, the buffered frames included) and
:meth:`StreamingKMeans.save`/:meth:`StreamingKMeans.load` (atomic ``.npz``, no pickle) let a fit
killed at any point continue with the remaining frames, to the same bytes as an uninterrupted one.

Memory: the batch (``batch_frames x dim`` float32), the init buffer (``init_frames x dim``, freed
once initialized), ``k x dim`` centroids and a ``batch_frames x k`` distance matrix.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

STATE_VERSION = 1
REASSIGNMENT_RATIO = 0.01  # as scikit-learn's MiniBatchKMeans
ASSIGN_BLOCK = 512  # rows per single-threaded matmul of the assignment (stays in cache)


class KMeansError(ValueError):
    """Bad input for k-means: too few frames for k, wrong shape, non-finite values, bad state."""


def _as_frames(frames, dim: int | None = None) -> np.ndarray:
    array = np.asarray(frames)
    if array.ndim != 2:
        raise KMeansError(f"frames must be a 2-D array (frames x dim), got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise KMeansError(f"frames have {array.shape[1]} dims, expected {dim}")
    if array.dtype.kind not in "fiu":
        raise KMeansError(f"frames must be real numbers, got dtype {array.dtype}")
    return array


def _assign(x: np.ndarray, minus_2c: np.ndarray, c_norms: np.ndarray,
            x_norms: bool = False, distances: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(labels int32, ``||c||^2 - 2 x.c`` of the nearest centroid, float32; plus ``||x||^2`` when
    ``x_norms``) for float32 ``x``: blocks of ASSIGN_BLOCK frames, each a single-threaded BLAS
    matmul, spread over a pool of threads (as scikit-learn's OpenMP loop over chunks does). Faster
    than one multi-threaded matmul on this CPU class (the blocks stay in cache and no thread waits
    for another), and the arithmetic of a block never depends on the number of threads, so results
    are the same bytes on 1 core or 16."""
    n = len(x)
    labels = np.empty(n, np.int32)
    best = np.empty(n, np.float32) if distances else None

    def work(start: int) -> None:
        block = x[start : start + ASSIGN_BLOCK]
        partial = block @ minus_2c.T
        partial += c_norms
        block_labels = partial.argmin(axis=1)
        labels[start : start + len(block)] = block_labels
        if not distances:
            return
        block_best = partial[np.arange(len(block)), block_labels]
        if x_norms:
            block_best += np.einsum("ij,ij->i", block, block)
        best[start : start + len(block)] = block_best

    starts = range(0, n, ASSIGN_BLOCK)
    with threadpool_limits(1, user_api="blas"):
        if len(starts) < 2 or _threads() < 2:
            for start in starts:
                work(start)
        else:
            list(_pool().map(work, starts))
    return labels, best


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _threads() -> int:
    """Threads for the assignment: OMP_NUM_THREADS (the workflow sets it from the rule's threads)
    or the CPUs this process may use."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _pool() -> ThreadPoolExecutor:
    global _POOL
    threads = _threads()
    if _POOL is None or _POOL[0] != threads:
        _POOL = (threads, ThreadPoolExecutor(threads, thread_name_prefix="kmeans"))
    return _POOL[1]


def nearest(frames: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index (int32) of the nearest centroid of each frame and its squared L2 distance (float32).

    Float32 BLAS matmuls ``||x||^2 - 2 x.c + ||c||^2`` in blocks over a thread pool (see
    :func:`_assign`; measured faster here than faiss ``IndexFlatL2``, which does the same matmul
    plus its own bookkeeping, and than scikit-learn's ``predict``: ``make bench``); distances are
    clipped at 0 (rounding). Works for 0 frames. Deterministic (ties go to the lower index).
    """
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    if c.ndim != 2 or len(c) == 0:
        raise KMeansError(f"centroids must be a non-empty 2-D array, got shape {c.shape}")
    x = np.ascontiguousarray(_as_frames(frames, c.shape[1]), dtype=np.float32)
    labels, dist = _assign(x, -2.0 * c, np.einsum("ij,ij->i", c, c), x_norms=True)
    np.maximum(dist, 0.0, out=dist)
    return labels, dist


def assign(frames: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The nearest centroid of each frame (int32): :func:`nearest` without the distances, what
    quantizing needs (the same labels, ~10% less work)."""
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    if c.ndim != 2 or len(c) == 0:
        raise KMeansError(f"centroids must be a non-empty 2-D array, got shape {c.shape}")
    x = np.ascontiguousarray(_as_frames(frames, c.shape[1]), dtype=np.float32)
    return _assign(x, -2.0 * c, np.einsum("ij,ij->i", c, c), distances=False)[0]


def inertia(frames_iter: Iterable[np.ndarray], centroids: np.ndarray) -> float:
    """Sum of squared distances of the frames of every block to their nearest centroid (float64 sum)."""
    total = 0.0
    for frames in frames_iter:
        total += float(nearest(frames, centroids)[1].sum(dtype=np.float64))
    return total


def kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeds (scikit-learn's variant: ``2 + ln k`` candidates per step, the one that
    lowers the potential most is kept) among the rows of float32 ``x``; a ``k x dim`` float32 copy."""
    n = len(x)
    trials = 2 + int(math.log(k))
    norms = np.einsum("ij,ij->i", x, x)
    centers = np.empty((k, x.shape[1]), np.float32)
    first = int(rng.integers(n))
    centers[0] = x[first]
    closest = np.maximum(norms - 2.0 * (x @ x[first]) + norms[first], 0.0).astype(np.float64)
    potential = closest.sum()
    for c in range(1, k):
        if potential > 0:
            targets = rng.random(trials) * potential
            candidates = np.searchsorted(np.cumsum(closest), targets)
            np.clip(candidates, None, n - 1, out=candidates)
        else:  # every frame sits on a center already: any frames will do
            candidates = rng.integers(n, size=trials)
        cand = x[candidates]
        dist = norms[None, :] - 2.0 * (cand @ x.T) + norms[candidates][:, None]
        np.maximum(dist, 0.0, out=dist)
        dist = np.minimum(closest[None, :], dist, dtype=np.float64)
        potentials = dist.sum(axis=1)
        best = int(np.argmin(potentials))
        potential, closest = potentials[best], dist[best]
        centers[c] = x[candidates[best]]
    return centers


class StreamingKMeans:
    """Mini-batch k-means fed with chunks of frames; see the module's docstring."""

    def __init__(self, k: int, dim: int, *, seed: int = 0, batch_frames: int = 10_000,
                 init_frames: int | None = None):  # fmt: skip
        if k < 1 or dim < 1 or batch_frames < 1:
            raise KMeansError(f"k, dim and batch_frames must be positive (k={k}, dim={dim}, batch_frames={batch_frames})")
        if seed < 0:
            raise KMeansError(f"seed must be >= 0, got {seed}")
        self.k, self.dim, self.seed, self.batch_frames = int(k), int(dim), int(seed), int(batch_frames)
        self.init_frames = int(init_frames) if init_frames is not None else max(self.batch_frames, 20 * self.k)
        if self.init_frames < self.k:
            raise KMeansError(f"init_frames ({self.init_frames}) must be at least k ({self.k})")
        self.frames_seen = 0
        self.passes_done = 0
        self.last_pass_inertia: float | None = None
        self._batches_done = 0
        self._pass_inertia = 0.0
        self._centroids: np.ndarray | None = None
        self._counts = np.zeros(self.k, np.int64)
        self._buffer = np.empty((self.init_frames, self.dim), np.float32)
        self._buffered = 0

    # -- public API --------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return self._centroids is not None

    @property
    def centroids(self) -> np.ndarray:
        if self._centroids is None:
            raise KMeansError(f"k-means is not initialized yet: {self.frames_seen} frames seen, "
                              f"{self.init_frames} needed to initialize (or end_pass() with at least k={self.k})")  # fmt: skip
        return self._centroids.copy()

    def add(self, frames: np.ndarray) -> None:
        """Feed frames (n x dim, any float dtype, converted to float32) in any chunking; the result
        after the same sequence of frames is bit-identical however it was cut into calls."""
        x = _as_frames(frames, self.dim)
        start = 0
        while start < len(x):
            room = len(self._buffer) - self._buffered
            take = min(room, len(x) - start)
            self._buffer[self._buffered : self._buffered + take] = x[start : start + take]
            self._buffered += take
            self.frames_seen += take
            start += take
            if self._buffered == len(self._buffer):
                self._flush()

    def end_pass(self) -> None:
        """The stream of this pass is over: flush the partial batch (initializing from what is
        buffered if the init buffer never filled) and count a pass."""
        if self._centroids is None and self._buffered < self.k:
            raise KMeansError(f"k-means needs at least k={self.k} frames, got {self.frames_seen}")
        self._flush(final=True)
        self.last_pass_inertia = float(self._pass_inertia)
        self._pass_inertia = 0.0
        self.passes_done += 1

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to continue (buffered frames and random state included), as numeric arrays."""
        return {
            "version": np.array(STATE_VERSION, np.int64),
            "config": np.array([self.k, self.dim, self.seed, self.batch_frames, self.init_frames], np.int64),
            "progress": np.array([self.frames_seen, self.passes_done, self._batches_done], np.int64),
            "inertia": np.array([self._pass_inertia, np.nan if self.last_pass_inertia is None
                                 else self.last_pass_inertia], np.float64),  # fmt: skip
            "initialized": np.array(self.initialized),
            "centroids": (self._centroids if self._centroids is not None
                          else np.empty((0, self.dim), np.float32)).copy(),  # fmt: skip
            "counts": self._counts.copy(),
            "buffer": self._buffer[: self._buffered].copy(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> StreamingKMeans:
        try:
            version = int(state["version"])
            if version != STATE_VERSION:
                raise KMeansError(f"k-means state version {version}, expected {STATE_VERSION}")
            k, dim, seed, batch_frames, init_frames = (int(v) for v in np.asarray(state["config"]))
            self = cls(k, dim, seed=seed, batch_frames=batch_frames, init_frames=init_frames)
            self.frames_seen, self.passes_done, self._batches_done = (int(v) for v in np.asarray(state["progress"]))
            pass_inertia, last = (float(v) for v in np.asarray(state["inertia"]))
            self._pass_inertia = pass_inertia
            self.last_pass_inertia = None if math.isnan(last) else last
            counts = np.asarray(state["counts"], np.int64)
            buffer = np.asarray(state["buffer"], np.float32)
            if counts.shape != (k,) or buffer.ndim != 2 or buffer.shape[1] != dim:
                raise KMeansError("k-means state has arrays of the wrong shape")
            self._counts = counts.copy()
            if bool(state["initialized"]):
                centroids = np.asarray(state["centroids"], np.float32)
                if centroids.shape != (k, dim):
                    raise KMeansError(f"k-means state has centroids of shape {centroids.shape}, expected {(k, dim)}")
                self._centroids = centroids.copy()
                self._buffer = np.empty((self.batch_frames, dim), np.float32)
            if len(buffer) >= len(self._buffer):
                raise KMeansError("k-means state has more buffered frames than its buffer holds")
            self._buffer[: len(buffer)] = buffer
            self._buffered = len(buffer)
        except KeyError as err:
            raise KMeansError(f"k-means state lacks {err}") from None
        return self

    def save(self, path) -> None:
        """Write the state to ``path`` (.npz) atomically: a temporary file in the same folder, fsync, rename."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **self.state_dict())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        try:  # make the rename itself durable
            dir_fd = os.open(path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)

    @classmethod
    def load(cls, path) -> StreamingKMeans:
        with np.load(path, allow_pickle=False) as data:
            return cls.from_state_dict({key: data[key] for key in data.files})

    # -- internals -----------------------------------------------------------------------------

    def _flush(self, final: bool = False) -> None:
        """Process the buffer: k-means++ on it first if not initialized yet (then its full batches,
        the remainder moving to the batch buffer), then the batch if full, or whatever is left at
        the end of a pass (``final``)."""
        if self._centroids is None:
            init = self._buffer[: self._buffered]
            self._centroids = kmeans_plusplus(init, self.k, np.random.default_rng([self.seed, 0]))
            full = len(init) // self.batch_frames * self.batch_frames
            for start in range(0, full, self.batch_frames):
                self._step(init[start : start + self.batch_frames])
            batch = np.empty((self.batch_frames, self.dim), np.float32)
            batch[: len(init) - full] = init[full:]
            self._buffer, self._buffered = batch, len(init) - full
        if self._buffered and (final or self._buffered == self.batch_frames):
            self._step(self._buffer[: self._buffered])
            self._buffered = 0

    def _step(self, x: np.ndarray) -> None:
        """One mini-batch update with the float32 frames ``x``."""
        c = self._centroids
        labels, best = _assign(x, -2.0 * c, np.einsum("ij,ij->i", c, c))
        # The inertia of the batch: ||x||^2 summed plus the (||c||^2 - 2 x.c) parts.
        self._pass_inertia += float(np.vdot(x, x)) + float(best.sum(dtype=np.float64))
        n = len(x)
        onehot = sp.csc_matrix((np.ones(n, np.float32), labels, np.arange(n + 1)), shape=(self.k, n))
        sums = np.asarray(onehot @ x, dtype=np.float32)
        batch_counts = np.bincount(labels, minlength=self.k)
        hit = batch_counts > 0
        old = self._counts[hit]
        self._counts += batch_counts
        new = self._counts[hit]
        # c <- (c * n_old + sum) / n_new, as c * (n_old / n_new) + sum * (1 / n_new)
        c[hit] = c[hit] * (old / new).astype(np.float32)[:, None] + sums[hit] * (1.0 / new).astype(np.float32)[:, None]
        self._batches_done += 1
        self._reassign(x)

    def _reassign(self, x: np.ndarray) -> None:
        """scikit-learn's rule: centroids with a count below REASSIGNMENT_RATIO of the largest move
        to frames of the batch drawn uniformly (at most half the batch)."""
        counts = self._counts
        low = counts < REASSIGNMENT_RATIO * counts.max()
        if not low.any():
            return
        limit = int(0.5 * len(x))
        if low.sum() > limit:
            keep = np.argsort(counts, kind="stable")[limit:]
            low[keep] = False
        n_low = int(low.sum())
        if n_low == 0 or low.all():
            return
        rng = np.random.default_rng([self.seed, 1, self._batches_done])
        picks = rng.choice(len(x), size=n_low, replace=False)
        self._centroids[low] = x[picks]
        counts[low] = counts[~low].min()
