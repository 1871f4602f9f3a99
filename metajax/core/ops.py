"""Small operations every learner uses: Gumbel-softmax and the straight-through estimator,
the TD target, masked means over padded agents, Polyak averaging, the optimiser of a
learner's config."""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
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


def agent_mean(x: Array, mask: Array) -> Array:
    """``x [..., A]``, ``mask [..., A]`` bool -> ``[...]``: the mean over the real agents (0 if
    none), e.g. a cooperative game's team reward or an episode's return per agent."""
    return jnp.sum(jnp.where(mask, x, 0.0), -1) / jnp.maximum(jnp.sum(mask, -1), 1)


def masked_mean(x: Array, mask: Array) -> Array:
    """Mean of ``x`` over entries where ``mask`` (broadcast) is True; 0 if none."""
    m = jnp.broadcast_to(mask, x.shape).astype(x.dtype)
    return jnp.sum(x * m) / jnp.maximum(jnp.sum(m), 1.0)


def soft_update(target: Any, online: Any, tau: float) -> Any:
    """``target <- (1 - tau) target + tau online``."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


#: Threefry-2x32 rotation distances, alternating between the five groups of four rounds.
_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotate_left(x: Array, r: int) -> Array:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry_bits(key: Array, shape: tuple[int, ...]) -> Array:
    """``jax.random.bits(key, shape)`` (``uint32``) for a Threefry-2x32 key, bit for bit (JAX's
    default generator with ``jax_threefry_partitionable``: the hash of the counters
    ``0 .. prod(shape) - 1`` under the key, its two output words xor-ed).

    The 20 rounds are written out: JAX lowers them on the CPU as a rolled 5-step loop (one
    kernel launch per step and a loop-carried copy), here XLA fuses them into one loop over
    the elements. ``key``: a raw ``uint32[2]`` key or a typed Threefry key.
    """
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    size = math.prod(shape)
    if size >= 2**32:
        raise ValueError(f"threefry_bits draws fewer than 2**32 words, got {size}")
    k0, k1 = key[0], key[1]
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
    x0 = jnp.zeros(shape, jnp.uint32) + ks[0]  # high words of the 64-bit counters: 0
    x1 = jax.lax.iota(jnp.uint32, size).reshape(shape) + ks[1]
    for i in range(5):
        for r in _THREEFRY_ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ _rotate_left(x1, r)
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0 ^ x1


def uses_threefry(key: Array) -> bool:
    """Whether ``key`` is a Threefry-2x32 key (typed, or raw under JAX's default generator)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return str(jax.random.key_impl(key)) == "threefry2x32"
    return (key.dtype == jnp.uint32 and key.shape[-1:] == (2,)
            and jax.config.jax_default_prng_impl == "threefry2x32"
            and bool(jax.config.jax_threefry_partitionable))


def gumbel(key: Array, shape: tuple[int, ...]) -> Array:
    """``jax.random.gumbel(key, shape)`` (float32), bit for bit, on :func:`threefry_bits`
    (falls back to ``jax.random.gumbel`` for keys of another generator): a uniform float in
    ``[tiny, 1)`` from the top 23 bits, then ``-log(-log(u))``."""
    if not uses_threefry(key):
        return jax.random.gumbel(key, shape, jnp.float32)
    bits = threefry_bits(key, shape)
    one = np.array(1.0, np.float32)
    floats = jax.lax.bitcast_convert_type(
        (bits >> np.uint32(9)) | one.view(np.uint32), jnp.float32) - one
    tiny = np.array(np.finfo(np.float32).tiny, np.float32)
    u = jnp.maximum(tiny, floats * (one - tiny) + tiny)
    return -jnp.log(-jnp.log(u))


def gumbel_softmax_unrolled(key: Array, logits: Array, temperature: float = 1.0) -> Array:
    """:func:`gumbel_softmax` with the noise of :func:`gumbel` (same numbers, faster on the
    CPU); float32 logits."""
    g = gumbel(key, logits.shape).astype(logits.dtype)
    return jax.nn.softmax((logits + g) / temperature, axis=-1)


# ---- small tree helpers (every learner's stacks of games, seeds and buffers) ----------------


def take(tree: Any, i: Any) -> Any:
    """Entry ``i`` (an int, an index array) of the leading axis of every leaf of ``tree``."""
    return jax.tree.map(lambda x: jnp.asarray(x)[jnp.asarray(i)], tree)


def put(tree: Any, i: Any, value: Any) -> Any:
    """``tree`` with entry ``i`` of its leading axes replaced by ``value`` (a tree like it)."""
    return jax.tree.map(lambda x, v: x.at[i].set(v), tree, value)


def mean0(tree: Any) -> Any:
    """The mean over the leading axis of every leaf, in the leaf's dtype."""
    return jax.tree.map(lambda x: jnp.mean(x, axis=0).astype(x.dtype), tree)


def tile(tree: Any, n: int) -> Any:
    """``[n]`` copies of an (unbatched) tree, e.g. of one task."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), tree)


def cycle(tasks: Any, n: int) -> Any:
    """``[n]`` entries cycling over a ``[B]`` stack (e.g. ``n`` games over ``B`` tasks)."""
    b = jax.tree.leaves(tasks)[0].shape[0]
    return take(tasks, jnp.arange(n) % b)
