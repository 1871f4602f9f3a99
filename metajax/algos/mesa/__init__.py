"""MESA, Cooperative Meta-Exploration (Zhang et al. 2023), as the paper's pieces:

* :mod:`.config` - :class:`~.config.MESAConfig`;
* :mod:`.core` - Eq. 5, Eq. 6 and the pseudo-counts (pure functions); :mod:`.kmeans` - the
  hash ``phi``; :mod:`.features` - the joint (state, action) vectors Eq. 6 measures;
* :mod:`.subspace` - Alg. 1 lines 1-6 (collect ``M_*``, fit k-means);
* :mod:`.explorers` - Alg. 1 lines 7-20 (train the exploration policies) and their zero-shot
  measurement;
* :mod:`.metatest` - Alg. 2 and the baselines;
* :mod:`.play`, :mod:`.report` - evaluation episodes and the results' statistics and table;
  :mod:`.stages` - the host loop, logs and checkpoints the stages share.

:func:`metajax.pipelines.mesa.run_mesa` runs the stages one after another.
"""
