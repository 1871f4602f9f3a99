"""Swimmer climb game (MESA paper Sec. 6.4, App. B.1.3) on the MuJoCo swimmer, simulated by MJX.

The body is MuJoCo's three-link swimmer (``brax/envs/assets/swimmer.xml``: capsule links in a
viscous fluid, ``density=4000``, ``viscosity=0.1``, two hinges ``rot2``, ``rot3`` limited to
``+-100`` degrees, motors with ``gear=150`` and ``ctrlrange=[-1, 1]``, ``timestep=0.01``),
stepped by brax's ``mjx`` pipeline (:class:`SwimmerPipeline`, a ``brax.envs.base.PipelineEnv``)
with frame skip 4, so one env step is 0.04 s. Brax's own ``swimmer`` env only accepts the
``generalized`` pipeline, which fails on jax >= 0.10.

It is split between two agents as in multi-agent MuJoCo's ``Swimmer 2x1``: agent 0 torques the
first hinge (``rot2``, actuator 0), agent 1 the second (``rot3``, actuator 1). With
``alpha_1, alpha_2`` the two hinge angles (``qpos[3]``, ``qpos[4]``, radians) and a target angle
``alpha``, both agents receive the climb-game reward

    1          if |alpha_1 - alpha| < eps and |alpha_2 - alpha| < eps,
    1 - delta  if both angles are at least eps away from alpha    (delta = 1/2),
    0          otherwise (exactly one hinge is within eps).

The paper calls ``eps`` "a very small angle" without a value; the default here is 5 degrees
(``0.0873`` rad). With a reset noise of ``+-0.1`` rad (5.7 degrees), agents start near 0, so the
sub-optimal ``1 - delta`` is what an episode earns unless both hinges are steered to the target.
The paper's task space is ``-30 deg < alpha < 30 deg``; MESA uses 30 training and 6 test tasks.

Task (:class:`SwimmerTask`, a pytree; build with ``env.make_task``):

* ``alpha``: ``[]`` float32 target angle in radians, strictly inside ``(-30 deg, 30 deg)``;
* ``eps``: ``[]`` float32 half-width of the target band in radians, in ``(0, pi/2]``;
* ``delta``: ``[]`` float32 in ``[0, 1]``, penalty of the sub-optimal equilibrium (0.5).

State (:class:`SwimmerState`): ``key``, ``step`` ``[]`` int32, ``task`` and ``pipeline_state``
(a ``brax.mjx.base.State``; ``qpos = [x, y, rot, rot2, rot3]``, ``qvel`` likewise).

Observation (``A = 2``, ``M = 1``; ``q_i``, ``w_i`` are agent ``i``'s hinge angle and angular
velocity, ``j`` the other agent). ``locality`` (static) selects multi-agent MuJoCo's views:

* ``self``: ``[2, d_self]`` float32.

  - ``locality=None`` (default, the global view): ``[qpos[2:], qvel]``, ``d_self = 8``, the same
    for both agents (``rot, rot2, rot3, vx, vy, w_rot, w2, w3``);
  - ``locality=0``: the agent's own joint ``[q_i, w_i]``, ``d_self = 2``;
  - ``locality=1``: its own joint and the other hinge's angle ``[q_i, w_i, q_j]``,
    ``d_self = 3``.

* ``agents``: ``[2, 2, 2]`` float32, row ``i`` column ``j != i`` is ``(q_j, w_j)`` for the global
  view, ``(q_j, 0)`` for ``locality=1`` (the velocity is not in the local view); for
  ``locality=0`` the other agent is not observed (zeros). ``agents_mask``: ``[2, 2]`` bool,
  off-diagonal (all False for ``locality=0``).
* ``objects``: ``[2, 1, 1]`` float32 zeros, ``objects_mask`` ``[2, 1]`` all False (one dummy slot:
  a zero-size axis would break attention softmaxes).
* ``team``: ``[2]`` int32 zeros; ``agent_mask``: ``[2]`` bool, both True.

Action (static ``action_type``):

* ``"continuous"`` (default): ``[2, 1]`` float32 torque command in ``[-1, 1]`` (values outside are
  clipped, as MuJoCo's ``ctrlrange`` does); the joint torque is ``150 * action``.
* ``"discrete"``: ``[2]`` int32 in ``0..n_bins-1``, bin ``b`` is the torque command
  ``-1 + 2 b / (n_bins - 1)`` (``n_bins = 11`` evenly spaced points, as MESA's QMIX baseline).
  Concrete values out of range raise :class:`~envs.core.EnvError`; traced ones are clipped.

A wrong shape or dtype raises :class:`~envs.core.EnvError` at trace time.

Reward: ``[2]`` float32, the shared reward above (same value for both agents), computed on the
state after the step. Never terminates; truncated at ``episode_length`` (default 1000, MuJoCo's
swimmer; MESA's MADDPG return of 499 is ``0.5 * 1000`` minus a few steps). ``discount`` is 1.

Extras (``reset`` and ``step`` carry the same keys): ``angles`` ``[2]`` float32 hinge angles
(radians); ``high_reward`` ``[]`` bool, both hinges are within ``eps`` of ``alpha`` (the reward
is 1; False on reset).

Reset: ``qpos = qpos0 + U(-0.1, 0.1)``, ``qvel = U(-0.1, 0.1)`` on all 5 coordinates, as MuJoCo's
(gym's) swimmer. The reset state is built without a forward pass
(:meth:`SwimmerPipeline.light_init`): ``mjx.step`` recomputes everything from ``qpos``/``qvel``
(and the zero warm start), so the trajectory is bitwise identical to one started with brax's
``pipeline_init`` (checked), and ``reset`` compiles in well under a second instead of ~10 s.
Only ``qpos``/``qvel`` of the reset ``pipeline_state`` are meaningful (derived fields are filled
by the first step).

Checks (CPU, float32; jax 0.10.2, brax 0.14.2, mujoco 4.0 / mujoco-mjx 3.17):

* MuJoCo parity (``tests/test_swimmer.py``): from the same initial state and actions, ``qpos``
  agrees with plain ``mujoco.mj_step`` (float64, a fresh ``MjModel`` of the same xml) to ~2e-6
  after 50 steps of uniform random torques and ~1e-5 after 200 steps of smooth half-scale
  torques, with the hinges repeatedly on their +-100 degree limits. Over 200 steps of
  full-scale random torques float32 round-off grows at the limit contacts (1e-4..1e-1), as
  for any float32 simulator of this chaotic system.
* Cost on 2 CPU cores shared with other jobs (load 2-7, so these are pessimistic): compiling
  ``jit(step)`` takes ~16 s at batch 1 and ~40 s for ``jit(vmap(step))`` at batch 64 (~9-25 s
  for batch 4 in the tests); ``jit(reset_to)`` 1-6 s. Throughput: batch 1, ~670 steps/s
  calling ``jit(step)`` from Python and ~2,200 steps/s inside a ``lax.scan``; batch 64,
  ~3,800-7,800 env steps/s per call and ~4,300-8,300 in a scan. Each env step is 4 MJX
  substeps.
"""

from __future__ import annotations

import functools
import math
import warnings
from functools import cached_property
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from brax import base as brax_base
from brax.envs.base import PipelineEnv
from brax.envs.base import State as BraxEnvState
from brax.io import mjcf
from brax.mjx.base import State as MjxState
from etils import epath
from flax import struct
from jumanji import specs
from mujoco import mjx

from envs.core import (
    EnvError,
    MultiAgentEnv,
    Observation,
    TimeStep,
    is_concrete,
    make_timestep,
    other_agents_mask,
)

Array = jax.Array

#: The task space of MESA App. B.1.3: ``-30 deg < alpha < 30 deg`` (radians).
ALPHA_MAX = math.radians(30.0)
#: Default half-width of the target band (radians): 5 degrees.
DEFAULT_EPS = math.radians(5.0)
ACTION_TYPES = ("continuous", "discrete")


def swimmer_xml_path() -> epath.Path:
    """Path of brax's copy of MuJoCo's swimmer model."""
    return epath.resource_path("brax") / "envs/assets/swimmer.xml"


@functools.lru_cache(maxsize=1)
def swimmer_system() -> brax_base.System:
    """The swimmer as a brax ``System`` (loaded once per process; it is immutable)."""
    with warnings.catch_warnings():  # "Brax System ... not actively maintained"
        warnings.simplefilter("ignore", UserWarning)
        return mjcf.load(swimmer_xml_path())


class SwimmerPipeline(PipelineEnv):
    """MuJoCo's swimmer on brax's ``mjx`` pipeline: a single-agent brax env.

    ``reset``/``step`` follow MuJoCo's swimmer (observation ``[qpos[2:], qvel]``, reset noise
    ``U(+-reset_noise_scale)``) with reward 0; :class:`SwimmerClimb` uses :meth:`light_init`
    and ``pipeline_step`` directly.

    Args:
      n_frames: physics substeps per env step (4, i.e. ``dt = 0.04``).
      reset_noise_scale: half-width of the uniform reset noise on ``qpos`` and ``qvel`` (0.1).
    """

    def __init__(self, n_frames: int = 4, reset_noise_scale: float = 0.1):
        super().__init__(swimmer_system(), backend="mjx", n_frames=n_frames)
        self.reset_noise_scale = float(reset_noise_scale)

    def light_init(self, q: Array, qd: Array, kinematics: bool = False) -> MjxState:
        """Pipeline state at ``(q, qd)`` without the forward dynamics of ``pipeline_init``.

        ``mjx.step`` begins with a full forward pass from ``qpos``, ``qvel`` (and the zero warm
        start), so stepping from this state gives bitwise the trajectory of ``pipeline_init``,
        whose constraint solve costs as much compile time as a step. Only ``q``/``qd``
        (``qpos``/``qvel``) are meaningful on the returned state (what brax's renderer reads):
        derived fields (``xpos``, ``x``, ``xd``, forces, ...) stay at ``mjx.make_data``'s zeros
        unless ``kinematics=True``, which fills the link poses and velocities (``x``, ``xd``) at
        a few seconds of extra compile time.
        """
        sys = self.sys
        data = mjx.make_data(sys).replace(qpos=q, qvel=qd)
        if kinematics:
            data = mjx.com_vel(sys, mjx.com_pos(sys, mjx.kinematics(sys, data)))
        x = brax_base.Transform(pos=data.xpos[1:], rot=data.xquat[1:])
        cvel = brax_base.Motion(vel=data.cvel[1:, 3:], ang=data.cvel[1:, :3])
        offset = data.xpos[1:] - data.subtree_com[sys.body_rootid[1:]]
        xd = brax_base.Transform.create(pos=offset).vmap().do(cvel)
        fields = dict(data.__dict__)
        contact = data.contact  # the swimmer has no collision pairs: an empty contact set
        fields["contact"] = brax_base.Contact(
            link_idx=(
                jnp.asarray(sys.geom_bodyid)[contact.geom1] - 1,
                jnp.asarray(sys.geom_bodyid)[contact.geom2] - 1,
            ),
            elasticity=jnp.zeros(contact.pos.shape[0]),
            **contact.__dict__,
        )
        return MjxState(q=data.qpos, qd=data.qvel, x=x, xd=xd, **fields)

    def noisy_init(self, key: chex.PRNGKey) -> MjxState:
        """Reset state: ``qpos0 + U(+-s)`` and ``U(+-s)`` velocities (``s = reset_noise_scale``)."""
        k_q, k_qd = jax.random.split(key)
        s = self.reset_noise_scale
        q = self.sys.init_q + jax.random.uniform(k_q, (self.sys.nq,), minval=-s, maxval=s)
        qd = jax.random.uniform(k_qd, (self.sys.nv,), minval=-s, maxval=s)
        return self.light_init(q, qd)

    def reset(self, rng: jax.Array) -> BraxEnvState:
        ps = self.noisy_init(rng)
        zero = jnp.zeros(())
        return BraxEnvState(ps, self._obs(ps), zero, zero)

    def step(self, state: BraxEnvState, action: jax.Array) -> BraxEnvState:
        ps = self.pipeline_step(state.pipeline_state, action)
        return state.replace(pipeline_state=ps, obs=self._obs(ps))

    @staticmethod
    def _obs(ps: MjxState) -> Array:
        return jnp.concatenate([ps.qpos[2:], ps.qvel])


@struct.dataclass
class SwimmerTask:
    """A swimmer climb game (see module docstring); angles in radians."""

    alpha: Array
    eps: Array
    delta: Array


@struct.dataclass
class SwimmerState:
    """State of the swimmer climb game.

    * ``key``: PRNG key (unused by the deterministic dynamics; kept for wrappers);
    * ``step``: ``[]`` int32 steps taken in the episode;
    * ``task``: :class:`SwimmerTask`;
    * ``pipeline_state``: ``brax.mjx.base.State`` (an ``mjx.Data`` with brax's ``q, qd, x, xd``).
    """

    key: Array
    step: Array
    task: SwimmerTask
    pipeline_state: Any


class SwimmerClimb(MultiAgentEnv[SwimmerState, SwimmerTask]):
    """Two-agent swimmer climb game; see the module docstring for every field.

    Args:
      episode_length: time limit (default 1000).
      action_type: ``"continuous"`` (``[2, 1]`` float32) or ``"discrete"`` (``[2]`` int32).
      n_bins: torque levels of the discrete action (default 11, from -1 to 1).
      locality: ``None`` (global view, 8 features), ``0`` or ``1`` (multi-agent MuJoCo's local
        views, 2 or 3 features).
      eps: default half-width of the target band in radians (5 degrees).
      delta: default sub-optimal penalty (0.5).
      reset_noise_scale: uniform reset noise on ``qpos``/``qvel`` (0.1).
      n_frames: physics substeps of 0.01 s per env step (4).
      max_agents: must be 2 (accepted so that generic code may pass it).

    Compile time and throughput: see the module docstring.
    """

    name = "swimmer_climb"

    def __init__(
        self,
        episode_length: int = 1000,
        action_type: str = "continuous",
        n_bins: int = 11,
        locality: int | None = None,
        eps: float = DEFAULT_EPS,
        delta: float = 0.5,
        reset_noise_scale: float = 0.1,
        n_frames: int = 4,
        max_agents: int = 2,
    ):
        if int(max_agents) != 2:
            raise EnvError(f"{self.name}: max_agents must be 2 (one per hinge), got {max_agents}")
        if action_type not in ACTION_TYPES:
            raise EnvError(
                f"{self.name}: action_type must be one of {ACTION_TYPES}, got {action_type!r}"
            )
        if locality not in (None, 0, 1):
            raise EnvError(f"{self.name}: locality must be None, 0 or 1, got {locality!r}")
        if int(episode_length) < 1:
            raise EnvError(f"{self.name}: episode_length must be >= 1, got {episode_length}")
        if action_type == "discrete" and int(n_bins) < 2:
            raise EnvError(f"{self.name}: n_bins must be >= 2, got {n_bins}")
        if int(n_frames) < 1:
            raise EnvError(f"{self.name}: n_frames must be >= 1, got {n_frames}")
        if not reset_noise_scale >= 0.0:
            raise EnvError(f"{self.name}: reset_noise_scale must be >= 0, got {reset_noise_scale}")
        self.max_agents = 2
        self.max_objects = 1
        self.episode_length = int(episode_length)
        self.action_type = action_type
        self.n_bins = int(n_bins)
        self.locality = locality
        self.physics = SwimmerPipeline(int(n_frames), float(reset_noise_scale))
        # Agent i drives actuator i; find the hinge each actuator moves in the model.
        sys = self.physics.sys
        joint = np.asarray(sys.mj_model.actuator_trnid)[:, 0]
        self.hinge_qpos = tuple(int(i) for i in np.asarray(sys.mj_model.jnt_qposadr)[joint])
        self.hinge_qvel = tuple(int(i) for i in np.asarray(sys.mj_model.jnt_dofadr)[joint])
        self.make_task(0.0, eps, delta)  # validate the defaults of make_task / sample_task
        self.eps = float(eps)
        self.delta = float(delta)
        super().__init__()

    # --- tasks -----------------------------------------------------------------------------
    def make_task(
        self, alpha: float = 0.0, eps: float | None = None, delta: float | None = None
    ) -> SwimmerTask:
        """A game with target angle ``alpha`` (radians, in ``(-30 deg, 30 deg)``)."""
        eps = self.eps if eps is None else eps
        delta = self.delta if delta is None else delta
        task = SwimmerTask(
            alpha=jnp.asarray(alpha, jnp.float32),
            eps=jnp.asarray(eps, jnp.float32),
            delta=jnp.asarray(delta, jnp.float32),
        )
        return self.validate_task(task)

    def validate_task(self, task: SwimmerTask) -> SwimmerTask:
        """Check concrete fields (tracers pass): ``alpha`` in the open task space, etc."""
        if is_concrete(task.alpha):
            a = np.asarray(task.alpha, np.float64)
            if a.size and not (np.all(a > -ALPHA_MAX) and np.all(a < ALPHA_MAX)):
                raise EnvError(
                    f"{self.name}: alpha={a.tolist()} (radians) is outside the task space "
                    f"(-30 deg, 30 deg) = ({-ALPHA_MAX:.4f}, {ALPHA_MAX:.4f})"
                )
        if is_concrete(task.eps):
            e = np.asarray(task.eps, np.float64)
            if e.size and not (np.all(e > 0.0) and np.all(e <= math.pi / 2)):
                raise EnvError(f"{self.name}: eps={e.tolist()} (radians) must be in (0, pi/2]")
        if is_concrete(task.delta):
            d = np.asarray(task.delta, np.float64)
            if d.size and not (np.all(d >= 0.0) and np.all(d <= 1.0)):
                raise EnvError(f"{self.name}: delta={d.tolist()} must be in [0, 1]")
        return task

    def sample_task(self, key: chex.PRNGKey) -> SwimmerTask:
        """``alpha`` uniform in the open interval ``(-30 deg, 30 deg)``; default eps, delta."""
        low = jnp.nextafter(jnp.float32(-ALPHA_MAX), jnp.float32(0.0))
        alpha = jax.random.uniform(key, (), jnp.float32, low, jnp.float32(ALPHA_MAX))
        return SwimmerTask(
            alpha=alpha,
            eps=jnp.asarray(self.eps, jnp.float32),
            delta=jnp.asarray(self.delta, jnp.float32),
        )

    def split_tasks(
        self, key: chex.PRNGKey, n_train: int = 30, n_test: int = 6
    ) -> tuple[SwimmerTask, SwimmerTask]:
        """``([n_train], [n_test])`` stacks of independently sampled tasks (MESA: 30 and 6).

        Jittable with static sizes; the two sets are disjoint with probability 1.
        """
        if int(n_train) < 0 or int(n_test) < 0:
            raise EnvError(f"{self.name}: n_train, n_test must be >= 0, got {n_train}, {n_test}")
        keys = jax.random.split(key, int(n_train) + int(n_test))
        tasks = jax.vmap(self.sample_task)(keys)
        train = jax.tree.map(lambda x: x[: int(n_train)], tasks)
        test = jax.tree.map(lambda x: x[int(n_train) :], tasks)
        return train, test

    def task_description(self, task: SwimmerTask) -> Array:
        """``[1]`` float32 goal descriptor ``alpha / 30 deg`` in ``(-1, 1)`` (for
        goal-conditioned baselines and latent priors)."""
        return jnp.reshape(task.alpha / ALPHA_MAX, (1,)).astype(jnp.float32)

    # --- game ------------------------------------------------------------------------------
    def hinge_angles(self, state: SwimmerState) -> Array:
        """``[2]`` float32 hinge angles (radians) of agents 0 and 1 (``[..., 2]`` if batched)."""
        return state.pipeline_state.qpos[..., jnp.asarray(self.hinge_qpos)]

    def hinge_velocities(self, state: SwimmerState) -> Array:
        """``[2]`` float32 hinge angular velocities (rad/s) of agents 0 and 1."""
        return state.pipeline_state.qvel[..., jnp.asarray(self.hinge_qvel)]

    def reward(self, task: SwimmerTask, angles: Array) -> Array:
        """``[2]`` float32 shared climb-game reward for hinge ``angles [2]``."""
        within = jnp.abs(angles - task.alpha) < task.eps
        r = jnp.where(jnp.all(within), 1.0, jnp.where(jnp.all(~within), 1.0 - task.delta, 0.0))
        return jnp.full((self.max_agents,), r, jnp.float32)

    def ctrl(self, action: Array) -> Array:
        """``[2]`` float32 actuator commands in ``[-1, 1]`` (actuator ``i`` = agent ``i``) for a
        joint action (checked against :meth:`action_spec`)."""
        self.check_action(action)
        if self.action_type == "continuous":
            return jnp.clip(jnp.asarray(action, jnp.float32)[:, 0], -1.0, 1.0)
        if is_concrete(action):
            a = np.asarray(action)
            if a.min() < 0 or a.max() >= self.n_bins:
                raise EnvError(
                    f"{self.name}: discrete action {a.tolist()} outside 0..{self.n_bins - 1}"
                )
        b = jnp.clip(jnp.asarray(action, jnp.int32), 0, self.n_bins - 1)
        return (-1.0 + 2.0 * b.astype(jnp.float32) / (self.n_bins - 1)).astype(jnp.float32)

    def observe(self, state: SwimmerState) -> Observation:
        ps = state.pipeline_state
        q = self.hinge_angles(state).astype(jnp.float32)
        w = self.hinge_velocities(state).astype(jnp.float32)
        other = jnp.array([1, 0])
        if self.locality is None:
            full = jnp.concatenate([ps.qpos[2:], ps.qvel]).astype(jnp.float32)
            self_f = jnp.broadcast_to(full, (2, full.shape[0]))
            feat = jnp.stack([q, w], axis=-1)  # [2, 2] features of each agent as seen by others
            visible = True
        elif self.locality == 0:
            self_f = jnp.stack([q, w], axis=-1)
            feat = jnp.zeros((2, 2), jnp.float32)
            visible = False
        else:
            self_f = jnp.stack([q, w, q[other]], axis=-1)
            feat = jnp.stack([q, jnp.zeros_like(w)], axis=-1)
            visible = True
        active = jnp.ones((2,), bool)
        a_mask = other_agents_mask(active) & visible
        agents = jnp.broadcast_to(feat[None], (2, 2, 2)) * a_mask[..., None]
        return Observation(
            self=self_f,
            agents=agents,
            agents_mask=a_mask,
            objects=jnp.zeros((2, 1, 1), jnp.float32),
            objects_mask=jnp.zeros((2, 1), bool),
            team=jnp.zeros((2,), jnp.int32),
            agent_mask=active,
        )

    # --- contract --------------------------------------------------------------------------
    def reset_to(self, key: chex.PRNGKey, task: SwimmerTask) -> tuple[SwimmerState, TimeStep]:
        self.validate_task(task)
        k_init, k_next = jax.random.split(key)
        state = SwimmerState(
            key=k_next,
            step=jnp.zeros((), jnp.int32),
            task=task,
            pipeline_state=self.physics.noisy_init(k_init),
        )
        ts = make_timestep(
            self.observe(state),
            reward=jnp.zeros((2,), jnp.float32),
            discount=jnp.ones((2,), jnp.float32),
            terminated=False,
            truncated=False,
            first=True,
            extras={
                "angles": self.hinge_angles(state).astype(jnp.float32),
                "high_reward": jnp.zeros((), bool),
            },
        )
        return state, ts

    def step(self, state: SwimmerState, action: Array) -> tuple[SwimmerState, TimeStep]:
        ctrl = self.ctrl(action)
        ps = self.physics.pipeline_step(state.pipeline_state, ctrl)
        state = state.replace(pipeline_state=ps, step=state.step + 1)
        angles = self.hinge_angles(state).astype(jnp.float32)
        reward = self.reward(state.task, angles)
        both_within = jnp.all(jnp.abs(angles - state.task.alpha) < state.task.eps)
        ts = make_timestep(
            self.observe(state),
            reward=reward,
            discount=jnp.ones((2,), jnp.float32),
            terminated=False,
            truncated=state.step >= self.episode_length,
            extras={"angles": angles, "high_reward": both_within},
        )
        return state, ts

    # --- specs -----------------------------------------------------------------------------
    @property
    def d_self(self) -> int:
        """Size of ``obs.self`` per agent: 8 (global), 2 (``locality=0``), 3 (``locality=1``)."""
        return {None: 8, 0: 2, 1: 3}[self.locality]

    @cached_property
    def observation_spec(self) -> specs.Spec[Observation]:
        return self.observation_spec_from(d_self=self.d_self, d_agent=2, d_obj=1)

    @cached_property
    def action_spec(self) -> specs.Spec:
        if self.action_type == "discrete":
            return specs.MultiDiscreteArray(
                np.full((2,), self.n_bins, np.int32), jnp.int32, "action"
            )
        return specs.BoundedArray((2, 1), jnp.float32, -1.0, 1.0, "action")

    def __repr__(self) -> str:
        return (
            f"SwimmerClimb(episode_length={self.episode_length}, "
            f"action_type={self.action_type!r}, locality={self.locality})"
        )
