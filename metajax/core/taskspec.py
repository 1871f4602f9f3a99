"""Task specs: the keyword dicts of an env's ``make_task``, checked against its signature before
anything is built, stacked into a batch of tasks, de-duplicated."""

from __future__ import annotations

import inspect
import json
from typing import Any

from envs.core import MultiAgentEnv
from envs.wrappers import stack_tasks
from metajax.config import ConfigError


def task_fields(env: MultiAgentEnv) -> tuple[MultiAgentEnv, inspect.Signature | None]:
    """``(env, signature of its make_task)``, followed through wrappers that pass ``**fields``
    on to the ``env`` they wrap; the signature is ``None`` if it only takes ``**fields``."""
    while True:
        sig = inspect.signature(env.make_task)
        if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return env, sig
        inner = getattr(env, "env", None)
        if inner is None or inner is env:
            return env, None
        env = inner


def check_task_spec(env: MultiAgentEnv, spec: dict) -> None:
    """Raise :class:`ConfigError` if ``env.make_task(**spec)`` would not accept the keys of
    ``spec`` (an unknown field, or a required one missing), listing the env's task fields."""
    env, sig = task_fields(env)
    if sig is None:
        return
    params = sig.parameters
    unknown = [k for k in spec if k not in params]
    missing = [k for k, p in params.items()
               if p.default is p.empty and p.kind is not p.VAR_POSITIONAL and k not in spec]
    if not (unknown or missing):
        return
    fields = ", ".join(params) or "none"
    what = (f"unknown task field{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}" if unknown else
            f"missing task field{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))}")
    raise ConfigError(f"{what} for {type(env).__name__} (task fields: {fields})")


def make_task(env: MultiAgentEnv, spec: dict) -> Any:
    """``env.make_task(**spec)`` after :func:`check_task_spec`."""
    spec = dict(spec)
    check_task_spec(env, spec)
    return env.make_task(**spec)


def build_tasks(env: MultiAgentEnv, specs: tuple[dict, ...], n: int | None = None) -> Any:
    """Stack ``env.make_task(**spec)`` for each spec (cycled to ``n`` entries if given).

    Raises:
      ConfigError: a spec with an unknown (or without a required) task field.
    """
    for s in specs:
        check_task_spec(env, dict(s))
    made = [env.make_task(**dict(s)) for s in specs]
    if n is not None:
        made = [made[i % len(made)] for i in range(n)]
    return stack_tasks(made)


def distinct_tasks(specs: tuple[dict, ...]) -> tuple[dict, ...]:
    """The task specs with duplicates removed, in order."""
    seen, out = set(), []
    for s in specs:
        k = json.dumps(s, sort_keys=True)
        if k not in seen:
            seen.add(k)
            out.append(s)
    return tuple(out)
