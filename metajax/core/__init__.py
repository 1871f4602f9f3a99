"""Layer 1 of the learning layer (it knows no algorithm): the learner interfaces, small ops,
networks, replay, task specs."""
