"""The losses of IPPO / MAPPO (Schulman et al. 2017, "Proximal Policy Optimization Algorithms";
Yu et al. 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games") and of
Random Network Distillation (Burda et al. 2019) as an intrinsic reward, over padded agents.

Pure functions at module level (the learner that uses them is issue 17's next step):

* :func:`gae`: generalized advantage estimation with the time limit told apart from
  termination (``discount`` 0 only at termination, the trace cut at every episode end);
* :func:`normalize_advantages`: over the real (masked) agents of a batch;
* :func:`clipped_policy_loss`: PPO's clipped surrogate, Eq. 7 of Schulman et al.;
* :func:`clipped_value_loss`: MAPPO's clipped value loss (Yu et al., Sec. 4);
* :func:`categorical_entropy`: the entropy bonus of a discrete policy;
* :func:`rnd_error`: RND's prediction error, the intrinsic reward of MAPPO-RND.

Shapes: ``[T, N, A]`` for a rollout of ``T`` steps of ``N`` games with ``A`` (padded) agents;
every function broadcasts over leading axes, and ``mask`` (``[..., A]`` bool, the agents in
the game) removes padded agents from every mean.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metajax.core.ops import masked_mean

Array = jax.Array


def gae(rewards: Array, values: Array, next_values: Array, discounts: Array, ends: Array,
        gamma: float, lam: float) -> tuple[Array, Array]:
    """Generalized advantage estimation, backwards over the leading (time) axis.

    Args:
      rewards: ``[T, ...]`` reward of step ``t``.
      values: ``[T, ...]`` ``V(s_t)``.
      next_values: ``[T, ...]`` ``V`` of the observation after step ``t`` (the episode's final
        observation when it ended at ``t``, not the next episode's first one).
      discounts: ``[T, ...]`` 0 where step ``t`` terminated the episode, else 1 (a time limit
        keeps 1: the value after it is bootstrapped).
      ends: ``[T, ...]`` bool, the episode ended at step ``t`` (terminated or truncated): the
        advantage does not look past it.
      gamma, lam: discount and GAE's lambda.

    Returns:
      ``(advantages [T, ...], returns [T, ...])`` with ``returns = advantages + values``:
      ``delta_t = r_t + gamma d_t V'_t - V_t``,
      ``A_t = delta_t + gamma lam d_t (1 - end_t) A_{t+1}``.
    """
    deltas = rewards + gamma * discounts * next_values - values
    keep = gamma * lam * discounts * (1.0 - ends.astype(deltas.dtype))

    def back(carry: Array, x: tuple[Array, Array]) -> tuple[Array, Array]:
        delta, k = x
        adv = delta + k * carry
        return adv, adv

    _, adv = jax.lax.scan(back, jnp.zeros_like(deltas[0]), (deltas, keep), reverse=True)
    return adv, adv + values


def normalize_advantages(adv: Array, mask: Array, eps: float = 1e-8) -> Array:
    """``(adv - mean) / (std + eps)`` over the real agents (``mask``) of the whole batch; padded
    entries become 0."""
    m = jnp.broadcast_to(mask, adv.shape)
    mean = masked_mean(adv, m)
    var = masked_mean((adv - mean) ** 2, m)
    return jnp.where(m, (adv - mean) / (jnp.sqrt(var) + eps), 0.0)


def clipped_policy_loss(logp: Array, logp_old: Array, adv: Array, mask: Array,
                        clip_eps: float) -> Array:
    """``-mean min(rho A, clip(rho, 1 - eps, 1 + eps) A)`` over the real agents, with
    ``rho = exp(logp - logp_old)`` (all ``[..., A]``); a scalar."""
    ratio = jnp.exp(logp - logp_old)
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return -masked_mean(jnp.minimum(ratio * adv, clipped * adv), jnp.broadcast_to(mask, adv.shape))


def clipped_value_loss(v: Array, v_old: Array, returns: Array, mask: Array,
                       clip_eps: float | None) -> Array:
    """``0.5 mean max((v - R)^2, (v_old + clip(v - v_old, -eps, eps) - R)^2)`` over the real
    agents; ``clip_eps=None``: the plain ``0.5 mean (v - R)^2``. A scalar."""
    m = jnp.broadcast_to(mask, v.shape)
    err = (v - returns) ** 2
    if clip_eps is not None:
        v_clip = v_old + jnp.clip(v - v_old, -clip_eps, clip_eps)
        err = jnp.maximum(err, (v_clip - returns) ** 2)
    return 0.5 * masked_mean(err, m)


def categorical_entropy(logits: Array, mask: Array) -> Array:
    """Mean entropy of the categorical policies ``logits [..., A, n]`` over the real agents."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    ent = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    return masked_mean(ent, jnp.broadcast_to(mask, ent.shape))


def rnd_error(predicted: Array, target: Array) -> Array:
    """RND's intrinsic reward: ``mean_f (predicted - target)^2`` over the feature axis
    (``[..., A, F] -> [..., A]``); also the predictor's loss before masking."""
    return jnp.mean((predicted - jax.lax.stop_gradient(target)) ** 2, axis=-1)
