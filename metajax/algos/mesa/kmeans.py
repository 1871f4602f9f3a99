"""k-means in JAX: k-means++ seeding, Lloyd iterations, and the nearest-center hash.

MESA (Sec. 5.3) hashes joint state-action pairs with a clustering map ``f_c: S x A -> [C]``
fitted by k-means on the high-reward dataset ``M_*``; :func:`assign` is that hash ``phi``.

Everything has static shapes: a fixed-capacity dataset is ``x [N, D]`` plus a validity
``mask [N]`` (``None`` = all rows valid). Masked rows are never chosen as centers and never
count in a center update or in the inertia. ``k``, ``iters`` and ``n_init`` are static.

Squared distances use ``|x|^2 - 2 x.c + |c|^2`` with a full-precision matmul
(``Precision.HIGHEST``, so no TF32 on GPUs), clamped at 0: memory ``[N, k]`` instead of
``[N, k, D]``; the rounding this adds does not matter for an ``argmin``.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
from flax import struct

Array = jax.Array


@struct.dataclass
class KMeans:
    """A fitted clustering: ``centers`` ``[k, D]`` float32; ``inertia`` ``[]`` float32 (sum over
    valid rows of the squared distance to the nearest center)."""

    centers: Array
    inertia: Array


def squared_distances(x: Array, centers: Array) -> Array:
    """``[N, k]`` squared L2 distances between rows of ``x [N, D]`` and ``centers [k, D]``."""
    cross = jnp.matmul(x, centers.T, precision=jax.lax.Precision.HIGHEST)
    d2 = jnp.sum(x * x, -1)[:, None] - 2.0 * cross + jnp.sum(centers * centers, -1)[None, :]
    return jnp.maximum(d2, 0.0)


@jax.jit
def assign(centers: Array, x: Array) -> Array:
    """The hash ``phi``: index of the nearest center for each row, ``[N]`` int32.

    ``centers [k, D]``, ``x [N, D]``; ties (e.g. duplicate centers) go to the lowest index.
    """
    chex.assert_rank([centers, x], 2)
    chex.assert_equal_shape_suffix([centers, x], 1)
    return jnp.argmin(squared_distances(x, centers), axis=-1).astype(jnp.int32)


def _valid(x: Array, mask: Array | None) -> Array:
    return jnp.ones(x.shape[0], bool) if mask is None else mask.astype(bool)


@functools.partial(jax.jit, static_argnames=("k",))
def kmeans_plusplus_init(key: Array, x: Array, k: int, mask: Array | None = None) -> Array:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): ``centers [k, D]``.

    The first center is a uniformly drawn valid row; each next one is a valid row drawn with
    probability proportional to its squared distance to the nearest center chosen so far (D^2
    sampling). When every valid row already sits on a center (fewer distinct valid points than
    ``k``), the draw falls back to uniform over valid rows, so centers are duplicated. Masked rows
    are never chosen; with no valid row at all the centers are zeros.
    """
    chex.assert_rank(x, 2)
    x = x.astype(jnp.float32)
    n, d = x.shape
    valid = _valid(x, mask)
    chex.assert_shape(valid, (n,))
    any_valid = jnp.any(valid)
    keys = jax.random.split(key, k)

    def draw(key: Array, weight: Array) -> Array:
        # weight >= 0 and 0 on masked rows; uniform over valid rows when all weights are 0.
        weight = jnp.where(jnp.sum(weight) > 0, weight, valid.astype(jnp.float32))
        logits = jnp.where(weight > 0, jnp.log(jnp.where(weight > 0, weight, 1.0)), -jnp.inf)
        return jax.random.categorical(key, logits)

    first = draw(keys[0], valid.astype(jnp.float32))
    centers = jnp.zeros((k, d), jnp.float32).at[0].set(x[first])
    closest = jnp.sum((x - x[first]) ** 2, -1)

    def body(i: Array, carry: tuple[Array, Array]) -> tuple[Array, Array]:
        centers, closest = carry
        idx = draw(keys[i], jnp.where(valid, closest, 0.0))
        centers = centers.at[i].set(x[idx])
        closest = jnp.minimum(closest, jnp.sum((x - x[idx]) ** 2, -1))
        return centers, closest

    centers, _ = jax.lax.fori_loop(1, k, body, (centers, closest))
    return jnp.where(any_valid, centers, 0.0)


def _update(x: Array, valid: Array, centers: Array) -> tuple[Array, Array, Array]:
    """One Lloyd step: (new centers, assignment, inertia of the *given* centers)."""
    k = centers.shape[0]
    d2 = squared_distances(x, centers)
    labels = jnp.argmin(d2, -1).astype(jnp.int32)
    w = valid.astype(x.dtype)
    sums = jax.ops.segment_sum(x * w[:, None], labels, num_segments=k)
    sizes = jax.ops.segment_sum(w, labels, num_segments=k)
    new = jnp.where(sizes[:, None] > 0, sums / jnp.maximum(sizes, 1.0)[:, None], centers)
    inertia = jnp.sum(jnp.min(d2, -1) * w)
    return new, labels, inertia


@functools.partial(jax.jit, static_argnames=("iters",))
def lloyd(
    x: Array, centers: Array, mask: Array | None = None, iters: int = 50
) -> tuple[Array, Array, Array]:
    """``iters`` Lloyd iterations from ``centers [k, D]`` on ``x [N, D]`` (valid rows only).

    Returns ``(centers [k, D], assign [N] int32, inertia [])`` where ``assign`` and ``inertia``
    belong to the returned centers. A cluster with no valid row keeps its previous center.
    ``assign`` covers every row (masked ones too: their nearest center), but masked rows never
    move a center nor add to the inertia.
    """
    chex.assert_rank([x, centers], 2)
    chex.assert_equal_shape_suffix([x, centers], 1)
    x = x.astype(jnp.float32)
    valid = _valid(x, mask)
    chex.assert_shape(valid, (x.shape[0],))
    centers = jax.lax.fori_loop(
        0, iters, lambda _, c: _update(x, valid, c)[0], centers.astype(jnp.float32)
    )
    _, labels, inertia = _update(x, valid, centers)
    return centers, labels, inertia


@functools.partial(jax.jit, static_argnames=("k", "iters", "n_init"))
def fit_kmeans(
    key: Array,
    x: Array,
    k: int,
    mask: Array | None = None,
    iters: int = 50,
    n_init: int = 1,
) -> KMeans:
    """k-means++ seeding then ``iters`` Lloyd steps, ``n_init`` times in parallel (vmapped);
    returns the run with the lowest inertia. ``x [N, D]``, ``mask [N]`` bool or ``None``."""
    if k < 1 or n_init < 1 or iters < 0:
        raise ValueError(f"need k >= 1, n_init >= 1, iters >= 0; got {k}, {n_init}, {iters}")

    def one(key: Array) -> tuple[Array, Array]:
        centers = kmeans_plusplus_init(key, x, k, mask)
        centers, _, inertia = lloyd(x, centers, mask, iters)
        return centers, inertia

    centers, inertia = jax.vmap(one)(jax.random.split(key, n_init))
    best = jnp.argmin(inertia)
    return KMeans(centers=centers[best], inertia=inertia[best])
