"""metajax: pure-JAX multi-agent RL across games (MRA, MESA)."""

__version__ = "0.1.0"
