"""The asynchronous forest (``schedule="async"``): each tree advances when its own requests are
finished and submits its next ones into the running batch. It must grow exactly the trees the
round-based forest grows, whatever order the engine finishes requests in, with any number of
live trees, with failures, and on a real model (batch-invariant engine)."""

from __future__ import annotations

import random

import pytest
from model_paths import model_path
from scripted_engine import ScriptedEngine

from meds3.data import MedQuestion
from meds3.engines.base import GenerateStream
from meds3.mcts import Forest, SearchConfig, tree_shapes

QS = [MedQuestion(id=f"q{i}", question=f"Question {i}?", options={"A": "a", "B": "b", "C": "c"}, answer="B")
      for i in range(9)]


class ShuffledStream(ScriptedEngine):
    """A streaming scripted engine that finishes a random share of the pending requests per poll
    (seeded), so trees advance in an order no round-based schedule would produce. Requests of
    questions in ``slow`` are held for ``hold`` polls after they are submitted."""

    def __init__(self, order_seed=0, slow=(), hold=0, refuse=(), **kwargs):
        super().__init__(**kwargs)
        self.rng = random.Random(order_seed)
        self.queue: list[tuple[int, object, int]] = []  # ticket, request, polls waited
        self.next = 0
        self.slow, self.hold, self.refuse = slow, hold, refuse
        self.polls = 0
        self.max_pending = 0

    def submit(self, requests):
        if any(p in r.prompt for r in requests for p in self.refuse):
            raise ValueError("prompt too long for this engine")
        tickets = list(range(self.next, self.next + len(requests)))
        self.next += len(requests)
        self.queue += [(t, r, 0) for t, r in zip(tickets, requests)]
        self.max_pending = max(self.max_pending, len(self.queue))
        return tickets

    def poll(self):
        self.polls += 1
        if not self.queue:
            return []
        self.queue = [(t, r, waited + 1) for t, r, waited in self.queue]
        ready = [item for item in self.queue
                 if not any(q in item[1].prompt for q in self.slow) or item[2] > self.hold]
        done = [item for item in ready if self.rng.random() < 0.5] or ready[:1] or self.queue[:1]
        self.queue = [item for item in self.queue if item not in done]
        return [(t, self._one(r)) for t, r, _ in done]

    def pending(self):
        return len(self.queue)


@pytest.mark.parametrize("live_trees", [1, 3, 9])
@pytest.mark.parametrize("seed", [0, 1])
def test_async_forest_grows_the_round_based_trees(live_trees, seed):
    config = SearchConfig(max_nodes=12, seed=seed)
    rounds = list(Forest(ScriptedEngine(), config, live_trees=live_trees, schedule="rounds").run(QS))
    streamed = list(Forest(ScriptedEngine(), config, live_trees=live_trees, schedule="async").run(QS))
    shuffled = list(Forest(ShuffledStream(order_seed=seed + 7), config, live_trees=live_trees).run(QS))
    assert len(rounds) == len(streamed) == len(shuffled) == len(QS)
    assert tree_shapes(streamed) == tree_shapes(rounds)
    assert tree_shapes(shuffled) == tree_shapes(rounds)
    assert all(t.status == "complete" for t in shuffled)


def test_trees_do_not_wait_for_a_slow_tree():
    """q0's requests take 40 polls each; under the round schedule every tree would wait for them.
    Async, the other trees finish (and new questions start) while q0 is still searching."""
    engine = ShuffledStream(slow=("Question 0?",), hold=40)
    trees = list(Forest(engine, SearchConfig(max_nodes=12), live_trees=3).run(QS))
    order = [t.question.id for t in trees]
    assert order[-1] == "q0" and sorted(order) == sorted(q.id for q in QS)
    rounds = list(Forest(ScriptedEngine(), SearchConfig(max_nodes=12), live_trees=3, schedule="rounds").run(QS))
    assert order != [t.question.id for t in rounds]
    assert tree_shapes(trees) == tree_shapes(rounds)


def test_the_stream_is_kept_full_of_every_live_tree():
    engine = ShuffledStream(order_seed=3)
    forest = Forest(engine, SearchConfig(max_nodes=12), live_trees=4)
    seen = []
    list(forest.run(QS, on_round=lambda stats: seen.append((stats.rounds, stats.live_trees))))
    assert [r for r, _ in seen] == list(range(1, len(seen) + 1))  # on_round after every poll
    assert max(n for _, n in seen) == 4 and forest.stats.rounds == engine.polls
    assert engine.max_pending >= 4  # requests of several trees were in the engine at once


def test_a_request_the_engine_refuses_fails_only_its_tree():
    engine = ShuffledStream(refuse=("Question 2?",))
    trees = {t.question.id: t for t in Forest(engine, SearchConfig(max_nodes=10), live_trees=3).run(QS[:5])}
    assert trees["q2"].status == "failed" and "submitting requests" in trees["q2"].error
    assert "prompt too long" in trees["q2"].error
    others = {k: t for k, t in trees.items() if k != "q2"}
    assert all(t.status == "complete" for t in others.values())
    clean = list(Forest(ScriptedEngine(), SearchConfig(max_nodes=10), live_trees=3, schedule="rounds")
                 .run([q for q in QS[:5] if q.id != "q2"]))
    assert tree_shapes(others.values()) == tree_shapes(clean)


def test_a_failed_poll_is_retried_and_changes_no_tree():
    """The stream fails on its 3rd call: every unfinished request is dropped, the waiting trees'
    requests are generated again (the rounds schedule's retry), and the trees are unchanged."""
    engine = ScriptedEngine(fail_calls={3})
    trees = list(Forest(engine, SearchConfig(max_nodes=10), live_trees=3).run(QS[:4]))
    clean = list(Forest(ScriptedEngine(), SearchConfig(max_nodes=10), live_trees=3, schedule="rounds").run(QS[:4]))
    assert all(t.status == "complete" for t in trees) and tree_shapes(trees) == tree_shapes(clean)


def test_generate_stream_runs_everything_submitted_in_one_call():
    engine = ScriptedEngine()
    stream = GenerateStream(engine)
    assert stream.poll() == [] and engine.calls == []
    from meds3.engines.types import GenerationRequest, SamplingParams

    reqs = [GenerationRequest(prompt=f"p{i}", n=2, params=SamplingParams(seed=i)) for i in range(3)]
    a = stream.submit(reqs[:2])
    b = stream.submit(reqs[2:])
    assert a == [0, 1] and b == [2] and stream.pending() == 3
    done = stream.poll()
    assert [t for t, _ in done] == [0, 1, 2] and engine.calls == [3] and stream.pending() == 0
    assert [r.samples for _, r in done] == [r.samples for r in engine.generate(reqs)]


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="schedule"):
        Forest(ScriptedEngine(), schedule="eager")


def _tiny_invariant_engine(admit_wait=0):
    from meds3.engines import build_engine

    return build_engine(model_path("tiny-random-llama"), backend="transformers", batch_invariant=True,
                        admit_wait=admit_wait)


@pytest.mark.parametrize(("live_trees", "admit_wait"),
                         [(2, 0), pytest.param(5, 0, marks=pytest.mark.slow),
                          pytest.param(5, 4, marks=pytest.mark.slow)])
def test_on_a_real_model_async_and_rounds_grow_the_same_trees(live_trees, admit_wait):
    """The transformers engine's own stream (requests joining a running batch, rows finishing
    at different steps, admissions held back by ``admit_wait``) with batch-invariant
    generation: bit-identical trees."""
    engine = _tiny_invariant_engine(admit_wait)
    questions = [MedQuestion(id=f"r{i}", question=f"Case {i}: " + "fever " * (2 * i + 1) + "Diagnosis?",
                             options={"A": "flu", "B": "cold"}, answer="A") for i in range(5)]
    config = SearchConfig(max_nodes=5, rollout_budget=2, min_rollouts=2, max_step_tokens=12, max_finish_tokens=14,
                          max_rollout_tokens=16, count_truncated=True, seed=live_trees)

    def grow(schedule):
        forest = Forest(engine, config, live_trees=live_trees, schedule=schedule)
        trees = list(forest.run(questions))
        return tree_shapes(trees, ("parent", "kind", "step", "value"), digits=None), forest.stats

    rounds, _ = grow("rounds")
    streamed, stats = grow("async")
    assert len(streamed) == 5 and streamed == rounds
    assert stats.generated_tokens > 0 and stats.rounds > 0


def test_auto_schedule_is_async():
    """``auto`` is ``async`` for every engine and job (measured reasons in docs/benchmarks.md); an
    engine with only ``generate`` streams through one call per poll."""
    from meds3.rollout.runner import RolloutConfig, forest_schedule

    assert Forest(ScriptedEngine(), SearchConfig(max_nodes=4)).schedule == "async"
    for backend in ("transformers", "vllm", "openai"):
        assert forest_schedule(RolloutConfig(backend=backend)) == "async"
    assert forest_schedule(RolloutConfig(schedule="rounds")) == "rounds"
