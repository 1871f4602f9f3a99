"""The value factorizations of VDN (Sunehag et al. 2018) and QMIX (Rashid et al. 2018) over
padded agents, and their TD loss (the learners that use them are issue 17's next step).

* :func:`vdn_mix`: ``Q_tot = sum_a Q_a`` over the agents in the game;
* :class:`QMixer`: ``Q_tot = f(Q_1..Q_A; s)``, monotonic in every ``Q_a`` (hypernetwork
  weights through ``abs``, QMIX Eq. 5), with padded agents' ``Q_a`` zeroed and their
  hypernetwork rows masked, so that neither their values nor their existence changes
  ``Q_tot`` (one compile serves every population);
* :func:`chosen_q`: ``Q_a(o_a, u_a)`` of the actions taken;
* :func:`q_td_loss`: the masked squared TD error of ``Q_tot`` against a target built with
  :func:`metajax.core.ops.td_target`.

Shapes: ``qs [..., A]`` per-agent values of the chosen actions, ``mask [..., A]`` bool,
``state [..., S]`` the global state the hypernetworks read.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


def vdn_mix(qs: Array, mask: Array) -> Array:
    """``[..., A] -> [...]``: the sum of the real agents' values."""
    return jnp.sum(jnp.where(mask, qs, 0.0), axis=-1)


def chosen_q(q_all: Array, actions: Array) -> Array:
    """``q_all [..., A, n]``, ``actions [..., A]`` int -> ``[..., A]`` the taken actions'
    values."""
    return jnp.take_along_axis(q_all, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]


class QMixer(nn.Module):
    """QMIX's mixing network for ``max_agents`` padded agents: a hidden layer of ``embed``
    units, ``Q_tot = w2 . elu(w1^T q + b1) + b2`` with ``w1 = |W1(s)| [A, embed]`` (rows of
    padded agents zeroed), ``b1 = B1(s)``, ``w2 = |W2(s)| [embed]``, ``b2 = V(s)`` (a 2-layer
    net), as in Rashid et al.'s Fig. 2. ``__call__(qs [A], mask [A], state [S]) -> []``;
    vmap it over batches."""

    max_agents: int
    embed: int = 32
    hyper_hidden: int = 64

    @nn.compact
    def __call__(self, qs: Array, mask: Array, state: Array) -> Array:
        a, e = self.max_agents, self.embed
        h1 = nn.relu(nn.Dense(self.hyper_hidden, name="w1_hidden")(state))
        h2 = nn.relu(nn.Dense(self.hyper_hidden, name="w2_hidden")(state))
        w1 = jnp.abs(nn.Dense(a * e, name="w1")(h1)).reshape(a, e)
        w1 = jnp.where(mask[:, None], w1, 0.0)
        b1 = nn.Dense(e, name="b1")(state)
        w2 = jnp.abs(nn.Dense(e, name="w2")(h2))
        b2 = nn.Dense(1, name="v_out")(nn.relu(nn.Dense(e, name="v_hidden")(state)))[0]
        hidden = nn.elu(jnp.where(mask, qs, 0.0) @ w1 + b1)
        return hidden @ w2 + b2


def q_td_loss(q_tot: Array, target: Array, valid: Array | None = None) -> Array:
    """``mean (Q_tot - stop_gradient(target))^2`` over the entries where ``valid`` (e.g. the
    steps of an episode before it ended, in episode replay); a scalar."""
    err = (q_tot - jax.lax.stop_gradient(target)) ** 2
    if valid is None:
        return jnp.mean(err)
    m = valid.astype(err.dtype)
    return jnp.sum(err * m) / jnp.maximum(jnp.sum(m), 1.0)
