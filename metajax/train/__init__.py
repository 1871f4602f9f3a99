"""Layer 2 (it knows no algorithm): the chunked host loop, evaluation, checkpoints, the
statistics of a run."""
