"""Pure building blocks of MESA (Cooperative Meta-Exploration, Sec. 5, Algorithms 1 and 2).

* :func:`relabel_rewards` - Eq. 5, densified reward of one trajectory (reverse ``lax.scan``);
  :func:`dataset_keep` - which pairs enter the high-reward dataset ``M_*``.
* :class:`HighRewardDataset` - ``M_*`` as a fixed-capacity set of joint (state, action)
  vectors (:func:`dataset_init`, :func:`dataset_add`: ring buffer, or reservoir with a key).
* :func:`min_distance`, :func:`count_decay`, :func:`coverage_reward` - Eq. 6.
* :func:`count_step` - one visit of the trajectory-level count ``N`` started from the global
  count ``N_hat`` (Alg. 1 lines 10 and 15); :func:`visit_counts`, :func:`update_global` - line
  19; counts are over k-means clusters (:func:`metajax.algos.mesa.kmeans.assign` is the hash
  ``phi``).
* :func:`coverage_step` - Eq. 6 for one step of ``G`` games: the function the exploration
  policies are trained with; :func:`trajectory_counts` and :func:`trajectory_coverage_reward`
  scan it over one trajectory.
* :func:`anneal` - the meta-testing exploration probability ``p_e`` (Alg. 2 line 3).

Everything works on one trajectory / one dataset with static shapes; batch with ``vmap``.
Time-major arrays are ``[T]``; ``done [T]`` marks the last step of an episode (the transition
at ``t`` ends it), so a concatenated rollout of several episodes is handled without crossing
episode boundaries.

Hyperparameters of the paper (App. B.2, Table 1): ``R* = 1`` (sparse-reward tasks), relabel
``gamma = 0.05``, ``f_d(x) = 1 / x^5``, L2 distance.
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
from flax import struct

from metajax.algos.mesa.kmeans import assign

Array = jax.Array

# --- Eq. 5: relabelling ---------------------------------------------------------------------


@struct.dataclass
class Relabelled:
    """Per-step results of the Eq. 5 scan over ``[T]`` steps.

    * ``r_hat``: ``[T]`` float32, the densified reward (Eq. 5);
    * ``target``: ``[T]`` float32, ``r_{t'}`` of the first step ``t' >= t`` of the same episode
      with a positive reward (``r_t`` itself when ``r_t > 0``; 0 when there is none);
    * ``has_target``: ``[T]`` bool, such a ``t'`` exists;
    * ``steps``: ``[T]`` int32, ``t' - t`` (0 when ``r_t > 0``; meaningless without a target).
    """

    r_hat: Array
    target: Array
    has_target: Array
    steps: Array


def _done_or_false(done: Array | None, rewards: Array) -> Array:
    if done is None:
        return jnp.zeros(rewards.shape, bool)
    chex.assert_equal_shape([done, rewards])
    return done.astype(bool)


def relabel(rewards: Array, gamma: float, done: Array | None = None) -> Relabelled:
    """Eq. 5 on one trajectory ``rewards [T]`` (optional ``done [T]``), with the bookkeeping
    :func:`dataset_keep` needs. See :func:`relabel_rewards`."""
    chex.assert_rank(rewards, 1)
    rewards = rewards.astype(jnp.float32)
    done = _done_or_false(done, rewards)

    def step(carry, inp):
        value, target, has, steps = carry  # as seen from step t + 1
        r, d = inp
        # the episode ends at t: nothing after t may be used
        value, target, has = (jnp.where(d, 0.0, value), jnp.where(d, 0.0, target), has & ~d)
        pos = r > 0
        value = jnp.where(pos, r, gamma * value)
        target = jnp.where(pos, r, target)
        has = pos | has
        steps = jnp.where(pos, 0, steps + 1)
        out = (value, target, has, steps)
        return out, out

    init = (jnp.float32(0.0), jnp.float32(0.0), jnp.bool_(False), jnp.int32(0))
    _, (r_hat, target, has, steps) = jax.lax.scan(step, init, (rewards, done), reverse=True)
    return Relabelled(r_hat=r_hat, target=target, has_target=has, steps=steps)


def relabel_rewards(rewards: Array, gamma: float, done: Array | None = None) -> Array:
    """Eq. 5, the densified reward of one trajectory: ``[T] -> [T]``.

    ``r_hat_t = r_t`` if ``r_t > 0``, else ``gamma^(t'-t) r_{t'}`` with ``t'`` the first later
    step of the same episode with ``r_{t'} > 0``, and 0 if there is none. Eq. 5 defines only the
    cases ``r_t = 0`` and ``r_t > 0``; a negative reward is treated as "no reward" (relabelled).
    With ``done [T]`` (True on the last step of an episode) relabelling never reaches past an
    episode end. Batch with ``jax.vmap``.
    """
    return relabel(rewards, gamma, done).r_hat


def dataset_keep(
    rewards: Array,
    threshold: float,
    done: Array | None = None,
    window: int | None = None,
) -> Array:
    """Which pairs of one trajectory enter ``M_*``: ``[T]`` bool.

    The paper: "If the reward r_t is higher than a threshold R*, we call this joint state-action
    pair (s_t, a_t) valuable and store it into a dataset M_*" (Alg. 1 line 5 writes
    ``R(tau) >= R*``), and for a zero-reward pair that "leads to a valuable state-action pair
    (s_t', a_t') later in the same trajectory. We also put these relabeled pairs into the
    dataset M_*". Hence the rule implemented here:

    * ``r_t >= threshold`` (an original valuable pair), or
    * ``r_t <= 0`` and the pair's Eq. 5 target, the first positive reward ``r_{t'}`` later in the
      same episode, is valuable: ``r_{t'} >= threshold`` (a relabelled predecessor; its
      relabelled reward ``gamma^(t'-t) r_{t'}`` is positive, but it is *not* compared to
      ``R*``: with ``R* = 1`` and ``gamma = 0.05`` that would drop every relabelled pair).

    A pair with ``0 < r_t < threshold`` is not kept, nor are its predecessors (``t'`` is the
    first positive step, as in Eq. 5). ``window`` (optional) keeps only predecessors at most
    ``window`` steps before ``t'``; ``None`` keeps all of them, as the paper states. The test is
    on the event "a valuable pair follows", not on ``r_hat > 0``, so it does not depend on
    ``gamma^(t'-t)`` underflowing float32.
    """
    lab = relabel(rewards, 1.0, done)
    original = rewards >= threshold
    predecessor = (rewards <= 0) & lab.has_target & (lab.target >= threshold)
    if window is not None:
        predecessor = predecessor & (lab.steps <= window)
    return original | predecessor


# --- the high-reward dataset M_* ------------------------------------------------------------


@struct.dataclass
class HighRewardDataset:
    """``M_*``: joint (state, action) vectors of valuable pairs, fixed capacity ``C``.

    * ``data``: ``[C, D]`` float32 (rows outside ``mask`` are meaningless);
    * ``mask``: ``[C]`` bool, row holds a pair;
    * ``count``: ``[]`` int32, pairs ever offered with ``keep`` (may exceed ``C``);
    * ``value``: ``[C]`` float32, the (relabelled, Eq. 5) reward ``r_hat`` of each pair: the
      "derived positive reward" Eq. 6 assigns to a visit near that pair.
    """

    data: Array
    mask: Array
    count: Array
    value: Array

    @property
    def capacity(self) -> int:
        return self.data.shape[0]


def dataset_init(capacity: int, dim: int) -> HighRewardDataset:
    """An empty ``M_*`` for ``capacity`` pairs of ``dim`` features."""
    if capacity < 1 or dim < 1:
        raise ValueError(f"capacity and dim must be >= 1, got {capacity}, {dim}")
    return HighRewardDataset(
        data=jnp.zeros((capacity, dim), jnp.float32),
        mask=jnp.zeros((capacity,), bool),
        count=jnp.int32(0),
        value=jnp.zeros((capacity,), jnp.float32),
    )


def dataset_merge(datasets: HighRewardDataset) -> HighRewardDataset:
    """One ``M_*`` from a stack of ``[B]`` datasets (e.g. one per training task, built under
    ``vmap``): capacity ``B * C``, every stored row kept (Alg. 1 line 5, the union).

    The stored rows are moved to the front (in their stacked order), so that :func:`nearest`
    scans only the filled part of the merged capacity."""
    b, c, d = datasets.data.shape
    mask = datasets.mask.reshape(b * c)
    order = jnp.argsort(~mask, stable=True)
    return HighRewardDataset(
        data=datasets.data.reshape(b * c, d)[order],
        mask=mask[order],
        count=jnp.sum(datasets.count).astype(jnp.int32),
        value=datasets.value.reshape(b * c)[order],
    )


def dataset_add(
    ds: HighRewardDataset,
    x: Array,
    keep: Array,
    key: Array | None = None,
    value: Array | None = None,
) -> HighRewardDataset:
    """Store the rows ``x [B, D]`` with ``keep [B]`` into ``M_*`` (jittable, static ``B``);
    ``value [B]`` (default 1) is each row's reward ``r_hat``.

    The paper's ``M_*`` is an unbounded union over all B training tasks; a fixed capacity must
    drop pairs once full. Two rules, both exactly equal to adding the kept rows one by one:

    * ``key=None``: ring buffer - the ``n``-th kept pair ever goes to slot ``n mod C`` (the
      oldest pairs are overwritten first; fine when ``C`` holds every pair).
    * ``key`` given: reservoir sampling (Vitter's Algorithm R) - the ``n``-th pair goes to slot
      ``n`` while ``n < C``, then replaces slot ``j ~ U{0..n}`` if ``j < C``. ``M_*`` then stays a
      uniform sample of every pair seen, so early training tasks are not forgotten.

    Within one call, slots hit twice go to the later row (sequential semantics).
    """
    chex.assert_rank([x, keep], [2, 1])
    chex.assert_equal_shape_prefix([x, keep], 1)
    chex.assert_equal_shape_suffix([x, ds.data], 1)
    c, b = ds.capacity, x.shape[0]
    keep = keep.astype(bool)
    rank = jnp.cumsum(keep.astype(jnp.int32)) - 1
    n = ds.count + rank  # index of each kept row among all pairs ever kept
    if key is None:
        slot = n % c
    else:
        j = jax.random.randint(key, (b,), 0, n + 1)
        slot = jnp.where(n < c, n, jnp.where(j < c, j, c))
    slot = jnp.where(keep, slot, c)  # c = out of range = dropped
    # last writer wins on duplicate slots
    row = jnp.arange(b, dtype=jnp.int32)
    winner = jax.ops.segment_max(row, slot, num_segments=c + 1)
    slot = jnp.where(winner[slot] == row, slot, c)
    value = jnp.ones((b,), jnp.float32) if value is None else value.astype(jnp.float32)
    chex.assert_shape(value, (b,))
    return HighRewardDataset(
        data=ds.data.at[slot].set(x.astype(jnp.float32), mode="drop"),
        mask=ds.mask.at[slot].set(True, mode="drop"),
        count=ds.count + jnp.sum(keep, dtype=jnp.int32),
        value=ds.value.at[slot].set(value, mode="drop"),
    )


# --- Eq. 6: coverage reward -----------------------------------------------------------------


def leave_one_task_out(datasets: HighRewardDataset, chunk: int | None = None) -> Array:
    """For a stack of ``[B]`` per-task datasets (capacity ``C`` each), the distance of every
    stored pair of task ``b`` to the nearest stored pair of the *other* tasks: ``[B, C]``
    float32, ``inf`` for empty rows (and when no other task stored anything).

    A coverage radius chosen from these uses training tasks only: how far one task's valuable
    pairs lie from those of the rest is what an unseen task's pairs would be, if it is drawn
    from the same distribution."""
    b, c, d = datasets.data.shape

    def one(i: Array) -> Array:
        others = HighRewardDataset(data=datasets.data.reshape(b * c, d),
                                   mask=(datasets.mask & (jnp.arange(b) != i)[:, None]
                                         ).reshape(b * c),
                                   count=jnp.zeros((), jnp.int32),
                                   value=datasets.value.reshape(b * c))
        dist = min_distance(others, datasets.data[i], chunk)
        return jnp.where(datasets.mask[i], dist, jnp.inf)

    return jax.lax.map(one, jnp.arange(b))


def radius_from_training(datasets: HighRewardDataset, quantile: float,
                         chunk: int | None = None) -> Array:
    """``[]`` float32: the ``quantile`` of :func:`leave_one_task_out` over every stored pair
    (a radius within which that share of a task's valuable pairs have a neighbour from another
    training task); ``inf`` when no pair has one."""
    d = leave_one_task_out(datasets, chunk).reshape(-1)
    finite = jnp.isfinite(d)
    n = jnp.sum(finite)
    srt = jnp.sort(jnp.where(finite, d, jnp.inf))
    idx = jnp.clip(jnp.ceil(quantile * n).astype(jnp.int32) - 1, 0, d.shape[0] - 1)
    return jnp.where(n > 0, srt[idx], jnp.inf)


def min_distance(ds: HighRewardDataset, x: Array, chunk: int | None = None) -> Array:
    """``min_{d in M_*} ||x_i - d||_2`` for each row of ``x [B, D]``: ``[B]`` float32.

    Exact differences (no ``|x|^2 - 2 x.d + |d|^2`` cancellation, no TF32 matmul, as the result
    is compared to a small ``eps``), scanned over ``M_*`` in chunks of ``chunk`` rows (memory
    ``[B, chunk, D]``; ``None`` = one chunk). ``inf`` when ``M_*`` is empty.
    """
    return nearest(ds, x, chunk)[0]


def nearest(ds: HighRewardDataset, x: Array, chunk: int | None = None) -> tuple[Array, Array]:
    """``(distance [B], index [B] int32)`` of the nearest stored pair of ``M_*`` to each row
    of ``x [B, D]`` (see :func:`min_distance`; ties go to the lowest index; index 0 and
    distance ``inf`` when ``M_*`` is empty).

    Chunks after the last stored row are skipped (a ``while_loop``), so a large capacity that
    is mostly empty costs only its filled chunks when the stored rows come first (as after
    :func:`dataset_merge` or :func:`dataset_add`)."""
    chex.assert_rank(x, 2)
    chex.assert_equal_shape_suffix([x, ds.data], 1)
    c, d = ds.data.shape
    chunk = c if chunk is None else max(1, min(int(chunk), c))
    n_chunks = -(-c // chunk)
    pad = n_chunks * chunk - c
    data = jnp.pad(ds.data, ((0, pad), (0, 0))).reshape(n_chunks, chunk, d)
    mask = jnp.pad(ds.mask, (0, pad)).reshape(n_chunks, chunk)
    x = x.astype(jnp.float32)
    # chunks up to the one holding the last stored row
    needed = jnp.max(jnp.where(jnp.any(mask, -1), jnp.arange(n_chunks) + 1, 0))

    def body(carry: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        i, best, arg = carry
        rows, valid = data[i], mask[i]
        d2 = jnp.sum((x[:, None, :] - rows[None, :, :]) ** 2, -1)  # [B, chunk]
        d2 = jnp.where(valid[None, :], d2, jnp.inf)
        j = jnp.argmin(d2, -1)
        m = jnp.take_along_axis(d2, j[:, None], -1)[:, 0]
        better = m < best
        return i + 1, jnp.where(better, m, best), jnp.where(better, i * chunk + j, arg)

    init = (jnp.int32(0), jnp.full(x.shape[0], jnp.inf, jnp.float32),
            jnp.zeros(x.shape[0], jnp.int32))
    _, best, arg = jax.lax.while_loop(lambda c: c[0] < needed, body, init)
    return jnp.sqrt(best), arg.astype(jnp.int32)


def count_decay(count: Array, power: float = 5.0) -> Array:
    """``f_d(x) = 1 / x^power`` (Table 1: ``1/x^5``), with ``f_d(x) = 1`` for ``x <= 1``.

    Counts passed here include the visit being rewarded (>= 1, see :func:`trajectory_counts`);
    ``x = 0`` is mapped to 1 only so that the function is safe everywhere.
    """
    return 1.0 / jnp.maximum(count.astype(jnp.float32), 1.0) ** power


def coverage_reward(
    r_hat: Array, dist: Array, eps: float, count: Array, power: float = 5.0
) -> Array:
    """Eq. 6: ``r_tilde = r_hat * f_d(N(phi(s, a))) * 1[min_d ||(s, a) - d|| < eps]``.

    ``r_hat``, ``dist`` (from :func:`min_distance`), ``count`` (from :func:`trajectory_counts`)
    all ``[B]``; returns ``[B]`` float32. The indicator is strict, as in the paper.
    """
    chex.assert_equal_shape([r_hat, dist, count])
    inside = (dist < eps).astype(jnp.float32)
    return r_hat.astype(jnp.float32) * count_decay(count, power) * inside


# --- pseudo-counts and the coverage step (the one implementation the pipeline runs) ---------


def visit_counts(clusters: Array, num_clusters: int, mask: Array | None = None) -> Array:
    """Visits per cluster: ``clusters [N]`` int (``phi`` of each pair) -> ``[K]`` int32;
    rows outside ``mask [N]`` (e.g. padding) are not counted."""
    chex.assert_rank(clusters, 1)
    w = jnp.ones(clusters.shape, jnp.int32) if mask is None else mask.astype(jnp.int32)
    return jax.ops.segment_sum(w, clusters, num_segments=num_clusters)


def update_global(global_counts: Array, visits: Array) -> Array:
    """Alg. 1 line 19, ``N_hat <- N_hat + visits``: after an exploration policy is trained, add
    its visitation counts ``visits [K]`` (e.g. :func:`visit_counts` of its rollouts) so the next
    policy is rewarded for the part of ``M_*`` not yet covered. ``N_hat <- 0`` (line 1) is
    ``zeros([K], int32)``."""
    chex.assert_equal_shape([global_counts, visits])
    return global_counts + visits.astype(global_counts.dtype)


def count_step(counts: Array, global_counts: Array, cluster: Array,
               done: Array) -> tuple[Array, Array]:
    """One visit of the trajectory-level count ``N`` (Alg. 1 lines 10 and 15) in ``G`` games:
    ``counts [G, K]`` (each game's ``N``), ``global_counts [K]`` (``N_hat``), ``cluster [G]``
    (``phi(s_t, a_t)``), ``done [G]`` (the episode ends after this visit).

    Returns ``(seen [G], counts [G, K])``: ``seen = N(phi(s_t, a_t))`` *after* this visit's
    increment, and the counts for the next step, restarted from ``N_hat`` where ``done``.

    Why after: Alg. 1 computes the reward (line 13) before incrementing (line 15), but with
    ``N_hat = 0`` the first visit would then need ``f_d(0) = 1/0^5``, while the paper defines
    ``f_d: N -> [0, 1]`` and asks that "repeated visits to similar joint state-action pairs
    within one trajectory would result in a decreasing reward for each visit". Counting the
    current visit (as in #Exploration, ref. [37], which increments then rewards) gives
    ``f_d = 1, 1/32, 1/243, ...`` for the 1st, 2nd, 3rd visit: a decrease at every repeat.
    """
    chex.assert_rank([counts, global_counts, cluster, done], [2, 1, 1, 1])
    g = jnp.arange(counts.shape[0])
    counts = counts.at[g, cluster].add(1)
    seen = counts[g, cluster]
    counts = jnp.where(done[:, None], global_counts[None, :].astype(counts.dtype), counts)
    return seen, counts


def trajectory_counts(
    global_counts: Array, clusters: Array, done: Array | None = None
) -> tuple[Array, Array]:
    """:func:`count_step` scanned over one game's ``clusters [T]`` (optional ``done [T]``),
    ``N`` starting at ``N_hat = global_counts [K]``: ``(seen [T], final [K])``, ``final`` being
    the count at the end of the last (possibly partial) episode, before any restart."""
    chex.assert_rank([global_counts, clusters], 1)
    global_counts = global_counts.astype(jnp.int32)
    done = _done_or_false(done, clusters)

    def step(carry: tuple[Array, Array], inp: tuple[Array, Array]):
        n, _ = carry
        c, d = inp
        seen, after = count_step(n, global_counts, c[None], jnp.zeros((1,), bool))
        return (jnp.where(d, global_counts[None], after), after), seen[0]

    init = (global_counts[None], global_counts[None])
    (_, final), seen = jax.lax.scan(step, init, (clusters.astype(jnp.int32), done))
    return seen, final[0]


def coverage_step(
    ds: HighRewardDataset,
    centers: Array,
    counts: Array,
    global_counts: Array,
    sa: Array,
    done: Array,
    eps: float,
    power: float = 5.0,
    chunk: int | None = None,
) -> tuple[Array, Array, Array]:
    """Eq. 6 for one step of ``G`` games: ``(reward [G], inside [G] bool, counts [G, K])``.

    ``ds``: ``M_*``; ``centers [K, D]``: its k-means centers (the hash ``phi`` is
    :func:`metajax.algos.mesa.kmeans.assign`); ``counts [G, K]``: each game's trajectory count
    ``N``; ``global_counts [K]``: ``N_hat``; ``sa [G, D]``: the visited joint (state, action)
    vectors, in the layout of ``M_*``; ``done [G]``: the episode ends after this step.

    A visit within ``eps`` of ``M_*`` earns the derived reward ``r_hat`` of its nearest stored
    pair (``ds.value``, Eq. 5 at collection) times ``f_d`` of its cluster's count
    (:func:`count_step`); every visit is counted, inside ``eps`` or not."""
    dist, idx = nearest(ds, sa, chunk)
    seen, counts = count_step(counts, global_counts, assign(centers, sa), done)
    return coverage_reward(ds.value[idx], dist, eps, seen, power), dist < eps, counts


def trajectory_coverage_reward(
    ds: HighRewardDataset,
    centers: Array,
    global_counts: Array,
    sa: Array,
    eps: float,
    done: Array | None = None,
    power: float = 5.0,
    chunk: int | None = None,
) -> Array:
    """:func:`coverage_step` scanned over one game's trajectory ``sa [T, D]`` (optional episode
    ends ``done [T]``; ``N`` starts at ``N_hat = global_counts [K]`` and restarts from it after
    each end): ``[T]`` float32 coverage rewards."""
    chex.assert_rank(sa, 2)
    done = _done_or_false(done, sa[:, 0])
    g = global_counts.astype(jnp.int32)

    def step(n: Array, inp: tuple[Array, Array]) -> tuple[Array, Array]:
        x, d = inp
        r, _, n = coverage_step(ds, centers, n, g, x[None], d[None], eps, power, chunk)
        return n, r[0]

    _, r = jax.lax.scan(step, g[None], (sa, done))
    return r


# --- Alg. 2: annealed exploration probability -----------------------------------------------


def _linear(frac: Array, rate: float) -> Array:
    del rate
    return 1.0 - frac


def _exponential(frac: Array, rate: float) -> Array:
    # exp(-rate * frac), rescaled to run from exactly 1 (frac = 0) to exactly 0 (frac = 1)
    floor = jnp.exp(-rate)
    return (jnp.exp(-rate * frac) - floor) / (1.0 - floor)


#: Shapes of the schedule, ``frac in [0, 1] -> weight of start`` (1 at 0, 0 at 1).
SCHEDULES: dict[str, Callable[[Array, float], Array]] = {
    "linear": _linear,
    "exponential": _exponential,
}


def anneal(
    step: Array | int,
    start: float,
    end: float,
    decay_steps: int,
    kind: str = "linear",
    rate: float = 5.0,
) -> Array:
    """``p_e`` at ``step`` (Alg. 2 line 3): ``start`` at 0, ``end`` from ``decay_steps`` on.

    ``kind="linear"``: straight line; ``kind="exponential"``: ``exp(-rate * step/decay_steps)``
    rescaled to hit ``start`` and ``end`` exactly (fast early decay; ``rate`` > 0). The paper
    only asks for a schedule that gives "more rollouts at the initial stage of the training"
    and is "gradually turned off later". Jittable (``kind`` is static).
    """
    if kind not in SCHEDULES:
        raise ValueError(f"kind must be one of {tuple(SCHEDULES)}, got {kind!r}")
    if decay_steps < 1:
        raise ValueError(f"decay_steps must be >= 1, got {decay_steps}")
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / decay_steps, 0.0, 1.0)
    w = SCHEDULES[kind](frac, rate)
    start, end = jnp.asarray(start, jnp.float32), jnp.asarray(end, jnp.float32)
    return end + (start - end) * w
