"""Helpers of the scripted search tests: one question, right and wrong answers, samples,
rollouts, the plain prompt renderer and a compact view of requests."""

from meds3.data import MedQuestion
from meds3.data.prompts import render_prompt
from meds3.engines.types import Sample

Q = MedQuestion(id="q1", question="Which?", options={"A": "x", "B": "y", "C": "z"}, answer="B")
RIGHT, WRONG = "So the answer is B.", "The answer is C."


def s(text, reason="stop"):
    """An engine sample with three tokens."""
    return Sample(text=text, token_ids=[1] * 3, finish_reason=reason)


def rollouts(correct, total, truncated=0):
    """``correct`` right and ``total - correct`` wrong finished rollouts, then ``truncated`` cut ones."""
    return [s(RIGHT, "eos")] * correct + [s(WRONG, "eos")] * (total - correct) + [s("and so on", "length")] * truncated


def render(question, steps):
    return render_prompt(question, None, steps)


def kinds(reqs):
    """``(node_id, kind, n)`` of each request."""
    return [(r.node_id, r.kind, r.n) for r in reqs]
