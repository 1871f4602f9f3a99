"""Pac-Man-like world (MRA paper, App. E.1); constants from EPC's grassland.

Two teams in a particle world: ``N1`` Pac-Man (team 0) and ``N2`` ghosts (team 1), and ``F`` food
dots. Slots ``[0, max_pacman)`` hold the Pac-Man, slots ``[max_pacman, max_pacman + max_ghosts)``
the ghosts, so ``A = max_pacman + max_ghosts``; a game with fewer of either team is padded inside
its team's block. MRA trains on ``(N1, N2)`` in ``{(4, 2), (6, 3), (8, 4)}`` and adapts to
``(2, 8)``; its Fig. 2c uses 8 Pac-Man, 4 ghosts and 20 food dots.

Rules, applied after each physics step (``touch`` = ``distance < size sum``):

* A ghost touching a live Pac-Man catches it: every touching ghost gets ``+catch_reward`` (5)
  per Pac-Man it catches, the Pac-Man gets ``-catch_reward`` once (however many ghosts touch it)
  and is removed: ``state.alive`` turns False, its velocity is zeroed, it no longer moves or
  collides, it disappears from every observation (``agents_mask``), its ``discount`` becomes 0
  at the step it is caught, and its reward is 0 afterwards.
* A Pac-Man touching food gets ``+food_reward`` (2) per food dot; the dot re-appears at a new
  uniform position in ``[-food_range, food_range]^2``. A Pac-Man caught in a step still eats what
  it touches in that step (it moved there while alive). Ghosts do not eat.
* Shaping (``shaping``, a task field; 0.1 dense, 0 sparse): a ghost gets ``-shaping * distance
  to the nearest live Pac-Man`` (live at the start of the step, so the catcher's own catch counts
  as distance ~0; no term once no Pac-Man is left), a live Pac-Man ``-shaping * distance to the
  nearest food`` (before respawn).
* The game terminates when every Pac-Man has been caught (``discount`` then 0 for everyone) and
  is truncated at ``episode_length`` (25; MRA App. E uses 20).

Our choices where MRA is silent (configurable): sizes, accelerations and speed caps follow EPC
(ghosts 0.075 / 2 / 2, Pac-Man 0.05 / 4 / 3, food 0.03); agents start uniform in ``[-1, 1]^2``;
food in ``[-0.9, 0.9]^2`` (EPC; MRA App. E.1 says ``[-1, 1]``, set ``food_range=1``). Food does
not collide. Positions are drawn per team slot and per food slot, so a game padded to larger
maxima draws the same initial world.

Task (:class:`PacManTask`, a pytree; build with ``env.make_task``):

* ``n_pacman``: ``[]`` int32 in ``1..max_pacman``;
* ``n_ghosts``: ``[]`` int32 in ``1..max_ghosts``;
* ``n_food``: ``[]`` int32 in ``1..max_objects``;
* ``shaping``: ``[]`` float32, distance-shaping weight (0.1).

Observation (``A = max_pacman + max_ghosts``, ``M = max_objects``):

* ``self``: ``[A, 5]`` float32 ``(vx, vy, x, y, live)``; zeros for padding; a caught Pac-Man
  keeps its position with zero velocity and ``live = 0``;
* ``agents``: ``[A, A, 7]`` float32, for agent ``j`` seen by ``i``: ``(x_j - x_i, y_j - y_i,
  vx_j, vy_j, live_j, team_j == 0, team_j == 1)``; ``agents_mask``: ``[A, A]``, ``j != i`` and
  both in play (in the game and not caught); masked rows are zeros;
* ``objects``: ``[A, M, 2]`` float32 food position relative to the agent; ``objects_mask``:
  ``[A, M]``, the game's food dots, for observers in play;
* ``team``: ``[A]`` int32, 0 for Pac-Man slots, 1 for ghost slots;
* ``agent_mask``: ``[A]`` bool, the game's slots (caught Pac-Man stay True: see
  :class:`envs.core.Observation`).

Action: see :class:`envs.particle.base.ParticleEnv` (``discrete`` ``[A]`` int32 by default).

Reward: ``[A]`` float32 as above; 0 for padding and for Pac-Man caught in an earlier step.

Discount: ``[A]`` float32, 1 for agents in play, 0 for padding, for caught Pac-Man (from the
step they are caught) and for everyone once the game terminates.

Extras: ``caught`` ``[]`` float32 Pac-Man caught this step; ``eaten`` ``[]`` float32 food dots
eaten this step.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from jumanji import specs

from envs.core import EnvError, Observation, other_agents_mask
from envs.particle.base import ParticleEnv, ParticleState, entity_uniform, relative
from envs.particle.physics import Bodies, pairwise_distance

Array = jax.Array

#: MRA's training games ``(n_pacman, n_ghosts)``.
MRA_TRAIN_GAMES = ((4, 2), (6, 3), (8, 4))
#: MRA's adaptation game (ghost-dominated).
MRA_ADAPT_GAME = (2, 8)


@struct.dataclass
class PacManTask:
    """A Pac-Man-like game (see module docstring)."""

    n_pacman: Array
    n_ghosts: Array
    n_food: Array
    shaping: Array


class PacMan(ParticleEnv):
    """Pac-Man-like world; see the module docstring for every field.

    Args:
      max_pacman: Pac-Man slots (default 8).
      max_ghosts: ghost slots (default 8, enough for the adaptation game (2, 8)).
      max_objects: food slots (default 20).
      episode_length: time limit (default 25).
      pacman_size, ghost_size, food_size: radii (0.05, 0.075, 0.03).
      pacman_accel, ghost_accel: action sensitivities (4, 2).
      pacman_max_speed, ghost_max_speed: speed caps (3, 2).
      catch_reward: ghost gain / Pac-Man loss per catch (5).
      food_reward: Pac-Man gain per food dot (2).
      food_range: food is placed uniformly in ``[-food_range, food_range]^2`` (0.9).
      populations: ``(n_pacman, n_ghosts)`` games drawn uniformly by :meth:`sample_task`
        (default MRA's training games, those that fit the maxima).
      action_type, integration: see :class:`~envs.particle.base.ParticleEnv`.
    """

    name = "pacman"
    num_teams = 2

    def __init__(
        self,
        max_pacman: int = 8,
        max_ghosts: int = 8,
        max_objects: int = 20,
        episode_length: int | None = None,
        pacman_size: float = 0.05,
        ghost_size: float = 0.075,
        food_size: float = 0.03,
        pacman_accel: float = 4.0,
        ghost_accel: float = 2.0,
        pacman_max_speed: float = 3.0,
        ghost_max_speed: float = 2.0,
        catch_reward: float = 5.0,
        food_reward: float = 2.0,
        food_range: float = 0.9,
        populations: tuple[tuple[int, int], ...] | None = None,
        action_type: str = "discrete",
        integration: str = "velocity_first",
    ):
        if int(max_pacman) < 1 or int(max_ghosts) < 1:
            raise EnvError(
                f"{self.name}: max_pacman and max_ghosts must be >= 1, "
                f"got {max_pacman} and {max_ghosts}"
            )
        self.max_pacman = int(max_pacman)
        self.max_ghosts = int(max_ghosts)
        super().__init__(
            self.max_pacman + self.max_ghosts,
            max_objects,
            episode_length,
            action_type,
            integration,
        )
        self.pacman_size = float(pacman_size)
        self.ghost_size = float(ghost_size)
        self.food_size = float(food_size)
        self.pacman_accel = float(pacman_accel)
        self.ghost_accel = float(ghost_accel)
        self.pacman_max_speed = float(pacman_max_speed)
        self.ghost_max_speed = float(ghost_max_speed)
        self.catch_reward = float(catch_reward)
        self.food_reward = float(food_reward)
        self.food_range = float(food_range)
        if populations is None:
            populations = tuple(
                (p, g) for p, g in MRA_TRAIN_GAMES if p <= self.max_pacman and g <= self.max_ghosts
            ) or ((self.max_pacman, self.max_ghosts),)
        populations = tuple((int(p), int(g)) for p, g in populations)
        if not populations:
            raise EnvError(f"{self.name}: populations must not be empty")
        self.check_count("populations n_pacman", [p for p, _ in populations], self.max_pacman, 1)
        self.check_count("populations n_ghosts", [g for _, g in populations], self.max_ghosts, 1)
        self.populations = populations
        slot = jnp.arange(self.max_agents)
        self._team = (slot >= self.max_pacman).astype(jnp.int32)  # [A]

    # --- tasks -----------------------------------------------------------------------------
    def make_task(
        self,
        n_pacman: int = 8,
        n_ghosts: int = 4,
        n_food: int | None = None,
        shaping: float = 0.1,
    ) -> PacManTask:
        """A game of ``n_pacman`` vs ``n_ghosts``, ``n_food`` dots (default ``max_objects``)."""
        n_food = self.max_objects if n_food is None else n_food
        task = PacManTask(
            n_pacman=jnp.asarray(n_pacman, jnp.int32),
            n_ghosts=jnp.asarray(n_ghosts, jnp.int32),
            n_food=jnp.asarray(n_food, jnp.int32),
            shaping=jnp.asarray(shaping, jnp.float32),
        )
        return self.validate_task(task)

    def validate_task(self, task: PacManTask) -> PacManTask:
        self.check_count("n_pacman", task.n_pacman, self.max_pacman, 1)
        self.check_count("n_ghosts", task.n_ghosts, self.max_ghosts, 1)
        self.check_count("n_food", task.n_food, self.max_objects, 1)
        return task

    def sample_task(self, key: Array) -> PacManTask:
        """Game uniform over ``populations``; all food slots used; dense shaping 0.1."""
        games = jnp.asarray(self.populations, jnp.int32)  # [G, 2]
        game = games[jax.random.randint(key, (), 0, games.shape[0])]
        return PacManTask(
            n_pacman=game[0],
            n_ghosts=game[1],
            n_food=jnp.asarray(self.max_objects, jnp.int32),
            shaping=jnp.asarray(0.1, jnp.float32),
        )

    def task_description(self, task: Any) -> Array:
        """``[3]`` float32 game descriptor ``(n_pacman, n_ghosts, n_food) / 10``."""
        return jnp.stack([task.n_pacman, task.n_ghosts, task.n_food]).astype(jnp.float32) / 10.0

    # --- layout ----------------------------------------------------------------------------
    def agent_mask(self, task: PacManTask) -> Array:
        """``[A]`` bool: the first ``n_pacman`` Pac-Man slots and the first ``n_ghosts`` ghost
        slots."""
        slot = jnp.arange(self.max_agents)
        pac = slot < task.n_pacman
        ghost = (slot >= self.max_pacman) & (slot < self.max_pacman + task.n_ghosts)
        return pac | ghost

    def food_mask(self, task: PacManTask) -> Array:
        """``[M]`` bool: food slots in the game."""
        return jnp.arange(self.max_objects) < task.n_food

    def object_mask(self, task: PacManTask) -> Array:
        return self.food_mask(task)

    def object_sizes(self, state: ParticleState) -> Array:
        return jnp.full((self.max_objects,), self.food_size, jnp.float32)

    def _per_team(self, pacman_value: float, ghost_value: float) -> Array:
        return jnp.where(self._team == 0, pacman_value, ghost_value).astype(jnp.float32)

    # --- dynamics --------------------------------------------------------------------------
    def bodies(self, state: ParticleState) -> Bodies:
        live = state.alive
        return Bodies(
            size=self._per_team(self.pacman_size, self.ghost_size),
            mass=jnp.ones((self.max_agents,), jnp.float32),
            max_speed=self._per_team(self.pacman_max_speed, self.ghost_max_speed),
            movable=live,
            collide=live,
        )

    def accel(self, state: ParticleState) -> Array:
        return self._per_team(self.pacman_accel, self.ghost_accel)

    def init_state(self, key: Array, task: PacManTask) -> ParticleState:
        k_pac, k_ghost, k_food, k_next = jax.random.split(key, 4)
        active = self.agent_mask(task)
        pos = jnp.concatenate(
            [entity_uniform(k_pac, self.max_pacman), entity_uniform(k_ghost, self.max_ghosts)]
        )
        pos = pos * active[:, None]
        food = entity_uniform(k_food, self.max_objects, -self.food_range, self.food_range)
        return ParticleState(
            key=k_next,
            step=jnp.zeros((), jnp.int32),
            task=task,
            pos=pos,
            vel=jnp.zeros((self.max_agents, 2), jnp.float32),
            obj_pos=food,
            alive=active,
        )

    def rules(self, state: ParticleState, key: Array):
        task = state.task
        live = state.alive  # in play at the start of the step
        pac = live & (self._team == 0)
        ghost = live & (self._team == 1)
        f_mask = self.food_mask(task)
        size = self._per_team(self.pacman_size, self.ghost_size)

        # Catches: catch[g, p] for ghost g touching live Pac-Man p.
        d_aa = pairwise_distance(state.pos, state.pos)  # [A, A]
        touch = d_aa < size[:, None] + size[None, :]
        catch = touch & ghost[:, None] & pac[None, :]
        caught = jnp.any(catch, axis=0)  # [A], only Pac-Man slots can be True
        reward = self.catch_reward * (jnp.sum(catch, axis=1) - caught)

        # Food.
        d_af = pairwise_distance(state.pos, state.obj_pos)  # [A, M]
        eat = (d_af < size[:, None] + self.food_size) & pac[:, None] & f_mask[None]
        reward = reward + self.food_reward * jnp.sum(eat, axis=1)

        # Shaping.
        near_food = jnp.min(jnp.where(f_mask[None], d_af, jnp.inf), axis=1)
        near_pac = jnp.min(jnp.where(pac[None], d_aa, jnp.inf), axis=1)
        near_pac = jnp.where(jnp.isfinite(near_pac), near_pac, 0.0)
        shaping = jnp.where(pac, near_food, jnp.where(ghost, near_pac, 0.0))
        reward = jnp.where(live, reward - task.shaping * shaping, 0.0)

        # Removals and respawns.
        eaten = jnp.any(eat, axis=0)  # [M]
        new_food = entity_uniform(key, self.max_objects, -self.food_range, self.food_range)
        alive = live & ~caught
        state = state.replace(
            obj_pos=jnp.where(eaten[:, None], new_food, state.obj_pos),
            vel=jnp.where(caught[:, None], 0.0, state.vel),
            alive=alive,
        )
        terminated = ~jnp.any(alive & (self._team == 0))
        discount = (alive & ~terminated).astype(jnp.float32)
        extras = {
            "caught": jnp.sum(caught).astype(jnp.float32),
            "eaten": jnp.sum(eaten).astype(jnp.float32),
        }
        return state, reward, discount, terminated, extras

    def observe(self, state: ParticleState) -> Observation:
        in_game = self.agent_mask(state.task)
        live = state.alive
        live_f = live.astype(jnp.float32)
        a_mask = other_agents_mask(live)
        rel = relative(state.pos, state.pos)  # [A, A, 2]
        team_1h = jax.nn.one_hot(self._team, 2, dtype=jnp.float32)  # [A, 2]
        per_j = jnp.concatenate([state.vel, live_f[:, None], team_1h], axis=-1)  # [A, 5]
        per_j = jnp.broadcast_to(per_j[None], (self.max_agents, *per_j.shape))
        agents = jnp.concatenate([rel, per_j], axis=-1) * a_mask[..., None]
        o_mask = self.food_mask(state.task)[None, :] & live[:, None]
        objects = relative(state.pos, state.obj_pos) * o_mask[..., None]
        self_f = jnp.concatenate([state.vel, state.pos, live_f[:, None]], axis=-1)
        return Observation(
            self=self_f * in_game[:, None],
            agents=agents,
            agents_mask=a_mask,
            objects=objects,
            objects_mask=o_mask,
            team=self._team,
            agent_mask=in_game,
        )

    @cached_property
    def observation_spec(self) -> specs.Spec[Observation]:
        return self.observation_spec_from(d_self=5, d_agent=7, d_obj=2)

    def __repr__(self) -> str:
        return (
            f"PacMan(max_pacman={self.max_pacman}, max_ghosts={self.max_ghosts}, "
            f"max_objects={self.max_objects}, episode_length={self.episode_length})"
        )
