"""Helpers of the scripted search tests: one question, right and wrong answers, samples,
rollouts, the plain prompt renderer, a compact view of requests, and the question ids a job stored."""

import json
from pathlib import Path

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


def stored_ids(output_dir) -> list[str]:
    """Question id of every tree line a job stored under ``output_dir/trees``, sorted, duplicates kept:
    read from the shards' lines directly, not through the store that wrote them."""
    return sorted(json.loads(line)["question"]["id"] for shard in (Path(output_dir) / "trees").glob("trees-*.jsonl")
                  for line in shard.read_text().splitlines() if line.strip())
