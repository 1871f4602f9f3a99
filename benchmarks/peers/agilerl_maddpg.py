"""Training throughput of AgileRL's MADDPG (PyTorch, CPU) on PettingZoo MPE ``simple_spread``.

The peer for :mod:`benchmarks.train_throughput`; runs under the separate ``.venv-agilerl``
interpreter (``agilerl==2.58.0``, ``mpe2==1.1.1``, CPU ``torch==2.13.0``), never the project venv.
It prints one line ``TRAIN_THROUGHPUT_JSON {...}`` on stdout, which the benchmark parses.

Setting (the original MADDPG's, matched to our side's row):

* world: ``mpe2.simple_spread_v3.parallel_env(N=3, max_cycles=25, continuous_actions=False)``;
* AgileRL ``MADDPG``: batch 1024, lr 1e-2 (actor and critic), gamma 0.95, tau 0.01,
  ``learn_step=100`` (one ``learn()`` per 100 env steps), replay ``ReplayBuffer(1e6)``;
* networks: ``net_config`` with a one-hidden-layer encoder and head, layer norm off, latent 64.
  The critic is then ``obs -> 64 -> [., actions] -> 64 -> 1`` (64-64); AgileRL's actor is an
  encoder plus a head, each with at least one hidden layer, so it is ``obs -> 64 -> 64 -> 64 ->
  5`` (one 64-unit layer more than ours, the closest AgileRL allows);
* AgileRL groups the homogeneous ``agent_*`` into one shared actor/critic; ``learn()`` still takes
  one critic and one actor step per agent (3 of each), as our per-agent MADDPG does.

The loop is the body of AgileRL's ``train_multi_agent_off_policy`` (get_action, vec-env step,
score bookkeeping, ``transition_to_tensordict``, ``memory.add``, ``learn`` on its schedule,
per-env done detection and action-noise reset), without its evolution, evaluation and logging.
One env runs in-process (``PzDummyVecEnv``, as AgileRL wraps a bare ``ParallelEnv``); more use
``make_multi_agent_vect_envs`` (``AsyncPettingZooVecEnv``, one subprocess per env), with
``learn()`` every ``learn_step // num_envs`` vector steps as AgileRL schedules it.

Timing: run (untimed) until learning has started and ``--warmup`` more env steps passed, then time
``--steps`` env steps. Reports env-steps/s, ``learn()`` calls/s (one ``learn()`` is one gradient
step of every agent's critic and actor, the unit our ``grad_steps`` counts) and where the time
went (``time_split``: fractions of the timed wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from importlib import metadata

MARKER = "TRAIN_THROUGHPUT_JSON"


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "missing"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--steps", type=int, default=5000, help="timed env steps (summed over envs)")
    p.add_argument("--warmup", type=int, default=500, help="env steps after learning starts")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--learn-step", type=int, default=100)
    p.add_argument("--buffer-size", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    warnings.filterwarnings("ignore")
    import numpy as np
    import torch
    from agilerl.algorithms import MADDPG
    from agilerl.components.data import MultiAgentTransition, transition_to_tensordict
    from agilerl.components.replay_buffer import ReplayBuffer
    from agilerl.components.sampler import Sampler
    from agilerl.utils.utils import make_multi_agent_vect_envs
    from agilerl.vector import PzDummyVecEnv
    from mpe2 import simple_spread_v3

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    env_kwargs = dict(N=3, max_cycles=25, continuous_actions=False)
    n = args.num_envs
    if n == 1:
        vec_env = PzDummyVecEnv(simple_spread_v3.parallel_env(**env_kwargs))
    else:
        vec_env = make_multi_agent_vect_envs(simple_spread_v3.parallel_env, num_envs=n,
                                             **env_kwargs)
    obs, info = vec_env.reset(seed=args.seed)
    agent_ids = list(vec_env.agents)
    agent = MADDPG(
        [vec_env.single_observation_space(a) for a in agent_ids],
        [vec_env.single_action_space(a) for a in agent_ids],
        agent_ids=agent_ids,
        vect_noise_dim=n,
        net_config={
            "encoder_config": {"hidden_size": [64], "layer_norm": False},
            "head_config": {"hidden_size": [64], "layer_norm": False},
            "latent_dim": 64,
        },
        batch_size=args.batch_size,
        lr_actor=1e-2,
        lr_critic=1e-2,
        learn_step=args.learn_step,
        gamma=0.95,
        tau=0.01,
    )
    agent.set_training_mode(True)
    memory = ReplayBuffer(max_size=args.buffer_size)
    sample = Sampler(memory=memory).sample
    scores = np.zeros((n, 1))
    clock = {"act": 0.0, "env": 0.0, "store": 0.0, "learn": 0.0, "other": 0.0}
    count = {"env_steps": 0, "learns": 0}

    def loop(vector_steps: int, timed: bool) -> None:
        nonlocal obs, info, scores
        tic = time.perf_counter

        def lap(name: str, t: float) -> float:
            now = tic()
            if timed:
                clock[name] += now - t
            return now

        for idx_step in range(vector_steps):
            t = tic()
            action, raw_action = agent.get_action(obs=obs, infos=info)
            t = lap("act", t)
            next_obs, reward, termination, truncation, info = vec_env.step(action)
            t = lap("env", t)
            rewards = np.column_stack([np.asarray(v).ravel() for v in reward.values()])
            rewards = np.where(np.isnan(rewards), 0, rewards)
            scores += np.sum(rewards, axis=-1)[:, None]
            transition = transition_to_tensordict(MultiAgentTransition(
                obs=obs, action=raw_action, reward=reward, next_obs=next_obs, done=termination))
            transition.batch_size = torch.Size([n])
            memory.add(transition)
            t = lap("store", t)
            learned = False
            if agent.learn_step > n:
                if idx_step % (agent.learn_step // n) == 0 and len(memory) >= agent.batch_size:
                    agent.learn(sample(agent.batch_size))
                    learned = True
            elif len(memory) >= agent.batch_size:
                for _ in range(n // agent.learn_step):
                    agent.learn(sample(agent.batch_size))
                    learned = True
            t = lap("learn", t)
            obs = next_obs
            done_idx = []
            dones = {}
            for aid in agent_ids:
                term = np.where(np.isnan(termination.get(aid, True)), True,
                                termination.get(aid, True)).astype(bool)
                trunc = np.where(np.isnan(truncation.get(aid, False)), False,
                                 truncation.get(aid, False)).astype(bool)
                dones[aid] = term | trunc
            for i, agent_dones in enumerate(zip(*dones.values(), strict=False)):
                if all(agent_dones):
                    scores[i].fill(0)
                    done_idx.append(i)
            agent.reset_action_noise(done_idx)
            lap("other", t)
            if timed:
                count["env_steps"] += n
                count["learns"] += int(learned)

    # untimed: fill the buffer until learning starts, then warm up with learning on
    t0 = time.perf_counter()
    while len(memory) < args.batch_size:
        loop(1, False)
    loop(max(args.warmup // n, 1), False)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop(max(args.steps // n, 1), True)
    elapsed = time.perf_counter() - t0
    if n > 1:
        vec_env.close()
    out = {
        "impl": "agilerl",
        "num_envs": n,
        "env_steps": count["env_steps"],
        "learns": count["learns"],
        "seconds": elapsed,
        "warmup_s": warm_s,
        "env_steps_per_s": count["env_steps"] / elapsed,
        "learns_per_s": count["learns"] / elapsed,
        "env_steps_per_learn": count["env_steps"] / max(count["learns"], 1),
        "time_split": {k: v / elapsed for k, v in clock.items()},
        "torch_threads": torch.get_num_threads(),
        "versions": {k: _version(k) for k in ("torch", "agilerl", "mpe2", "pettingzoo", "numpy")},
        "python": sys.version.split()[0],
        "pid": os.getpid(),
    }
    print(MARKER + " " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
