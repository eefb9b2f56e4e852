"""meds3: medical small language models with self-evolved slow thinking.

Stages (one subpackage each): ``data`` (questions, loaders, prompts, seed tasks),
``verify`` (rule-based answer checks), ``engines`` (generation backends), and,
built on those, the search, training and inference stages.
"""

__version__ = "0.1.0"
