"""Orbax checkpoints of the whole (seed-batched) learner state together with the run config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A missing or incompatible checkpoint."""


class Checkpointer:
    """Save/restore ``{"state": learner state, "config": dict, "meta": dict}`` under
    ``run_dir/checkpoints/<step>``; keeps the ``max_to_keep`` latest.

    ``step`` is the chunk index; saving is asynchronous, :meth:`wait` (or :meth:`close`) blocks
    until the files are written.
    """

    def __init__(self, run_dir: str | Path, max_to_keep: int = 2):
        self.path = Path(run_dir).absolute() / "checkpoints"
        self.manager = ocp.CheckpointManager(
            self.path,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            item_names=("state", "config", "meta"),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, config: dict, meta: dict) -> None:
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_pack(state)),
                config=ocp.args.JsonSave(config),
                meta=ocp.args.JsonSave(meta),
            ),
        )

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict, dict]:
        """Restore ``(state, config, meta)``; ``abstract_state`` gives structure, shapes,
        dtypes and shardings (e.g. ``jax.eval_shape`` of the init, with shardings)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint under {self.path}")
        try:
            out = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(_pack(abstract_state)),
                    config=ocp.args.JsonRestore(),
                    meta=ocp.args.JsonRestore(),
                ),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"checkpoint {self.path}/{step} does not match this learner "
                f"(different config, env or number of seeds?): {e}"
            ) from e
        return _unpack(out.state, abstract_state), out.config, out.meta

    def read_config(self, step: int | None = None) -> tuple[dict, dict]:
        """Only the ``(config, meta)`` of a checkpoint."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint under {self.path}")
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(
                config=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()
            ),
        )
        return out.config, out.meta

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _is_empty(x: Any) -> bool:
    return hasattr(x, "shape") and int(np.prod(x.shape)) == 0


def _pack(tree: Any) -> Any:
    """Orbax cannot save zero-size arrays: store a 1-element placeholder in their place."""
    return jax.tree.map(
        lambda x: np.zeros((1,), x.dtype) if _is_empty(x) else x, tree)


def _unpack(restored: Any, like: Any) -> Any:
    """Put the zero-size arrays of ``like`` back in place of their placeholders."""
    def back(r: Any, x: Any) -> Any:
        if not _is_empty(x):
            return r
        sharding = getattr(x, "sharding", None)
        z = jnp.zeros(x.shape, x.dtype)
        return jax.device_put(z, sharding) if sharding is not None else z

    return jax.tree.map(back, restored, like)


def abstract_like(state: Any) -> Any:
    """``ShapeDtypeStruct`` tree (with shardings) of a concrete or abstract state."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
