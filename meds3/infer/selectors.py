"""Selection strategies: choose one answer from N sampled responses.

Every selector is a pure function ``selector(answers, step_scores) -> Selection`` where
``answers[i]`` is response i's extracted answer (None: unverifiable) and ``step_scores[i]``
its PRM probability per step, **Step 0 (the root) included** as the scorer returns them.

Response score ``r_i = agg(step_scores[i][1:])``: Step 0 is the same root for every
response, so it is excluded (docs/method.md, Inference). ``agg`` is ``min``, ``last``, ``mean`` or ``prod``;
a response with no step after the root scores 0.

- ``majority``: ``S(a) = #{i: a_i = a}``.
- ``best-of-n-<agg>``: the response with the highest ``r_i``; ``S(a) = max_{i: a_i = a} r_i``.
- ``vote-sum-<agg>``: ``S(a) = Σ_{i: a_i = a} r_i``.
- ``vote-mean-<agg>``: ``S(a) = mean_{i: a_i = a} r_i``.
- ``p-vs`` (the default, MedS3's PRM-guided vote-sum) = ``vote-sum-min``.

Rules shared by all: responses without an answer never get a vote (they are left out of
every ``S``); if no response has an answer the selection's answer is None and its
representative is response 0. **Ties** (scores within 1e-9) go to the answer whose first
response comes earliest in sample order; for best-of-N, to the earliest response among
those with the top ``r_i``. The representative response of the chosen answer is the one
with the highest ``r_i`` (majority: the first one), ties to the earliest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

TIE_TOLERANCE = 1e-9
AGGREGATIONS = ("min", "last", "mean", "prod")


@dataclass
class Selection:
    """What a selector chose.

    Attributes:
        answer: the chosen answer (None when no response has one).
        index: the representative response (its text is returned to the user).
        scores: every candidate answer's score ``S(a)``.
        response_scores: ``r_i`` per response (None for majority).
    """

    answer: Optional[str]
    index: int
    scores: dict[str, float] = field(default_factory=dict)
    response_scores: Optional[list[float]] = None


Selector = Callable[[Sequence[Optional[str]], Optional[Sequence[Sequence[float]]]], Selection]


def aggregate(step_scores: Sequence[float], how: str) -> float:
    """Response score from its step scores, Step 0 (the first entry) excluded.

    Raises:
        ValueError: unknown aggregation.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; known: {', '.join(AGGREGATIONS)}")
    s = [float(x) for x in step_scores[1:]]
    if not s:
        return 0.0
    if how == "min":
        return min(s)
    if how == "last":
        return s[-1]
    if how == "mean":
        return sum(s) / len(s)
    return math.prod(s)


def _argmax(scores: dict[str, float], order: Sequence[str]) -> str:
    """Highest score; ties (within TIE_TOLERANCE) to the earliest key in ``order``."""
    best = max(scores.values())
    return next(a for a in order if a in scores and scores[a] >= best - TIE_TOLERANCE)


def _first_seen(answers: Sequence[Optional[str]]) -> list[str]:
    return list(dict.fromkeys(a for a in answers if a is not None))


def _check(answers: Sequence[Optional[str]], step_scores) -> None:
    if step_scores is None:
        raise ValueError("this selector needs PRM step scores (give a PRM)")
    if len(step_scores) != len(answers):
        raise ValueError(f"{len(step_scores)} step-score lists for {len(answers)} responses")


def _representative(answers: Sequence[Optional[str]], r: Sequence[float], answer: str) -> int:
    members = [i for i, a in enumerate(answers) if a == answer]
    top = max(r[i] for i in members)
    return next(i for i in members if r[i] >= top - TIE_TOLERANCE)


def majority(answers: Sequence[Optional[str]], step_scores=None) -> Selection:
    """Majority vote: the most frequent answer; step scores are ignored."""
    order = _first_seen(answers)
    if not order:
        return Selection(None, 0, {})
    scores = {a: float(sum(x == a for x in answers)) for a in order}
    chosen = _argmax(scores, order)
    return Selection(chosen, answers.index(chosen), scores)


def best_of_n(answers: Sequence[Optional[str]], step_scores, how: str = "min") -> Selection:
    """Best-of-N: the answered response with the highest aggregated PRM score."""
    _check(answers, step_scores)
    r = [aggregate(s, how) for s in step_scores]
    answered = [i for i, a in enumerate(answers) if a is not None]
    if not answered:
        return Selection(None, 0, {}, r)
    top = max(r[i] for i in answered)
    index = next(i for i in answered if r[i] >= top - TIE_TOLERANCE)
    scores: dict[str, float] = {}
    for i in answered:
        scores[answers[i]] = max(scores.get(answers[i], -math.inf), r[i])
    return Selection(answers[index], index, scores, r)


def vote(answers: Sequence[Optional[str]], step_scores, how: str = "min", reduce: str = "sum") -> Selection:
    """Vote-sum (``reduce="sum"``) or vote-mean (``"mean"``) of aggregated PRM scores."""
    _check(answers, step_scores)
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    r = [aggregate(s, how) for s in step_scores]
    order = _first_seen(answers)
    if not order:
        return Selection(None, 0, {}, r)
    scores = {}
    for a in order:
        members = [r[i] for i, x in enumerate(answers) if x == a]
        scores[a] = sum(members) / (len(members) if reduce == "mean" else 1)
    chosen = _argmax(scores, order)
    return Selection(chosen, _representative(answers, r, chosen), scores, r)


def p_vs(answers: Sequence[Optional[str]], step_scores) -> Selection:
    """P-VS (MedS3): ``r_i = min_k s_{i,k}`` (k >= 1), ``S(a) = Σ_{i: a_i = a} r_i``, argmax."""
    return vote(answers, step_scores, "min", "sum")


def _build_registry() -> dict[str, Selector]:
    reg: dict[str, Selector] = {"majority": majority, "p-vs": p_vs}
    for how in AGGREGATIONS:
        reg[f"best-of-n-{how}"] = lambda a, s, how=how: best_of_n(a, s, how)
        reg[f"vote-sum-{how}"] = lambda a, s, how=how: vote(a, s, how, "sum")
        reg[f"vote-mean-{how}"] = lambda a, s, how=how: vote(a, s, how, "mean")
    return reg


#: Selector name -> function. ``greedy`` is not a selector: it is a separate n=1, T=0 run.
SELECTORS: dict[str, Selector] = _build_registry()

#: Selector name -> whether it reads PRM step scores (registered with it; a name missing here,
#: e.g. put into ``SELECTORS`` by hand, counts as needing them, so its scores are computed).
PRM_SELECTORS: dict[str, bool] = {name: name != "majority" for name in SELECTORS}


def get_selector(name: str) -> Selector:
    """The selector registered as ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    try:
        return SELECTORS[name]
    except KeyError:
        raise ValueError(f"unknown selector {name!r}; known: {', '.join(SELECTORS)}") from None


def needs_prm(name: str) -> bool:
    """Whether selector ``name`` uses PRM step scores, as registered (what decides whether a
    PRM is loaded and scored for it).

    Raises:
        ValueError: unknown name.
    """
    get_selector(name)
    return PRM_SELECTORS.get(name, True)


def register_selector(name: str, selector: Selector, *, needs_prm: bool = True) -> None:
    """Add a selector under ``name`` (it then works in :func:`meds3.infer.answer` and the eval).

    Args:
        name: the name configs and ``answer(selector=...)`` use; an existing name is replaced.
        selector: ``selector(answers, step_scores) -> Selection``.
        needs_prm: whether it reads ``step_scores``: then a PRM is loaded and every response
            scored for it, and without a PRM it is skipped (eval) or replaced by majority vote
            (:func:`meds3.infer.answer`); False: it is called with ``step_scores=None``.

    Raises:
        ValueError: an empty name or a selector that is not callable.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a selector needs a non-empty name, got {name!r}")
    if not callable(selector):
        raise ValueError(f"selector {name!r} must be callable, got {type(selector).__name__}")
    SELECTORS[name] = selector
    PRM_SELECTORS[name] = bool(needs_prm)
