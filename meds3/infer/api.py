"""One question in, one answer out, with its evidence: the library entry point."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence, Union

from meds3.data.prompts import PromptConfig
from meds3.data.question import MedQuestion
from meds3.engines.config import EngineConfig, build_engine_from
from meds3.infer.budget import BudgetConfig
from meds3.infer.sampler import Response, SamplerConfig, sample_responses
from meds3.infer.selectors import get_selector, needs_prm

logger = logging.getLogger(__name__)


class StepScorer(Protocol):
    """A process reward model: one probability per step (Step 0 included) per trajectory."""

    def score(self, question: MedQuestion, trajectories: list[list[str]]) -> list[list[float]]:
        ...


def load_scorer(prm: Union[None, str, StepScorer], precision: str = "auto") -> Optional[StepScorer]:
    """A PRM scorer from a path (``meds3.train.prm.PRMScorer``, its weights in ``precision``:
    ``auto``, ``float32`` or ``bfloat16``), an object with ``score``, or None."""
    if prm is None or hasattr(prm, "score"):
        return prm
    from meds3.train.prm import PRMScorer  # imported here: training extras are optional

    return PRMScorer(str(prm), precision=precision)


def score_responses(scorer: StepScorer, question: MedQuestion, responses: Sequence[Response]) -> None:
    """Fill ``step_scores`` of every response of one question (one scorer call).

    Raises:
        ValueError: the scorer returned the wrong number of scores.
    """
    score_many(scorer, [(question, responses)])


def score_many(scorer: StepScorer, items: Sequence[tuple[MedQuestion, Sequence[Response]]]) -> None:
    """Fill ``step_scores`` for several questions: one ``score_batch`` call when the scorer
    has it (trajectories batched across questions), else one ``score`` call per question.

    Raises:
        ValueError: the scorer returned the wrong number of scores.
    """
    trajs = [[list(r.steps) for r in rs] for _, rs in items]
    if hasattr(scorer, "score_batch"):
        all_scores = scorer.score_batch([(q, t) for (q, _), t in zip(items, trajs)])
    else:
        all_scores = [scorer.score(q, t) for (q, _), t in zip(items, trajs)]
    for (_, responses), scores in zip(items, all_scores):
        _fill(responses, scores)


def _fill(responses: Sequence[Response], scores: Sequence[Sequence[float]]) -> None:
    if len(scores) != len(responses):
        raise ValueError(f"PRM returned {len(scores)} score lists for {len(responses)} responses")
    for r, s in zip(responses, scores):
        if len(s) != len(r.steps):
            raise ValueError(f"PRM returned {len(s)} scores for {len(r.steps)} steps of {r.question_id}#{r.index}")
        r.step_scores = [float(x) for x in s]


@dataclass
class Answer:
    """The chosen answer and its evidence.

    Attributes:
        answer: the chosen answer (None: no response stated one).
        text: the representative response's text.
        selector: the selector that chose (may differ from the one asked for: see
            :func:`answer`).
        scores: every candidate answer's score.
        correct: verdict of the chosen answer when the question has a gold answer.
        responses: every sampled response (with PRM step scores when a PRM was given and the
            selector reads them).
    """

    answer: Optional[str]
    text: str
    selector: str
    scores: dict[str, float] = field(default_factory=dict)
    correct: Optional[bool] = None
    responses: list[Response] = field(default_factory=list)


def _as_question(question: Union[str, MedQuestion]) -> MedQuestion:
    if isinstance(question, MedQuestion):
        return question
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a MedQuestion or a non-empty string")
    return MedQuestion(id="question", question=question, task_type="exact")


def answer(question: Union[str, MedQuestion], policy: Any = "smollm2-135m-instruct", prm: Any = None,
           n: int = 16, selector: str = "p-vs", adapter: Optional[str] = None, temperature: float = 0.7,
           top_p: float = 0.9, max_new_tokens: int = 1024, budget: Optional[BudgetConfig] = None,
           seed: Optional[int] = 0, prompt_config: Optional[PromptConfig] = None,
           backend: str = "transformers", **engine_options: Any) -> Answer:
    """Answer one question with N samples and a selector: :func:`answer_many` of one question
    (to answer several, call that: it builds the engine and loads the PRM once).

    Args:
        question: a :class:`MedQuestion` (options and gold answer used when present) or a
            question text (open answer, read after "The answer is").
        policy: a model (path or embedded alias; built with ``backend`` and
            ``engine_options``), an :class:`~meds3.engines.config.EngineConfig`, or a ready
            :class:`meds3.engines.Engine`.
        prm: None, a PRM directory, or any object with ``score(question, trajectories)``.
        n: responses to sample.
        selector: a name from :data:`meds3.infer.selectors.SELECTORS`. A PRM selector
            without a PRM falls back to ``majority`` (logged; ``Answer.selector`` says so).
        adapter: LoRA adapter directory of the policy.
        temperature, top_p, max_new_tokens, budget, seed: sampling (see
            :class:`SamplerConfig`).
        prompt_config: prompt rendering.

    Returns:
        An :class:`Answer`.

    Raises:
        ValueError: unknown selector, bad sampling values, an empty question.
    """
    [result] = answer_many([question], policy, prm, n=n, selector=selector, adapter=adapter,
                           temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, budget=budget,
                           seed=seed, prompt_config=prompt_config, backend=backend, **engine_options)
    return result


def answer_many(questions: Sequence[Union[str, MedQuestion]], policy: Any = "smollm2-135m-instruct",
                prm: Any = None, n: int = 16, selector: str = "p-vs", adapter: Optional[str] = None,
                temperature: float = 0.7, top_p: float = 0.9, max_new_tokens: int = 1024,
                budget: Optional[BudgetConfig] = None, seed: Optional[int] = 0,
                prompt_config: Optional[PromptConfig] = None, backend: str = "transformers",
                batch_size: int = 16, **engine_options: Any) -> list[Answer]:
    """Answer many questions with one engine and one PRM: the engine is built once (unless a
    ready one is given, which is left open), the PRM loaded once (only when the selector reads
    step scores), and ``batch_size`` questions share each engine call. Each question's random
    draws derive from ``seed`` and its id, so its answer is the one :func:`answer` gives it
    (bit for bit with a batch-invariant engine, ``batch_invariant=True``). Question texts all
    get the id ``question``, as in :func:`answer`.

    Args:
        questions: :class:`MedQuestion` objects or question texts.
        policy, prm, n, selector, adapter, temperature, top_p, max_new_tokens, budget, seed,
            prompt_config, backend, engine_options: as in :func:`answer`. With an
            :class:`~meds3.engines.config.EngineConfig` as ``policy``, its adapter is used when
            ``adapter`` is None, and ``backend``/``engine_options`` are not read.
        batch_size: questions per engine call.

    Returns:
        One :class:`Answer` per question, in order.

    Raises:
        ValueError: unknown selector, bad sampling values, an empty question, ``batch_size`` < 1.
    """
    qs = [_as_question(q) for q in questions]
    get_selector(selector)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if needs_prm(selector) and prm is None:
        logger.warning("selector %r needs a PRM and none was given: using majority vote", selector)
        selector = "majority"
    if isinstance(policy, EngineConfig) and adapter is None:
        adapter = policy.adapter
    config = SamplerConfig(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                           adapter=adapter, budget=budget or BudgetConfig())
    if isinstance(policy, str) or hasattr(policy, "__fspath__"):
        policy = EngineConfig(str(policy), backend, dict(engine_options), adapter)
    engine, own = (build_engine_from(policy), True) if isinstance(policy, EngineConfig) else (policy, False)
    try:
        responses = [rs for k in range(0, len(qs), batch_size)
                     for rs in sample_responses(engine, qs[k:k + batch_size], config, prompt_config, progress=False)]
    finally:
        if own:
            engine.close()
    scorer = load_scorer(prm) if needs_prm(selector) else None
    if scorer is not None:
        for k in range(0, len(qs), batch_size):
            score_many(scorer, list(zip(qs[k:k + batch_size], responses[k:k + batch_size])))
    return [_choose(q, rs, selector, scorer is not None) for q, rs in zip(qs, responses)]


def _choose(q: MedQuestion, responses: list[Response], selector: str, scored: bool) -> Answer:
    """The selector's answer for one question, with its verdict when the question has a gold answer."""
    scores = [r.step_scores for r in responses] if scored else None
    chosen = get_selector(selector)([r.answer for r in responses], scores)
    rep = responses[chosen.index]
    correct = None
    if q.answer and chosen.answer is not None:
        correct = bool(any(r.correct for r in responses if r.answer == chosen.answer))
    return Answer(chosen.answer, rep.text, selector, chosen.scores, correct, responses)
