"""The self-evolution loop: rollout -> training data -> policy and PRM -> evaluation.

>>> from meds3.config import load_config
>>> from meds3.evolve import EvolveConfig, run
>>> report = run(load_config(EvolveConfig, "examples/configs/evolve.yaml"))
>>> print(report["table"])
"""

from meds3.evolve.config import EvolveConfig
from meds3.evolve.loop import iteration_questions, run, split_seeds

__all__ = ["EvolveConfig", "iteration_questions", "run", "split_seeds"]
