"""Selectors on hand-made score tables, with the exact answers each must choose."""

from __future__ import annotations

import pytest

from meds3.infer import SELECTORS, aggregate, get_selector, majority, needs_prm, p_vs, register_selector
from meds3.infer.selectors import Selection

# Six responses; step scores start with Step 0 (the root), which every PRM selector ignores.
# Response 2 has no answer (unverifiable) but the best scores: it must never win.
ANSWERS = ["A", "B", None, "A", "B", "C"]
SCORES = [
    [0.99, 0.9, 0.6],        # A: min .6  last .6  mean .75   prod .54
    [0.10, 0.8, 0.9],        # B: min .8  last .9  mean .85   prod .72   (root .1 would lower min)
    [0.50, 0.99],            # None
    [0.90, 0.5, 0.7, 0.4],   # A: min .4  last .4  mean .5333 prod .14
    [0.20, 0.3, 0.95],       # B: min .3  last .95 mean .625  prod .285
    [0.50, 0.7],             # C: every aggregate .7
]

# name -> (answer, representative index, candidate scores)
EXPECTED = {
    "majority": ("A", 0, {"A": 2, "B": 2, "C": 1}),  # A-B tie: A appears first
    "p-vs": ("B", 1, {"A": 1.0, "B": 1.1, "C": 0.7}),
    "vote-sum-min": ("B", 1, {"A": 1.0, "B": 1.1, "C": 0.7}),
    "vote-sum-last": ("B", 4, {"A": 1.0, "B": 1.85, "C": 0.7}),
    "vote-sum-mean": ("B", 1, {"A": 0.75 + 1.6 / 3, "B": 1.475, "C": 0.7}),
    "vote-sum-prod": ("B", 1, {"A": 0.68, "B": 1.005, "C": 0.7}),
    "vote-mean-min": ("C", 5, {"A": 0.5, "B": 0.55, "C": 0.7}),
    "vote-mean-last": ("B", 4, {"A": 0.5, "B": 0.925, "C": 0.7}),
    "vote-mean-mean": ("B", 1, {"A": (0.75 + 1.6 / 3) / 2, "B": 0.7375, "C": 0.7}),
    "vote-mean-prod": ("C", 5, {"A": 0.34, "B": 0.5025, "C": 0.7}),
    "best-of-n-min": ("B", 1, {"A": 0.6, "B": 0.8, "C": 0.7}),
    "best-of-n-last": ("B", 4, {"A": 0.6, "B": 0.95, "C": 0.7}),
    "best-of-n-mean": ("B", 1, {"A": 0.75, "B": 0.85, "C": 0.7}),
    "best-of-n-prod": ("B", 1, {"A": 0.54, "B": 0.72, "C": 0.7}),
}


def test_registry_has_every_selector_of_the_family():
    assert set(EXPECTED) <= set(SELECTORS)
    assert len(SELECTORS) == 14
    assert not needs_prm("majority") and needs_prm("p-vs") and needs_prm("best-of-n-last")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_selector_on_hand_made_table(name):
    answer, index, scores = EXPECTED[name]
    chosen = get_selector(name)(ANSWERS, None if name == "majority" else SCORES)
    assert chosen.answer == answer
    assert chosen.index == index
    assert chosen.scores == pytest.approx(scores)
    assert None not in chosen.scores


def test_p_vs_reproduces_the_design_formula_by_hand():
    # r_i = min_k s_{i,k} over steps k >= 1; S(a) = sum of r_i with a_i = a; argmax; text: top r_i.
    r = [min(s[1:]) for s in SCORES]
    assert r == [0.6, 0.8, 0.99, 0.4, 0.3, 0.7]
    s_a = {a: sum(ri for ri, ai in zip(r, ANSWERS) if ai == a) for a in ("A", "B", "C")}
    best = max(s_a, key=s_a.get)
    rep = max((i for i, a in enumerate(ANSWERS) if a == best), key=lambda i: r[i])
    chosen = p_vs(ANSWERS, SCORES)
    assert (chosen.answer, chosen.index) == (best, rep) == ("B", 1)
    assert chosen.scores == pytest.approx(s_a)
    assert chosen.response_scores == r
    # With Step 0 included, B's response 1 would score .1 and A would win: the exclusion matters.
    with_root = {a: sum(min(s) for s, ai in zip(SCORES, ANSWERS) if ai == a) for a in ("A", "B")}
    assert with_root["A"] > with_root["B"]


def test_aggregations():
    steps = [0.1, 0.5, 0.8, 0.4]
    assert aggregate(steps, "min") == 0.4
    assert aggregate(steps, "last") == 0.4
    assert aggregate(steps, "mean") == pytest.approx(1.7 / 3)
    assert aggregate(steps, "prod") == pytest.approx(0.16)
    assert aggregate([0.9], "min") == 0.0  # only the root: no evidence
    with pytest.raises(ValueError, match="unknown aggregation 'max'"):
        aggregate(steps, "max")


def test_majority_tie_goes_to_the_answer_seen_first():
    chosen = majority(["C", "A", "A", "C", None])
    assert (chosen.answer, chosen.index, chosen.scores) == ("C", 0, {"C": 2.0, "A": 2.0})


def test_vote_sum_tie_within_float_tolerance_goes_to_first_seen():
    # 0.1 + 0.2 != 0.3 in floating point; the selectors treat it as a tie.
    chosen = p_vs(["A", "A", "B"], [[1, 0.1], [1, 0.2], [1, 0.3]])
    assert chosen.answer == "A" and chosen.index == 1
    chosen = p_vs(["B", "A", "A", "B"], [[0, 0.5], [0, 0.25], [0, 0.75], [0, 0.5]])
    assert chosen.answer == "B" and chosen.index == 0  # B: .5+.5, A: .25+.75; B seen first


def test_best_of_n_tie_goes_to_the_earliest_response():
    chosen = get_selector("best-of-n-min")(["B", "A", "A"], [[0, 0.7], [0, 0.7], [0, 0.9, 0.7]])
    assert (chosen.answer, chosen.index) == ("B", 0)


def test_unverifiable_responses_never_win():
    assert majority([None, None, None, "D"]).answer == "D"
    chosen = get_selector("best-of-n-last")([None, "D"], [[0, 1.0], [0, 0.01]])
    assert (chosen.answer, chosen.index) == ("D", 1)
    for name in SELECTORS:
        nothing = get_selector(name)([None, None], [[0.5, 0.9], [0.5, 0.8]])
        assert (nothing.answer, nothing.index, nothing.scores) == (None, 0, {})


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown selector 'pvs'.*p-vs"):
        get_selector("pvs")
    with pytest.raises(ValueError, match="needs PRM step scores"):
        p_vs(["A"], None)
    with pytest.raises(ValueError, match="2 step-score lists for 1 responses"):
        p_vs(["A"], [[0, 1], [0, 1]])


def test_register_selector():
    register_selector("last-answer", lambda a, s: Selection(a[-1], len(a) - 1))
    try:
        assert get_selector("last-answer")(["A", "B"], None).answer == "B"
    finally:
        SELECTORS.pop("last-answer")
