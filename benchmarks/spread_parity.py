"""Check that our ``spread`` world steps like PettingZoo's MPE (``mpe2``) ``simple_spread_v3``.

Run from the repository root with the project venv (the mpe2 side runs in a subprocess under the
peer interpreter, default ``.venv-bench/bin/python``)::

    .venv/bin/python benchmarks/spread_parity.py

mpe2 starts from a chosen state (two agents in contact) and takes 24 random discrete actions;
ours (``Spread(integration="position_first", local_ratio=0.5)``, mpe2's integration order and
reward mix) replays them from the same state. PettingZoo numbers its moves
(no-op, -x, +x, -y, +y); ours are (no-op, +x, -x, +y, -y), so actions are mapped. Positions,
rewards and the observation features both share (own velocity and position, landmarks
relative to the agent) are compared; exits non-zero above ``--tol``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
N, STEPS = 3, 24


def emit_mpe2(out: str, seed: int) -> None:
    """(peer interpreter) Roll mpe2 from a fixed state; dump states, rewards, observations."""
    import numpy as np
    from mpe2 import simple_spread_v3

    env = simple_spread_v3.parallel_env(
        N=N, max_cycles=STEPS + 1, continuous_actions=False, local_ratio=0.5
    )
    env.reset(seed=seed)
    world = env.unwrapped.world
    rng = np.random.default_rng(seed)
    pos = rng.uniform(-0.5, 0.5, (N, 2))
    pos[1] = pos[0] + [0.2, 0.05]  # in contact (distance < 0.3)
    landmarks = rng.uniform(-1, 1, (N, 2))
    for i, a in enumerate(world.agents):
        a.state.p_pos, a.state.p_vel = pos[i].copy(), np.zeros(2)
    for i, lm in enumerate(world.landmarks):
        lm.state.p_pos = landmarks[i].copy()
    acts = rng.integers(0, 5, (STEPS, N))
    rec: dict = {"pos0": pos.tolist(), "landmarks": landmarks.tolist(), "acts": acts.tolist()}
    rec.update(pos=[], rew=[], obs=[])
    for t in range(STEPS):
        obs, rew, *_ = env.step({a: int(acts[t, i]) for i, a in enumerate(env.agents)})
        rec["pos"].append([a.state.p_pos.tolist() for a in world.agents])
        rec["rew"].append([float(rew[a]) for a in env.agents])
        rec["obs"].append([obs[a].tolist() for a in env.agents])
    Path(out).write_text(json.dumps(rec))


def compare(ref: dict) -> dict[str, float]:
    """(project interpreter) Replay ``ref`` in our Spread; max abs differences."""
    sys.path.insert(0, str(ROOT))
    import jax
    import jax.numpy as jnp
    import numpy as np

    from envs.particle.spread import Spread

    env = Spread(integration="position_first", local_ratio=0.5)
    state, _ = env.reset_to(jax.random.key(0), env.make_task())
    state = state.replace(
        pos=jnp.asarray(ref["pos0"], jnp.float32),
        obj_pos=jnp.asarray(ref["landmarks"], jnp.float32),
    )
    pz_to_ours = np.array([0, 2, 1, 4, 3])
    step = jax.jit(env.step)
    err = {"position": 0.0, "reward": 0.0, "observation": 0.0}
    for t, a in enumerate(ref["acts"]):
        state, ts = step(state, jnp.asarray(pz_to_ours[np.asarray(a)], jnp.int32))
        o = ts.observation
        mine = np.concatenate([o.self, np.asarray(o.objects).reshape(N, -1)], axis=-1)
        theirs = np.asarray(ref["obs"][t])[:, : mine.shape[1]]  # vel, pos, landmarks first
        for k, x, y in (
            ("position", state.pos, ref["pos"][t]),
            ("reward", ts.reward, ref["rew"][t]),
            ("observation", mine, theirs),
        ):
            err[k] = max(err[k], float(np.abs(np.asarray(x) - np.asarray(y)).max()))
    return err


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--emit-mpe2", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.emit_mpe2:
        emit_mpe2(args.emit_mpe2, args.seed)
        return
    if not Path(args.peer_python).exists():
        sys.exit(f"{args.peer_python} not found: set up .venv-bench (benchmarks/README.md)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "mpe2.json"
        cmd = [args.peer_python, __file__, "--emit-mpe2", str(out), "--seed", str(args.seed)]
        subprocess.run(cmd, check=True)
        err = compare(json.loads(out.read_text()))
    print(", ".join(f"max |{k} diff| {v:.2e}" for k, v in err.items()) + f" over {STEPS} steps")
    if max(err.values()) > args.tol:
        sys.exit(f"spread departs from mpe2 by more than {args.tol}")
    print("spread agrees with mpe2 simple_spread_v3")


if __name__ == "__main__":
    main()
