"""Uniform replay of padded multi-agent transitions, on flashbax item buffers.

The buffer functions are pure, so a learner keeps one buffer state per task and per seed by
``vmap`` (the runner does); nothing here knows about seeds or tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import flashbax as fbx
import jax
import jax.numpy as jnp
from flax import struct

from envs.core import Observation

Array = jax.Array


@struct.dataclass
class Transition:
    """One joint transition (``A`` agents; ``d`` the learner's per-agent action size).

    * ``obs`` / ``next_obs``: :class:`Observation` ``[A, ...]`` (``next_obs`` is the real final
      observation at episode ends, from ``extras["final_observation"]``);
    * ``action``: ``[A, d]`` float32, the action as the critic sees it (relaxed sample,
      one-hot of the executed discrete action, or the continuous action);
    * ``reward``: ``[A]`` float32; ``discount``: ``[A]`` float32 (0 after termination);
    * ``carry`` / ``next_carry``: ``[A, h]`` recurrent actor state (``h = 0`` if none);
    * ``latent``: ``[A, k]`` latent codes the policy was conditioned on (``k = 0`` if none).
    """

    obs: Observation
    action: Array
    reward: Array
    discount: Array
    next_obs: Observation
    carry: Array
    next_carry: Array
    latent: Array


class Replay(NamedTuple):
    """Pure replay functions (see :func:`make_replay`).

    * ``init(example) -> state``: ``example`` is one unbatched item;
    * ``add(state, items) -> state``: ``items`` has a leading ``[N]`` axis;
    * ``sample(state, key) -> items [batch_size, ...]`` (uniform, with replacement);
    * ``can_sample(state) -> [] bool``: at least ``min_size`` items stored;
    * ``size(state) -> [] int32``.
    """

    init: Callable[[Any], Any]
    add: Callable[[Any, Any], Any]
    sample: Callable[[Any, Array], Any]
    can_sample: Callable[[Any], Array]
    size: Callable[[Any], Array]
    capacity: int
    batch_size: int


def make_replay(capacity: int, batch_size: int, min_size: int | None = None) -> Replay:
    """A uniform replay buffer of ``capacity`` items sampling ``batch_size`` at a time.

    Raises ``ValueError`` for a batch larger than the capacity or ``min_size`` above it.
    """
    capacity, batch_size = int(capacity), int(batch_size)
    min_size = batch_size if min_size is None else max(int(min_size), 1)
    if batch_size > capacity:
        raise ValueError(f"batch_size {batch_size} exceeds the replay capacity {capacity}")
    if min_size > capacity:
        raise ValueError(f"learning starts after {min_size} items > capacity {capacity}")
    buf = fbx.make_item_buffer(
        max_length=capacity,
        min_length=min_size,
        sample_batch_size=batch_size,
        add_sequences=True,
        add_batches=False,
    )

    def add(state: Any, items: Any) -> Any:
        chex.assert_tree_shape_prefix(items, (jax.tree.leaves(items)[0].shape[0],))
        n = jax.tree.leaves(items)[0].shape[0]
        if n > capacity:
            raise ValueError(f"adding {n} items at once exceeds the capacity {capacity}")
        return buf.add(state, items)

    def init(example: Any) -> Any:
        # flashbax starts ``current_index`` as a weakly typed int; a checkpoint restores it
        # strongly typed, and the chunk compiled for the fresh state would then compile again
        # on resume (a weak type is part of the program's signature)
        return jax.tree.map(lambda x: jax.lax.convert_element_type(x, x.dtype),
                            buf.init(example))

    def sample(state: Any, key: Array) -> Any:
        return buf.sample(state, key).experience

    def size(state: Any) -> Array:
        return jnp.where(state.is_full, capacity, state.current_index).astype(jnp.int32)

    return Replay(
        init=init,
        add=add,
        sample=sample,
        can_sample=buf.can_sample,
        size=size,
        capacity=capacity,
        batch_size=batch_size,
    )


def transition_bytes(example: Any) -> int:
    """Bytes one stored item takes (to report buffer memory before allocating it)."""
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(example))
