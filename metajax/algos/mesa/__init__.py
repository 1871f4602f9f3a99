"""MESA's parts (Zhang et al. 2023): the densified reward and coverage counts (:mod:`.core`) and
the k-means hash (:mod:`.kmeans`)."""
