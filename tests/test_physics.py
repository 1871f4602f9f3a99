"""Physics parity with the original multi-agent particle environment (MPE).

``_ReferenceWorld`` restates, in plain NumPy loops over entity objects, the equations of the
original MPE ``World.step`` (Lowe et al. 2017): action force, pairwise contact force with a
softplus penetration, then damping, acceleration, speed clipping and the position update
(velocity first; PettingZoo/JaxMARL's position-first order for the option).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.particle.physics import (
    Bodies,
    PhysicsConfig,
    action_force,
    contact_forces,
    physics_step,
)


class _Entity:
    def __init__(self, pos, vel, size, movable, collide, max_speed, mass=1.0):
        self.p_pos = np.array(pos, np.float64)
        self.p_vel = np.array(vel, np.float64)
        self.size = size
        self.movable = movable
        self.collide = collide
        self.max_speed = max_speed
        self.mass = mass


class _ReferenceWorld:
    dt, damping, contact_force, contact_margin = 0.1, 0.25, 1e2, 1e-3

    def __init__(self, entities, position_first=False):
        self.entities = entities
        self.position_first = position_first

    def collision_force(self, a, b):
        if not (a.collide and b.collide) or a is b:
            return None, None
        delta = a.p_pos - b.p_pos
        dist = np.sqrt(np.sum(np.square(delta)))
        dist_min = a.size + b.size
        k = self.contact_margin
        penetration = np.logaddexp(0, -(dist - dist_min) / k) * k
        force = self.contact_force * delta / dist * penetration
        return (+force if a.movable else None), (-force if b.movable else None)

    def step(self, action_forces):
        p_force = [None] * len(self.entities)
        for i, f in enumerate(action_forces):
            if self.entities[i].movable and f is not None:
                p_force[i] = np.array(f, np.float64)
        for a, ea in enumerate(self.entities):
            for b, eb in enumerate(self.entities):
                if b <= a:
                    continue
                fa, fb = self.collision_force(ea, eb)
                if fa is not None:
                    p_force[a] = fa if p_force[a] is None else p_force[a] + fa
                if fb is not None:
                    p_force[b] = fb if p_force[b] is None else p_force[b] + fb
        for i, e in enumerate(self.entities):
            if not e.movable:
                continue
            if self.position_first:
                e.p_pos = e.p_pos + e.p_vel * self.dt
            e.p_vel = e.p_vel * (1 - self.damping)
            if p_force[i] is not None:
                e.p_vel = e.p_vel + (p_force[i] / e.mass) * self.dt
            if e.max_speed is not None:
                speed = np.sqrt(np.square(e.p_vel[0]) + np.square(e.p_vel[1]))
                if speed > e.max_speed:
                    e.p_vel = e.p_vel / speed * e.max_speed
            if not self.position_first:
                e.p_pos = e.p_pos + e.p_vel * self.dt


def _scene(seed):
    """5 movable agents packed close together (frequent contacts), 2 of them speed-capped,
    plus a colliding immovable landmark and a non-colliding one."""
    rng = np.random.default_rng(seed)
    n = 7
    pos = rng.uniform(-0.25, 0.25, (n, 2))
    vel = rng.uniform(-0.5, 0.5, (n, 2))
    size = np.array([0.05, 0.05, 0.075, 0.05, 0.1, 0.2, 0.05])
    movable = np.array([1, 1, 1, 1, 1, 0, 0], bool)
    collide = np.array([1, 1, 1, 1, 1, 1, 0], bool)
    max_speed = np.array([np.inf, 0.3, 2.0, np.inf, 0.5, np.inf, np.inf])
    mass = np.array([1.0, 1.0, 2.0, 1.0, 0.5, 1.0, 1.0])
    forces = rng.uniform(-5, 5, (25, n, 2)) * movable[None, :, None]
    return pos, vel, size, movable, collide, max_speed, mass, forces


@pytest.fixture(scope="module")
def jitted_rollout():
    def rollout(pos, vel, forces, bodies, integration):
        cfg = PhysicsConfig(integration=integration)

        def body(carry, f):
            p, v = physics_step(*carry, f, bodies, cfg)
            return (p, v), p

        (_p, v), traj = jax.lax.scan(body, (pos, vel), forces)
        return traj, v

    return jax.jit(rollout, static_argnums=4)


@pytest.mark.parametrize("integration", ["velocity_first", "position_first"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("x64", [True, False], ids=["float64", "float32"])
def test_physics_matches_original_mpe(jitted_rollout, integration, seed, x64):
    """Same initial state and forces -> same positions for 25 steps.

    In float64 the equations agree to < 1e-5 (in practice ~1e-12). In float32 the stiff contact
    force (``contact_force * margin * softplus(pen / margin)``) amplifies rounding: deep
    overlaps in this packed scene leave ~2e-5 after 25 steps, so float32 is held to 1e-4.
    """
    pos, vel, size, movable, collide, max_speed, mass, forces = _scene(seed)
    ents = [
        _Entity(pos[i], vel[i], size[i], movable[i], collide[i],
                None if np.isinf(max_speed[i]) else max_speed[i], mass[i])
        for i in range(len(size))
    ]
    world = _ReferenceWorld(ents, position_first=integration == "position_first")
    ref = []
    contacts = 0
    for t in range(25):
        for a in range(len(ents)):
            for b in range(a + 1, len(ents)):
                d = np.linalg.norm(ents[a].p_pos - ents[b].p_pos)
                contacts += collide[a] and collide[b] and d < size[a] + size[b]
        world.step(list(forces[t]))
        ref.append(np.stack([e.p_pos for e in ents]))
    ref = np.stack(ref)

    with jax.enable_x64(x64):
        dt = jnp.float64 if x64 else jnp.float32
        bodies = Bodies(
            size=jnp.asarray(size, dt),
            mass=jnp.asarray(mass, dt),
            max_speed=jnp.asarray(max_speed, dt),
            movable=jnp.asarray(movable),
            collide=jnp.asarray(collide),
        )
        traj, _ = jitted_rollout(
            jnp.asarray(pos, dt), jnp.asarray(vel, dt),
            jnp.asarray(forces, dt), bodies, integration,
        )
        assert traj.dtype == dt
        traj = np.asarray(traj)
    assert contacts > 0, "the scene must exercise collisions"
    np.testing.assert_allclose(traj, ref, atol=1e-5 if x64 else 1e-4, rtol=0)
    # Immovable entities never move.
    still = np.broadcast_to(pos[5:].astype(traj.dtype), (25, 2, 2))
    np.testing.assert_array_equal(traj[:, 5:], still)


def test_speed_cap_binds():
    bodies = Bodies(
        size=jnp.full((1,), 0.05), mass=jnp.ones(1), max_speed=jnp.array([0.3]),
        movable=jnp.array([True]), collide=jnp.array([True]),
    )
    p, v = physics_step(
        jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.array([[50.0, 0.0]]), bodies, PhysicsConfig()
    )
    np.testing.assert_allclose(np.asarray(v), [[0.3, 0.0]], atol=1e-7)
    np.testing.assert_allclose(np.asarray(p), [[0.03, 0.0]], atol=1e-7)


def test_coincident_entities_no_nan():
    bodies = Bodies(
        size=jnp.full((2,), 0.05), mass=jnp.ones(2), max_speed=jnp.full((2,), jnp.inf),
        movable=jnp.ones(2, bool), collide=jnp.ones(2, bool),
    )
    f = contact_forces(jnp.zeros((2, 2)), bodies, PhysicsConfig())
    assert np.all(np.isfinite(np.asarray(f)))


def test_action_force_mappings():
    sens = jnp.array([5.0, 4.0, 2.0])
    active = jnp.array([True, True, False])
    f = action_force(jnp.array([1, 4, 3]), "discrete", sens, active)
    np.testing.assert_allclose(np.asarray(f), [[5, 0], [0, -4], [0, 0]])
    relaxed = jnp.array([[0, 0.5, 0.25, 0.25, 0], [0.2, 0, 0, 0.3, 0.5], [0, 1, 0, 0, 0]])
    f = action_force(relaxed, "relaxed", sens, active)
    np.testing.assert_allclose(np.asarray(f), [[1.25, 1.25], [0, -0.8], [0, 0]], atol=1e-6)
    f = action_force(jnp.array([[2.0, -0.5], [0.1, 0.2], [1, 1]]), "continuous", sens, active)
    np.testing.assert_allclose(np.asarray(f), [[5, -2.5], [0.4, 0.8], [0, 0]], atol=1e-6)


def test_bad_integration_order():
    with pytest.raises(ValueError, match="integration"):
        PhysicsConfig(integration="euler")
