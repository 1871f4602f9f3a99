"""The host side every chunked loop shares (run_chunks and MESA's stages)."""

from __future__ import annotations

from metajax.train.loop import HostLog


class _FakeWandb:
    def __init__(self):
        self.rows = []

    def log(self, row):
        self.rows.append(row)


def test_log_lines_every_tenth_and_wandb_rows_per_member():
    lines, wb = [], _FakeWandb()
    host = HostLog("stage_a", n_chunks=20, per_chunk=100, start_chunk=0, end_chunk=20,
                   show=False, wb=wb, log=lines.append, unit="seed", prefix="stage_a/")
    for c in range(20):
        host.chunk(c, {"stage": "stage_a", "chunk": c + 1, "episode_return": [1.0, 3.0],
                       "env_steps": [100 * (c + 1)] * 2, "critic_loss": [0.5, 0.25]})
    host.close()
    assert len(lines) == 10  # chunks 2, 4, ..., 20
    assert lines[0].startswith("[stage_a] chunk 2/20  env steps 200  ")
    assert "steps/s  ETA " in lines[0] and lines[-1].endswith("return 2.000")
    assert len(wb.rows) == 20
    last = wb.rows[-1]
    assert last["stage_a/env_steps"] == 2000 and last["stage_a/episode_return"] == 2.0
    assert last["stage_a/critic_loss/seed1"] == 0.25 and "stage_a/stage" not in str(last)
    assert host.steps_done == 2000
