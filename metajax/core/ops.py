"""Small operations every learner uses: Gumbel-softmax and the straight-through estimator,
the TD target, masked means over padded agents, Polyak averaging, the optimiser of a
learner's config."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import jax
import jax.numpy as jnp
import optax

Array = jax.Array

#: XLA options for programs that run once or a few times per run (initialisation, evaluation,
#: playing an episode): a cheap optimisation level compiles several times faster, and on a CPU
#: compilation dominates these programs. The training chunks keep XLA's default.
ONCE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def make_optimizer(
    lr: Any, config: Any, traced: bool = False
) -> optax.GradientTransformation:
    """Gradient-norm clipping (``grad_clip``) then Adam (AdamW with ``weight_decay``).

    ``traced=False``: the learning rate ``lr`` is a constant of the program. ``traced=True``:
    ``optax.inject_hyperparams`` keeps it in the optimizer state, so ``init`` may be given a
    traced ``lr`` (one per member of a sweep) and ``update`` reads it from the state.
    """
    adam = (functools.partial(optax.adamw, weight_decay=config.weight_decay)
            if config.weight_decay else optax.adam)
    if traced:
        # only the learning rate is injected: the others stay constants of the program, as in
        # the plain optimizer (an injected b1 = f32(0.9) gives 1 - b1 = 0.100000024 in f32,
        # where the constant gives f32(1 - 0.9) = 0.1, and the runs drift apart)
        static = [a for a in inspect.signature(adam).parameters if a != "learning_rate"]
        inner = optax.inject_hyperparams(adam, static_args=static)(learning_rate=lr)
    else:
        inner = adam(lr)
    return optax.chain(optax.clip_by_global_norm(config.grad_clip), inner)


def gumbel_softmax(key: Array, logits: Array, temperature: float = 1.0) -> Array:
    """Relaxed one-hot sample ``softmax((logits + g) / temperature)``, ``g ~ Gumbel(0, 1)``."""
    g = jax.random.gumbel(key, logits.shape, logits.dtype)
    return jax.nn.softmax((logits + g) / temperature, axis=-1)


def straight_through(y: Array) -> Array:
    """One-hot of ``argmax(y)`` in the forward pass, gradient of ``y`` in the backward pass."""
    hard = jax.nn.one_hot(jnp.argmax(y, -1), y.shape[-1], dtype=y.dtype)
    return hard - jax.lax.stop_gradient(y) + y


def td_target(reward: Array, discount: Array, next_q: Array, gamma: float) -> Array:
    """``r + gamma * discount * Q'(o', a')`` (no gradient)."""
    return jax.lax.stop_gradient(reward + gamma * discount * next_q)


def masked_mean(x: Array, mask: Array) -> Array:
    """Mean of ``x`` over entries where ``mask`` (broadcast) is True; 0 if none."""
    m = jnp.broadcast_to(mask, x.shape).astype(x.dtype)
    return jnp.sum(x * m) / jnp.maximum(jnp.sum(m), 1.0)


def soft_update(target: Any, online: Any, tau: float) -> Any:
    """``target <- (1 - tau) target + tau online``."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)
