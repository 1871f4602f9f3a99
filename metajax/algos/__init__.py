"""Layer 3: the algorithms (MADDPG, MRA, MESA's parts, the reference policies), each readable
against its paper."""
