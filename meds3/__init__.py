"""meds3: medical small language models with self-evolved slow thinking.

Stages (one subpackage each): ``data`` (questions, loaders, prompts, seed tasks),
``verify`` (rule-based answer checks), ``engines`` (generation backends), and,
built on those, the search, training and inference stages.

The library's entry points, one per ``meds3`` command (docs/architecture.md)::

    import meds3

    questions = meds3.load_questions("data/eval/medqa.jsonl")
    trees = meds3.run_rollout(meds3.RolloutConfig(seeds=["seed_data/clinical_calc.jsonl"], limit=4))
    adapter = meds3.train_policy(meds3.PolicyTrainConfig(trees=[trees.output_dir])).output_dir
    answers = meds3.answer_many(questions[:8], policy="smollm2-135m-instruct", adapter=adapter,
                                selector="majority", n=4)

Every name below is imported when first used (module ``__getattr__``), so ``import meds3``
stays fast and loads neither torch nor Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    # questions and answers
    "MedQuestion": "meds3.data.question",
    "load_questions": "meds3.data.loaders",
    "save_questions": "meds3.data.loaders",
    "verify": "meds3.verify",  # the package, callable as meds3.verify.api.verify
    "Verdict": "meds3.verify.core",
    "PromptConfig": "meds3.data.prompts",
    # the engine
    "EngineConfig": "meds3.engines.config",
    "build_engine": "meds3.engines.base",
    "build_engine_from": "meds3.engines.config",
    # rollout
    "RolloutConfig": "meds3.rollout.runner",
    "SearchConfig": "meds3.mcts.config",
    "RayConfig": "meds3.rollout.ray_config",
    "run_rollout": "meds3.rollout.runner",
    "RolloutResult": "meds3.results",
    # training
    "PolicyTrainConfig": "meds3.train.policy",
    "PRMTrainConfig": "meds3.train.prm",
    "train_policy": "meds3.train.policy",
    "train_prm": "meds3.train.prm",
    "TrainResult": "meds3.train.common",
    "PRMScorer": "meds3.train.scorer",
    # inference
    "answer": "meds3.infer.api",
    "answer_many": "meds3.infer.api",
    "Answer": "meds3.infer.api",
    "BudgetConfig": "meds3.infer.budget",
    "SamplerConfig": "meds3.infer.sampler",
    "register_selector": "meds3.infer.selectors",
    # evaluation
    "EvalConfig": "meds3.eval.config",
    "run_eval": "meds3.eval.runner",
    "EvalResult": "meds3.results",
    # self-evolution
    "EvolveConfig": "meds3.evolve.config",
    "run_evolve": "meds3.evolve.loop",
    "StageResult": "meds3.evolve.stages",
    # configs from YAML
    "load_config": "meds3.config",
    "save_config": "meds3.config",
    "ConfigError": "meds3.config",
    "DataError": "meds3.data.errors",
}

#: Public names whose object has another name in its module.
_RENAMED = {"run_evolve": "run"}

#: Public names that are subpackages: the import system sets ``meds3.<name>`` to the package
#: when it is first imported, so the package itself is the public object (``meds3.verify`` is
#: callable: meds3/verify/__init__.py).
_PACKAGES = {"verify"}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    """Import a public name on first use and keep it (the next lookup is a plain attribute)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'meds3' has no attribute {name!r}")
    imported = importlib.import_module(module)
    value = imported if name in _PACKAGES else getattr(imported, _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
