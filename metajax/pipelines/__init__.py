"""Layer 4: what an experiment file runs (:mod:`.registry`), and how a run directory is read
back (:mod:`.experiment`)."""
