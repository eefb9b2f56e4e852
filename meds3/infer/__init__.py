"""Test-time scaling: N-sample inference, budget forcing and answer selection (P-VS and family).

>>> from meds3.infer import answer
>>> result = answer(question, policy="smollm2-135m-instruct", prm="runs/real/prm", n=16)
>>> result.answer, result.scores

- :mod:`meds3.infer.sampler`: ``sample_responses(engine, questions, SamplerConfig)``.
- :mod:`meds3.infer.budget`: s1/m1 budget forcing (``BudgetConfig``).
- :mod:`meds3.infer.selectors`: majority, best-of-N, vote-sum, vote-mean, ``p-vs``.
- :mod:`meds3.infer.api`: ``answer(question, ...)`` for one question, ``answer_many(questions, ...)`` for many.
- :mod:`meds3.infer.mcts`: ``prm_guided_mcts(questions, engine, scorer)``: PRM-guided MCTS.
"""

from meds3.infer.api import Answer, StepScorer, answer, answer_many, load_scorer, score_many, score_responses
from meds3.infer.budget import BudgetConfig, Generation, TokenUsage, generate_with_budget
from meds3.infer.mcts import MCTSAnswer, inference_search_config, prm_guided_mcts
from meds3.infer.sampler import Response, SamplerConfig, make_response, question_seed, sample_responses
from meds3.infer.selectors import (
    AGGREGATIONS,
    PRM_SELECTORS,
    SELECTORS,
    Selection,
    aggregate,
    best_of_n,
    get_selector,
    majority,
    needs_prm,
    p_vs,
    register_selector,
    vote,
)

__all__ = [
    "AGGREGATIONS", "Answer", "BudgetConfig", "Generation", "MCTSAnswer", "PRM_SELECTORS", "Response", "SELECTORS",
    "SamplerConfig", "Selection", "StepScorer", "TokenUsage", "aggregate", "answer", "answer_many", "best_of_n",
    "generate_with_budget",
    "get_selector", "inference_search_config", "load_scorer", "majority", "make_response", "needs_prm",
    "p_vs", "prm_guided_mcts", "question_seed", "register_selector", "sample_responses", "score_many",
    "score_responses", "vote",
]
