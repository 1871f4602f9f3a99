"""MPE climb game (MESA paper, Sec. 6.3 and App. B.1.2).

``G~(n, k, u, U, L)``: ``n`` agents and ``U`` non-overlapping landmarks at positions ``L`` in a
particle world. Let ``f_j`` be the number of agents on landmark ``j``, an agent being *on* a
landmark when the distance between their centers is below the landmark radius. The reward,
shared by every agent of the game, is

* ``1`` if ``f_u = k`` and every agent is on some landmark;
* ``1 - delta`` if ``f_u = 0`` and every agent is on some landmark;
* ``0`` otherwise.

``u`` (the target landmark) and ``k`` are part of the task and are not observed; they can only be
inferred from the reward. Landmarks do not move and do not collide.

Task (:class:`MPEClimbTask`, a pytree; build with ``env.make_task`` or sample with
``env.sample_task`` / ``env.random_task`` / ``env.sample_tasks``):

* ``n_agents``: ``[]`` int32 in ``1..max_agents``;
* ``n_landmarks``: ``[]`` int32 ``U`` in ``1..max_objects``;
* ``u``: ``[]`` int32 target landmark in ``0..U-1``;
* ``k``: ``[]`` int32 in ``1..n_agents``, agents required on the target;
* ``delta``: ``[]`` float32, the sub-optimal reward is ``1 - delta`` (1/2 in MESA);
* ``landmarks``: ``[M, 2]`` float32 landmark centers (rows ``>= U`` are padding);
* ``agent_start``: ``[A, 2]`` float32 initial agent positions (rows ``>= n_agents`` padding);
* ``fixed_start``: ``[]`` bool, agents start at ``agent_start`` if True, else uniformly in
  ``[-1, 1]^2`` at every reset.

The landmark distribution ``Psi`` (our choice; MESA leaves it open): centers uniform in
``[-landmark_range, landmark_range]^2`` (0.9) with rejection, so that centers are at least
``min_separation`` (default ``2 * landmark_radius``, i.e. the discs do not overlap) apart.
Sampled tasks fix ``fixed_start=True`` with ``agent_start`` uniform in ``[-1, 1]^2``: MESA's
task difficulty (Sec. 6.5) is defined through the agents' initial positions, which makes them
part of the task. :meth:`MPEClimb.task_difficulty` is that difficulty;
:meth:`MPEClimb.task_description` encodes ``(u, k)`` for goal-conditioned baselines.

Observation (``A = max_agents``, ``M = max_objects``):

* ``self``: ``[A, 4]`` float32 ``(vx, vy, x, y)``;
* ``agents``: ``[A, A, 4]`` float32, for agent ``j`` seen by ``i``: ``(x_j - x_i, y_j - y_i,
  vx_j, vy_j)``; ``agents_mask``: ``[A, A]``, active ``j != i``;
* ``objects``: ``[A, M, 2]`` float32 landmark center relative to the agent;
  ``objects_mask``: ``[A, M]``, the game's landmarks;
* ``team``: ``[A]`` int32 zeros; ``agent_mask``: ``[A]`` the game's agents.

Action: see :class:`envs.particle.base.ParticleEnv` (``discrete`` ``[A]`` int32 by default).

Reward: ``[A]`` float32, the shared reward above for every agent of the game; 0 for padding.
Never terminates; truncated at ``episode_length``. Default 100: MESA does not state the
episode length of its MPE tasks, but App. C says 20 steps are less than a third of an episode;
100 leaves room for that and is a round number (configurable).

Extras: ``on_target`` ``[]`` float32 ``f_u``; ``all_on`` ``[]`` bool, every agent is on some
landmark; ``high_reward`` ``[]`` bool, the reward is 1 (MESA Fig. 7 counts these transitions).

Sizes (configurable): agents 0.05, landmark radius 0.1 (two agents fit on one landmark without
overlapping); agents collide with each other (``agent_collide``), as MPE agents do by default.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs.core import EnvError, is_concrete
from envs.particle.base import ParticleEnv, ParticleState, entity_uniform
from envs.particle.physics import Bodies, pairwise_distance

Array = jax.Array


@struct.dataclass
class MPEClimbTask:
    """An MPE climb game (see module docstring)."""

    n_agents: Array
    n_landmarks: Array
    u: Array
    k: Array
    delta: Array
    landmarks: Array
    agent_start: Array
    fixed_start: Array


class MPEClimb(ParticleEnv):
    """MPE climb game; see the module docstring for every field.

    Args:
      max_agents: agent slots (default 3, MESA's largest game).
      max_objects: landmark slots (default 6, MESA's largest game).
      episode_length: time limit (default 100, see module docstring).
      agent_size: agent radius (0.05).
      landmark_radius: an agent is on a landmark when its center is closer than this (0.1).
      agent_collide: agents exert contact forces on each other (default True).
      k: agents required on the target in sampled tasks (MESA fixes 2; clipped to the
        population).
      delta: sampled tasks' sub-optimal reward is ``1 - delta`` (1/2).
      n_agents_choices, n_landmarks_choices: populations and landmark counts drawn by
        :meth:`sample_task` (default: ``max_agents`` and ``max_objects`` only).
      fixed_start: whether sampled tasks fix the agents' initial positions (default True).
      landmark_range: landmark centers are sampled in ``[-landmark_range, landmark_range]^2``.
      min_separation: minimum distance between sampled landmark centers (default
        ``2 * landmark_radius``).
      landmark_tries: candidates drawn per landmark by the rejection sampler (64). If none is
        far enough from the landmarks already placed, the candidate farthest from them is taken.
      action_type, integration: see :class:`~envs.particle.base.ParticleEnv`.
    """

    name = "mpe_climb"
    stochastic_rules = False
    default_episode_length = 100

    def __init__(
        self,
        max_agents: int = 3,
        max_objects: int = 6,
        episode_length: int | None = None,
        agent_size: float = 0.05,
        landmark_radius: float = 0.1,
        agent_collide: bool = True,
        k: int = 2,
        delta: float = 0.5,
        n_agents_choices: tuple[int, ...] | None = None,
        n_landmarks_choices: tuple[int, ...] | None = None,
        fixed_start: bool = True,
        landmark_range: float = 0.9,
        min_separation: float | None = None,
        landmark_tries: int = 64,
        action_type: str = "discrete",
        integration: str = "velocity_first",
    ):
        super().__init__(max_agents, max_objects, episode_length, action_type, integration)
        if float(agent_size) <= 0 or float(landmark_radius) <= 0:
            raise EnvError(f"{self.name}: agent_size and landmark_radius must be positive")
        if int(k) < 1:
            raise EnvError(f"{self.name}: k must be >= 1, got {k}")
        if int(landmark_tries) < 1:
            raise EnvError(f"{self.name}: landmark_tries must be >= 1, got {landmark_tries}")
        self.agent_size = float(agent_size)
        self.landmark_radius = float(landmark_radius)
        self.agent_collide = bool(agent_collide)
        self.k = int(k)
        self.delta = float(delta)
        self.fixed_start = bool(fixed_start)
        self.landmark_range = float(landmark_range)
        self.min_separation = float(
            2 * self.landmark_radius if min_separation is None else min_separation
        )
        self.landmark_tries = int(landmark_tries)
        n_agents_choices = n_agents_choices or (self.max_agents,)
        n_landmarks_choices = n_landmarks_choices or (self.max_objects,)
        self.check_count("n_agents_choices", n_agents_choices, self.max_agents, 1)
        self.check_count("n_landmarks_choices", n_landmarks_choices, self.max_objects, 1)
        self.n_agents_choices = tuple(int(n) for n in n_agents_choices)
        self.n_landmarks_choices = tuple(int(n) for n in n_landmarks_choices)
        self._candidates = None  # jitted batch sampler of sample_tasks, built on first use

    # --- tasks -----------------------------------------------------------------------------
    def make_task(
        self,
        landmarks: Any,
        u: int = 0,
        k: int = 2,
        n_agents: int | None = None,
        agent_start: Any = None,
        fixed_start: bool | None = None,
        delta: float = 0.5,
        n_landmarks: int | None = None,
    ) -> MPEClimbTask:
        """A concrete game.

        Args:
          landmarks: ``[U, 2]`` landmark centers (``U <= max_objects``), padded here to ``M``;
            or ``[M, 2]`` with ``n_landmarks`` saying how many are used.
          u, k, delta: target landmark, agents required on it, sub-optimal gap.
          n_agents: population (default: rows of ``agent_start``, else ``max_agents``).
          agent_start: ``[n_agents, 2]`` (or ``[A, 2]``) initial positions; default none
            (zeros), which requires ``fixed_start=False``.
          fixed_start: default True when ``agent_start`` is given, else False.

        Raises:
          EnvError: a count above the env's maxima, ``u``/``k`` out of range, overlapping
            landmarks (centers closer than ``2 * landmark_radius``), or bad shapes.
        """
        lm = np.asarray(landmarks, np.float32)
        if lm.ndim != 2 or lm.shape[1] != 2:
            raise EnvError(f"{self.name}: landmarks must have shape [U, 2], got {lm.shape}")
        n_landmarks = lm.shape[0] if n_landmarks is None else int(n_landmarks)
        self.check_count("n_landmarks", n_landmarks, self.max_objects, 1)
        if n_landmarks > lm.shape[0]:
            raise EnvError(
                f"{self.name}: n_landmarks={n_landmarks} but only {lm.shape[0]} landmarks given"
            )
        if agent_start is None:
            start = np.zeros((0, 2), np.float32)
            n_agents = self.max_agents if n_agents is None else int(n_agents)
            fixed_start = False if fixed_start is None else bool(fixed_start)
            if fixed_start:
                raise EnvError(f"{self.name}: fixed_start=True needs agent_start")
        else:
            start = np.asarray(agent_start, np.float32)
            if start.ndim != 2 or start.shape[1] != 2:
                raise EnvError(
                    f"{self.name}: agent_start must have shape [n_agents, 2], got {start.shape}"
                )
            n_agents = start.shape[0] if n_agents is None else int(n_agents)
            fixed_start = True if fixed_start is None else bool(fixed_start)
            if n_agents > start.shape[0]:
                raise EnvError(
                    f"{self.name}: n_agents={n_agents} but only {start.shape[0]} start "
                    "positions given"
                )
        self.check_count("n_agents", n_agents, self.max_agents, 1)
        used = lm[:n_landmarks]
        d = np.sqrt(np.sum((used[:, None] - used[None]) ** 2, axis=-1))
        d[np.diag_indices(n_landmarks)] = np.inf
        if n_landmarks > 1 and d.min() < 2 * self.landmark_radius:
            i, j = np.unravel_index(np.argmin(d), d.shape)
            raise EnvError(
                f"{self.name}: landmarks {i} and {j} overlap (distance {d[i, j]:.3f} < "
                f"2 * landmark_radius = {2 * self.landmark_radius})"
            )
        pad_lm = np.zeros((self.max_objects, 2), np.float32)
        pad_lm[:n_landmarks] = used
        pad_start = np.zeros((self.max_agents, 2), np.float32)
        pad_start[: min(n_agents, start.shape[0])] = start[:n_agents]
        task = MPEClimbTask(
            n_agents=jnp.asarray(n_agents, jnp.int32),
            n_landmarks=jnp.asarray(n_landmarks, jnp.int32),
            u=jnp.asarray(u, jnp.int32),
            k=jnp.asarray(k, jnp.int32),
            delta=jnp.asarray(delta, jnp.float32),
            landmarks=jnp.asarray(pad_lm),
            agent_start=jnp.asarray(pad_start),
            fixed_start=jnp.asarray(fixed_start, bool),
        )
        return self.validate_task(task)

    def validate_task(self, task: MPEClimbTask) -> MPEClimbTask:
        """Check counts against the maxima, ``0 <= u < n_landmarks``, ``1 <= k <= n_agents``
        and the shapes of ``landmarks`` / ``agent_start`` (leading batch axes allowed)."""
        a, m = self.max_agents, self.max_objects
        if tuple(task.landmarks.shape[-2:]) != (m, 2):
            raise EnvError(
                f"{self.name}: task.landmarks has shape {tuple(task.landmarks.shape)}, expected "
                f"[..., {m}, 2] (max_objects = {m})"
            )
        if tuple(task.agent_start.shape[-2:]) != (a, 2):
            raise EnvError(
                f"{self.name}: task.agent_start has shape {tuple(task.agent_start.shape)}, "
                f"expected [..., {a}, 2] (max_agents = {a})"
            )
        self.check_count("n_agents", task.n_agents, a, 1)
        self.check_count("n_landmarks", task.n_landmarks, m, 1)
        if is_concrete((task.u, task.n_landmarks)):
            u, n = np.asarray(task.u), np.asarray(task.n_landmarks)
            if np.any(u < 0) or np.any(u >= n):
                raise EnvError(
                    f"{self.name}: u={u.tolist()} must be in 0..n_landmarks-1 "
                    f"(n_landmarks={n.tolist()})"
                )
        if is_concrete((task.k, task.n_agents)):
            k, n = np.asarray(task.k), np.asarray(task.n_agents)
            if np.any(k < 1) or np.any(k > n):
                raise EnvError(
                    f"{self.name}: k={k.tolist()} must be in 1..n_agents (n_agents={n.tolist()})"
                )
        return task

    def sample_landmarks(self, key: Array) -> Array:
        """``[M, 2]`` landmark centers from ``Psi`` (jittable).

        Landmark ``i`` takes the first of ``landmark_tries`` candidates (drawn from
        ``fold_in(key, i)``, uniform in ``[-landmark_range, landmark_range]^2``) that is at least
        ``min_separation`` from landmarks ``0..i-1``, else the candidate farthest from them. Row
        ``i`` depends only on ``key`` and ``i``: the first ``U`` rows are the same for any
        ``max_objects >= U``.
        """
        m, t, r = self.max_objects, self.landmark_tries, self.landmark_range
        cands = jax.vmap(
            lambda i: jax.random.uniform(jax.random.fold_in(key, i), (t, 2), jnp.float32, -r, r)
        )(jnp.arange(m))  # [M, T, 2]

        def place(placed: Array, i: Array) -> tuple[Array, None]:
            c = cands[i]
            d = pairwise_distance(c, placed)  # [T, M]
            d = jnp.where(jnp.arange(m)[None, :] < i, d, jnp.inf)
            nearest = jnp.min(d, axis=1)  # [T]
            ok = nearest >= self.min_separation
            pick = jnp.where(jnp.any(ok), jnp.argmax(ok), jnp.argmax(nearest))
            return placed.at[i].set(c[pick]), None

        placed, _ = jax.lax.scan(place, jnp.zeros((m, 2), jnp.float32), jnp.arange(m))
        return placed

    def random_task(
        self,
        key: Array,
        n_agents: int | Array,
        n_landmarks: int | Array,
        k: int | Array | None = None,
        u: int | Array | None = None,
        fixed_start: bool | Array | None = None,
        delta: float | Array | None = None,
    ) -> MPEClimbTask:
        """A task with the given counts (jittable; counts may be traced).

        Landmarks from :meth:`sample_landmarks`, agent starts uniform in ``[-1, 1]^2`` (per
        agent, padding zero), ``u`` uniform in ``0..n_landmarks-1`` unless given, ``k`` the
        env's ``k`` clipped to ``n_agents`` unless given.
        """
        k_lm, k_start, k_u = jax.random.split(key, 3)
        n_agents = jnp.asarray(n_agents, jnp.int32)
        n_landmarks = jnp.asarray(n_landmarks, jnp.int32)
        active = jnp.arange(self.max_agents) < n_agents
        if u is None:
            u = jax.random.randint(k_u, (), 0, n_landmarks)
        if k is None:
            k = jnp.minimum(self.k, n_agents)
        lm = self.sample_landmarks(k_lm) * (jnp.arange(self.max_objects) < n_landmarks)[:, None]
        return MPEClimbTask(
            n_agents=n_agents,
            n_landmarks=n_landmarks,
            u=jnp.asarray(u, jnp.int32),
            k=jnp.asarray(k, jnp.int32),
            delta=jnp.asarray(self.delta if delta is None else delta, jnp.float32),
            landmarks=lm,
            agent_start=entity_uniform(k_start, self.max_agents) * active[:, None],
            fixed_start=jnp.asarray(self.fixed_start if fixed_start is None else fixed_start),
        )

    def sample_task(self, key: Array) -> MPEClimbTask:
        """Counts uniform over ``n_agents_choices`` / ``n_landmarks_choices``, then
        :meth:`random_task` (MESA's task space: ``u`` uniform, ``k`` fixed)."""
        k_n, k_m, k_task = jax.random.split(key, 3)
        n = jax.random.choice(k_n, jnp.asarray(self.n_agents_choices, jnp.int32))
        m = jax.random.choice(k_m, jnp.asarray(self.n_landmarks_choices, jnp.int32))
        return self.random_task(k_task, n, m)

    def sample_tasks(
        self,
        key: Array,
        n: int,
        n_agents: int | None = None,
        n_landmarks: int | None = None,
        k: int | None = None,
        difficulty: tuple[float | None, float | None] | None = None,
        batch: int = 1024,
        max_rounds: int = 64,
    ) -> MPEClimbTask:
        """``n`` tasks stacked on a leading axis (host-side; for train/test task sets).

        Candidates are drawn in jitted batches with :meth:`random_task` (counts from the
        arguments, else from the env's choices) and kept when :meth:`task_difficulty` lies in
        ``difficulty = (low, high)`` (either bound may be None; ``low <= d < high``). Positions
        are continuous, so tasks are distinct; split a set with e.g.
        ``jax.tree.map(lambda x: x[:n_train], tasks)``.

        Raises:
          EnvError: fewer than ``n`` tasks in the range after ``max_rounds`` batches.
        """
        low, high = difficulty or (None, None)
        low = -np.inf if low is None else float(low)
        high = np.inf if high is None else float(high)
        if self._candidates is None:

            def candidates(keys, n_agents, n_landmarks, k, has_n, has_m, has_k):
                def one(key):
                    k_n, k_m, k_task = jax.random.split(key, 3)
                    na = jnp.where(
                        has_n,
                        n_agents,
                        jax.random.choice(k_n, jnp.asarray(self.n_agents_choices, jnp.int32)),
                    )
                    nl = jnp.where(
                        has_m,
                        n_landmarks,
                        jax.random.choice(k_m, jnp.asarray(self.n_landmarks_choices, jnp.int32)),
                    )
                    kk = jnp.where(has_k, k, jnp.minimum(self.k, na))
                    task = self.random_task(k_task, na, nl, k=kk)
                    return task, self.task_difficulty(task)

                return jax.vmap(one)(keys)

            self._candidates = jax.jit(candidates)
        # Validate the requested counts against the maxima before sampling.
        if n_agents is not None:
            self.check_count("n_agents", n_agents, self.max_agents, 1)
        if n_landmarks is not None:
            self.check_count("n_landmarks", n_landmarks, self.max_objects, 1)
        if k is not None and n_agents is not None and not 1 <= k <= n_agents:
            raise EnvError(f"{self.name}: k={k} must be in 1..n_agents={n_agents}")
        args = (
            jnp.asarray(n_agents or 1, jnp.int32),
            jnp.asarray(n_landmarks or 1, jnp.int32),
            jnp.asarray(k or 1, jnp.int32),
            jnp.asarray(n_agents is not None),
            jnp.asarray(n_landmarks is not None),
            jnp.asarray(k is not None),
        )
        kept: list[Any] = []
        have = 0
        for _ in range(max_rounds):
            key, k_batch = jax.random.split(key)
            tasks, diff = self._candidates(jax.random.split(k_batch, batch), *args)
            diff = np.asarray(diff)
            idx = np.nonzero((diff >= low) & (diff < high))[0][: n - have]
            if idx.size:
                kept.append(jax.tree.map(lambda x, idx=idx: np.asarray(x)[idx], tasks))
                have += idx.size
            if have >= n:
                break
        if have < n:
            raise EnvError(
                f"{self.name}: found only {have} of {n} tasks with difficulty in [{low}, {high}) "
                f"after {max_rounds} batches of {batch}"
            )
        out = jax.tree.map(lambda *xs: jnp.asarray(np.concatenate(xs)), *kept)
        return self.validate_task(out)

    def task_difficulty(
        self, task: MPEClimbTask, kind: Literal["agent_landmark", "all"] = "agent_landmark"
    ) -> Array:
        """``[]`` float32 difficulty of one task (MESA Sec. 6.5); vmap it for a batch.

        ``kind="agent_landmark"`` (default): mean distance over all (agent start, landmark)
        pairs of the game, our reading of "the average pairwise distances between the landmark
        positions and the initial positions of the agents". ``kind="all"``: mean distance over
        all pairs of distinct points of the union of landmarks and agent starts. Uses
        ``agent_start`` even when ``fixed_start`` is False.
        """
        am = jnp.arange(self.max_agents) < task.n_agents
        lm = jnp.arange(self.max_objects) < task.n_landmarks
        if kind == "agent_landmark":
            d = pairwise_distance(task.agent_start, task.landmarks)  # [A, M]
            w = am[:, None] & lm[None, :]
        elif kind == "all":
            pts = jnp.concatenate([task.agent_start, task.landmarks], axis=0)
            mask = jnp.concatenate([am, lm])
            d = pairwise_distance(pts, pts)
            w = mask[:, None] & mask[None, :] & ~jnp.eye(mask.shape[0], dtype=bool)
        else:
            raise EnvError(f"{self.name}: unknown difficulty kind {kind!r}")
        return (jnp.sum(jnp.where(w, d, 0.0)) / jnp.maximum(jnp.sum(w), 1)).astype(jnp.float32)

    def task_description(self, task: MPEClimbTask) -> Array:
        """``[M + 1]`` float32 goal descriptor: one-hot of ``u`` over the landmark slots, then
        ``k / max_agents``. For goal-conditioned baselines only: MESA's agents must not see it.
        """
        onehot = jax.nn.one_hot(task.u, self.max_objects, dtype=jnp.float32)
        return jnp.concatenate([onehot, (task.k / self.max_agents)[None].astype(jnp.float32)])

    # --- dynamics --------------------------------------------------------------------------
    def bodies(self, state: ParticleState) -> Bodies:
        b = self.default_bodies(state.alive, self.agent_size)
        return b.replace(collide=b.collide & self.agent_collide)

    def accel(self, state: ParticleState) -> Array:
        return jnp.full((self.max_agents,), 5.0, jnp.float32)

    def landmark_mask(self, task: MPEClimbTask) -> Array:
        """``[M]`` bool: landmark slots in the game."""
        return jnp.arange(self.max_objects) < task.n_landmarks

    def object_mask(self, task: MPEClimbTask) -> Array:
        return self.landmark_mask(task)

    def object_sizes(self, state: ParticleState) -> Array:
        return jnp.full((self.max_objects,), self.landmark_radius, jnp.float32)

    def init_state(self, key: Array, task: MPEClimbTask) -> ParticleState:
        k_agents, k_next = jax.random.split(key)
        active = self.agent_mask(task)
        uniform = entity_uniform(k_agents, self.max_agents)
        pos = jnp.where(task.fixed_start, task.agent_start, uniform)
        return ParticleState(
            key=k_next,
            step=jnp.zeros((), jnp.int32),
            task=task,
            pos=pos * active[:, None],
            vel=jnp.zeros((self.max_agents, 2), jnp.float32),
            obj_pos=task.landmarks * self.landmark_mask(task)[:, None],
            alive=active,
        )

    def on_landmark(self, state: ParticleState) -> Array:
        """``[A, M]`` bool: active agent ``i`` is on the game's landmark ``j``."""
        dist = pairwise_distance(state.pos, state.obj_pos)
        mask = state.alive[:, None] & self.landmark_mask(state.task)[None, :]
        return (dist < self.landmark_radius) & mask

    def rules(self, state: ParticleState, key: Array):
        task = state.task
        active = state.alive
        on = self.on_landmark(state)
        f = jnp.sum(on, axis=0)  # [M]
        f_u = f[task.u]
        all_on = jnp.all(jnp.any(on, axis=1) | ~active)
        r = jnp.where(f_u == task.k, 1.0, jnp.where(f_u == 0, 1.0 - task.delta, 0.0))
        r = jnp.where(all_on, r, 0.0)
        reward = jnp.full((self.max_agents,), r, jnp.float32)
        extras = {
            "on_target": f_u.astype(jnp.float32),
            "all_on": all_on,
            "high_reward": all_on & (f_u == task.k),
        }
        discount = active.astype(jnp.float32)
        return state, reward, discount, jnp.asarray(False), extras
