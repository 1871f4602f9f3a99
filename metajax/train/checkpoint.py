"""Orbax checkpoints of the whole (seed-batched) learner state together with the run config.

Every checkpoint is verified when it is read back: Orbax's commit markers
(``commit_success.txt`` in the step directory and in each item directory, which Orbax writes
just before it renames a finished save into place), the stored array shapes against the
learner's template, then the restore itself and a CRC-32 of every state array, recorded at save
time in the ``integrity`` item (checkpoints written before it existed skip that last check).
Without a ``step``, :meth:`Checkpointer.restore` and :meth:`Checkpointer.read_config` fall back
to the newest intact checkpoint with a one-line warning; when none is intact, or the requested
step is damaged, they raise a one-line :class:`CheckpointError`.
"""

from __future__ import annotations

import gc
import logging
import re
import shutil
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from metajax.train import killpoint

#: The file Orbax writes into a step (and each item) directory when the save is complete.
COMMIT_MARKER = ocp.path.atomicity_types.COMMIT_SUCCESS_FILE
#: Items of a checkpoint; ``integrity`` holds the CRC-32 of each state array.
ITEMS = ("state", "config", "meta", "integrity")
#: Where a resumed run moves the damaged checkpoints it is about to write again (a sibling of
#: ``checkpoints/``, so that Orbax never sees them).
DAMAGED_DIR = "checkpoints.damaged"


class CheckpointError(RuntimeError):
    """A missing, damaged or incompatible checkpoint."""


class _Damaged(Exception):
    """One checkpoint failed a check; the message says which (one line)."""


def warn_stderr(message: str) -> None:
    """The default warning sink: one ``warning:`` line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


class Checkpointer:
    """Save/restore ``{"state": learner state, "config": dict, "meta": dict}`` under
    ``run_dir/checkpoints/<step>``; keeps the ``max_to_keep`` latest.

    ``step`` is the chunk index; saving is asynchronous, :meth:`wait` (or :meth:`close`) blocks
    until the files are written. ``warn`` receives the one-line fallback warnings (default:
    :func:`warn_stderr`). After a restore, ``restored_step`` is the step that was read and
    ``damaged`` maps each damaged step met on the way to why.
    """

    def __init__(self, run_dir: str | Path, max_to_keep: int = 2,
                 warn: Callable[[str], None] | None = None):
        self.path = Path(run_dir).absolute() / "checkpoints"
        self._saving: int | None = None  # the step being saved, for the test-only kill point
        self._kill_hook = killpoint.checkpoint_hook(lambda: self._saving)
        self.manager = ocp.CheckpointManager(
            self.path,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True,
                async_options=(None if self._kill_hook is None else ocp.AsyncOptions(
                    post_finalization_callback=self._kill_hook))),
            item_names=ITEMS,
        )
        self.warn = warn or warn_stderr
        self.restored_step: int | None = None
        self.damaged: dict[int, str] = {}
        self._stale: set[int] = set()  # damaged steps newer than the one restored
        self._warned: set[tuple[tuple[int, ...], int]] = set()

    def steps(self) -> list[int]:
        """The finalized steps, oldest first (intact or not)."""
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, config: dict, meta: dict) -> None:
        """Save ``step`` (asynchronously). A damaged checkpoint that a fallback restore
        skipped and that this save (or a later one) would write again is first moved to
        ``run_dir/checkpoints.damaged/<step>``: Orbax would otherwise skip the save."""
        if self._stale:
            self._move_stale()
        if self._kill_hook is not None:  # the previous save is done (Orbax waits for it too)
            self.manager.wait_until_finished()
            self._saving = step
        packed = _pack(state)
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(packed),
                config=ocp.args.JsonSave(config),
                meta=ocp.args.JsonSave(meta),
                integrity=ocp.args.JsonSave(_integrity(packed)),
            ),
        )

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict, dict]:
        """Restore ``(state, config, meta)``; ``abstract_state`` gives structure, shapes,
        dtypes and shardings (e.g. ``jax.eval_shape`` of the init, with shardings).

        Without ``step``: the newest intact checkpoint (a one-line warning names the damaged
        newer ones). Raises :class:`CheckpointError` (one line) when there is no checkpoint,
        none is intact, ``step`` is missing or damaged, or a checkpoint does not fit
        ``abstract_state``.
        """
        out, used = self._first_intact(
            step, lambda s: self._restore_step(s, abstract_state), "")
        self.restored_step = used
        return out

    def read_config(self, step: int | None = None) -> tuple[dict, dict]:
        """Only the ``(config, meta)`` of a checkpoint (the newest whose two are intact, with
        the same warnings and errors as :meth:`restore`)."""
        return self._first_intact(step, self._read_config_step, "config of ")[0]

    def verify(self, step: int, abstract_state: Any) -> str | None:
        """Why checkpoint ``step`` is damaged (one line), or ``None`` when it is intact: its
        commit markers, then a full restore against ``abstract_state`` with the checksums.

        Raises :class:`CheckpointError` when ``step`` does not exist or does not fit
        ``abstract_state`` (a different learner, not damage).
        """
        self._require(step)
        try:
            self._restore_step(step, abstract_state)
        except _Damaged as e:
            return str(e)
        return None

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    # --- internals --------------------------------------------------------------------------

    def _require(self, step: int) -> None:
        steps = self.steps()
        if step not in steps:
            raise CheckpointError(f"no checkpoint {step} under {self.path} (saved: {steps})")

    def _first_intact(self, step: int | None, read: Callable[[int], Any],
                      what: str) -> tuple[Any, int]:
        """``(read(s), s)`` for ``step``, or for the newest step whose ``read`` passes."""
        if step is not None:
            self._require(step)
            try:
                return read(step), step
            except _Damaged as e:
                self.damaged[step] = str(e)
                raise CheckpointError(
                    f"{what}checkpoint {self.path}/{step} is damaged: {e}") from None
        steps = self.steps()
        if not steps:
            raise CheckpointError(f"no checkpoint under {self.path}")
        damaged: dict[int, str] = {}
        for s in reversed(steps):
            try:
                out = read(s)
            except _Damaged as e:
                damaged[s] = str(e).replace(f"{self.path / str(s)}/", "")
                continue
            self.damaged.update(damaged)
            self._stale.update(damaged)
            if damaged:
                self._warn_fallback(damaged, s, what)
            return out, s
        self.damaged.update(damaged)
        listed = "; ".join(f"{s}: {r}" for s, r in damaged.items())
        raise CheckpointError(f"no intact {what}checkpoint under {self.path} ({listed})")

    def _warn_fallback(self, damaged: dict[int, str], used: int, what: str) -> None:
        key = (tuple(damaged), used)
        if key in self._warned:
            return
        self._warned.add(key)
        if len(damaged) == 1:
            (s, reason), = damaged.items()
            text = f"{what}checkpoint {s} under {self.path} is damaged ({reason})"
        else:
            listed = "; ".join(f"{s}: {r}" for s, r in damaged.items())
            text = (f"{what}checkpoints {', '.join(map(str, damaged))} under {self.path} are "
                    f"damaged ({listed})")
        self.warn(f"{text}; using checkpoint {used}")

    def _check_markers(self, step: int, items: tuple[str, ...]) -> Path:
        d = self.path / str(step)
        if not d.is_dir() or not ocp.path.step.is_checkpoint_finalized(d):
            raise _Damaged("not finalized")
        if not (d / COMMIT_MARKER).is_file():
            raise _Damaged(f"no commit marker ({COMMIT_MARKER})")
        for item in items:
            if not (d / item).is_dir():
                raise _Damaged(f"{item}/ is missing")
            if not (d / item / COMMIT_MARKER).is_file():
                raise _Damaged(f"{item}/ has no commit marker ({COMMIT_MARKER})")
        return d

    def _read_config_step(self, step: int) -> tuple[dict, dict]:
        self._check_markers(step, ("config", "meta"))
        _quiet_orbax_leftovers()
        try:
            out = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    config=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()),
            )
        except Exception as e:  # any failure to read a finalized checkpoint is damage
            raise _failed(e) from None
        if not isinstance(out.config, dict) or not isinstance(out.meta, dict):
            raise _Damaged("config or meta is not a JSON object")
        return out.config, out.meta

    def _restore_step(self, step: int, abstract_state: Any) -> tuple[Any, dict, dict]:
        d = self._check_markers(step, ("state", "config", "meta"))
        packed = _pack(abstract_state)
        self._check_shapes(d / "state", step, packed)
        checked = (d / "integrity").is_dir()
        args = {
            "state": ocp.args.StandardRestore(packed),
            "config": ocp.args.JsonRestore(),
            "meta": ocp.args.JsonRestore(),
        }
        if checked:
            if not (d / "integrity" / COMMIT_MARKER).is_file():
                raise _Damaged(f"integrity/ has no commit marker ({COMMIT_MARKER})")
            args["integrity"] = ocp.args.JsonRestore()
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(**args))
        except Exception as e:  # the shapes fit, so a failure here is damage
            raise _failed(e) from None
        if not isinstance(out.config, dict) or not isinstance(out.meta, dict):
            raise _Damaged("config or meta is not a JSON object")
        if checked:
            _check_integrity(out.integrity if isinstance(out.integrity, dict) else {},
                             out.state)
        return _unpack(out.state, abstract_state), out.config, out.meta

    def _check_shapes(self, state_dir: Path, step: int, packed: Any) -> None:
        """Raise :class:`CheckpointError` when the stored arrays do not fit ``packed`` (a
        different learner), :class:`_Damaged` when their metadata cannot be read."""
        _quiet_orbax_leftovers()
        try:
            tree = ocp.StandardCheckpointHandler().metadata(epath.Path(state_dir))
            stored = {getattr(m, "name", None) or _leaf_name(p): tuple(m.shape)
                      for p, m in jax.tree_util.tree_flatten_with_path(
                          getattr(tree, "tree", tree))[0] if hasattr(m, "shape")}
        except Exception as e:
            raise _failed(e, "state metadata: ") from None
        wanted = {_leaf_name(p): tuple(x.shape)
                  for p, x in jax.tree_util.tree_flatten_with_path(packed)[0]
                  if hasattr(x, "shape")}
        if set(stored) == set(wanted):
            diff = [k for k in wanted if stored[k] != wanted[k]]
            if diff:
                k = diff[0]
                self._mismatch(step, f"{k} has shape {stored[k]} there, {wanted[k]} here")
        elif sorted(stored.values()) != sorted(wanted.values()):
            extra = sorted(set(stored) - set(wanted))[:1]
            missing = sorted(set(wanted) - set(stored))[:1]
            detail = f"{len(stored)} arrays stored, {len(wanted)} in this learner"
            if missing:
                detail += f"; {missing[0]} is not stored"
            elif extra:
                detail += f"; {extra[0]} is stored but not in this learner"
            self._mismatch(step, detail)

    def _mismatch(self, step: int, detail: str) -> None:
        raise CheckpointError(
            f"checkpoint {self.path}/{step} does not match this learner (different config, "
            f"env or number of seeds?): {detail}")

    def _move_stale(self) -> None:
        self.manager.wait_until_finished()
        target = self.path.parent / DAMAGED_DIR
        for s in sorted(self._stale):
            src = self.path / str(s)
            if not src.is_dir():
                continue
            target.mkdir(exist_ok=True)
            dst, n = target / str(s), 1
            while dst.exists():
                dst, n = target / f"{s}.{n}", n + 1
            shutil.move(str(src), str(dst))
            self.warn(f"moved damaged checkpoint {src} to {dst}")
        self._stale.clear()
        self.manager.reload()


def _summary(e: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message`` of the innermost cause of ``e`` (TensorStore's
    error under Orbax's wrapper), without TensorStore's spec dump, at most ``limit``
    characters."""
    seen = {id(e)}
    while (nxt := e.__cause__ or e.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        e = nxt
    lines = str(e).strip().splitlines()
    text = lines[0].split(" See full TensorStore details")[0].strip() if lines else ""
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Messages of the exceptions a failed Orbax read leaves behind in its abandoned coroutines and
#: TensorStore callbacks, besides TensorStore's own errors (``DATA_LOSS: ...``). Python prints
#: each with its traceback ("Exception ignored in ...", "Task exception was never retrieved")
#: when it surfaces, long after the read failed.
_LEFTOVERS = ("Event loop is closed", "Encountered error while reading array index")
_STATUS = re.compile(r"[A-Z][A-Z_]+: ")
_hook_installed: list[bool] = []


def _is_leftover(exc: BaseException | None) -> bool:
    text = str(exc)
    return any(m in text for m in _LEFTOVERS) or _STATUS.match(text) is not None


class _LeftoverFilter(logging.Filter):
    """Drops asyncio's "Task/Future exception was never retrieved" for abandoned Orbax reads
    (the Future form appears when several reads of one damaged step fail at once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (str(record.msg).startswith(("Task exception was never retrieved",
                                                "Future exception was never retrieved"))
                    and _is_leftover(exc))


def _quiet_orbax_leftovers() -> None:
    """Keep the leftovers of failed Orbax reads off stderr for the rest of the process: a
    filter in front of ``sys.unraisablehook`` and on the ``asyncio`` logger, installed once
    before the first read; every other exception still goes through."""
    if _hook_installed:
        return
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not _is_leftover(unraisable.exc_value):
            previous(unraisable)

    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(_LeftoverFilter())
    _hook_installed.append(True)


def _failed(e: BaseException, prefix: str = "") -> _Damaged:
    """The damage of a failed read (after collecting its abandoned coroutines)."""
    gc.collect()
    return _Damaged(prefix + _summary(e))


def _key_name(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _leaf_name(path: tuple) -> str:
    """Orbax's name of a leaf: its key path joined by dots (``actor_opt.1.0.count``)."""
    return ".".join(_key_name(k) for k in path)


def _is_split(x: Any) -> bool:
    """A global array with parts on other processes (a multi-process run)."""
    return isinstance(x, jax.Array) and not x.is_fully_addressable


def _checksums(tree: Any) -> dict[str, int]:
    """CRC-32 of the bytes of each array leaf held whole by this process, by leaf name."""
    out: dict[str, int] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if _is_split(leaf):
            continue
        try:
            a = np.ascontiguousarray(np.asarray(leaf))
            out[_leaf_name(path)] = zlib.crc32(a.reshape(-1).view(np.uint8))
        except (TypeError, ValueError):  # not a plain array (e.g. a typed PRNG key)
            continue
    return out


def _split_leaves(tree: Any) -> list[tuple[str, jax.Array]]:
    return [(_leaf_name(p), x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
            if _is_split(x)]


def _local_rows_crc(x: jax.Array) -> int:
    """CRC-32 of this process's rows of a leaf split over processes: its addressable shards in
    order along the leading (member) axis, replicas once. The same for any number of devices
    per process, as each process holds one contiguous block of members."""
    crc = 0
    shards = [s for s in x.addressable_shards if s.replica_id == 0]
    for s in sorted(shards, key=lambda s: [i.start or 0 for i in s.index]):
        a = np.ascontiguousarray(np.asarray(s.data))
        crc = zlib.crc32(a.reshape(-1).view(np.uint8), crc)
    return crc


def _process_crcs(tree: Any) -> dict[str, list[int]]:
    """``{leaf name: [CRC-32 of its rows on process p for every p]}`` of the leaves split over
    processes (gathered: every process calls this at the same point); empty in one process."""
    leaves = _split_leaves(tree)
    if not leaves:
        return {}
    from jax.experimental import multihost_utils

    local = np.asarray([_local_rows_crc(x) for _, x in leaves], np.uint32)  # 32-bit in jax
    every = np.asarray(multihost_utils.process_allgather(local), np.int64)  # [P, leaves]
    return {name: every[:, i].tolist() for i, (name, _) in enumerate(leaves)}


def _integrity(packed: Any) -> dict:
    """The ``integrity`` item: ``crc32`` (leaves held whole) and, in a multi-process run,
    ``crc32_per_process`` (see :func:`_process_crcs`)."""
    out: dict = {"crc32": _checksums(packed)}
    split = _process_crcs(packed)
    if split:
        out["crc32_per_process"] = split
    return out


def _check_integrity(saved: dict, state: Any) -> None:
    """Raise :class:`_Damaged` when a restored array differs from its CRC-32 at save time; in a
    multi-process run every process learns whether any process found damage."""
    whole = saved.get("crc32", {})
    bad = [k for k, v in _checksums(state).items() if k in whole and whole[k] != v]
    per_proc = saved.get("crc32_per_process", {})
    leaves = _split_leaves(state)
    if leaves:
        from jax.experimental import multihost_utils

        me = jax.process_index()
        bad += [name for name, x in leaves
                if name in per_proc and per_proc[name][me] != _local_rows_crc(x)]
        flags = np.asarray(multihost_utils.process_allgather(np.int32(len(bad))))
        if flags.any() and not bad:
            raise _Damaged(f"state arrays of process {int(np.flatnonzero(flags)[0])} fail "
                           "their CRC-32 check")
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise _Damaged(f"state array {bad[0]}{more} fails its CRC-32 check")


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
        if sharding is None:
            return jnp.zeros(x.shape, x.dtype)
        z = np.zeros(x.shape, x.dtype)  # nothing to transfer; works on a global sharding too
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: z[idx])

    return jax.tree.map(back, restored, like)


def abstract_like(state: Any) -> Any:
    """``ShapeDtypeStruct`` tree (with shardings) of a concrete or abstract state."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
