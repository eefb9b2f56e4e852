"""The forest driver: many trees share one engine. This is the one place where search meets
the model.

Two schedules, the same trees (with a batch-invariant engine, bit for bit):

- ``async``: each tree submits its requests to the engine's stream
  (:meth:`Engine.submit`) and advances as soon as its own requests are finished
  (:meth:`Engine.poll`); its next requests join the running batch at once. No tree waits for
  another tree's slow request, so the batch stays full of work that is ready.
- ``rounds``: every round gathers the pending requests of every live tree (expansions and
  rollouts alike) into one ``Engine.generate`` call; every tree waits for the slowest request
  of the round. It is the reference schedule; ``auto`` (the default) is ``async``, measured
  faster on the transformers engine and on vLLM (docs/benchmarks.md, "Search utilization").
  An engine with only ``generate`` streams through one ``generate`` call per poll.

In both, a finished tree is handed to the caller and replaced by the next question.
"""

from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

from meds3.data.prompts import PromptConfig, render_prompt
from meds3.data.question import MedQuestion
from meds3.data.search_prompts import render_simulation_prompt, render_think_prompt
from meds3.engines.base import stream_of
from meds3.mcts.config import SearchConfig
from meds3.mcts.node import Tree
from meds3.mcts.search import SearchRequest, TreeSearch

logger = logging.getLogger(__name__)

# Errors after which an engine cannot generate again (a lost CUDA context, a dead vLLM engine):
# matched in the error's type name or message; an exception with ``fatal = True`` counts too.
FATAL_ENGINE_ERRORS = ("CUDA error", "device-side assert", "illegal memory access", "NCCL error",
                       "EngineDeadError", "engine is dead", "Engine core")


class EngineFailure(RuntimeError):
    """The engine cannot generate any more: a fatal error (:data:`FATAL_ENGINE_ERRORS`), or
    ``max_engine_failures`` consecutive rounds in which every engine call failed. The trees
    in progress are not returned (a rerun searches them again)."""


def is_fatal_engine_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the engine is broken for good rather than this call failed."""
    if getattr(exc, "fatal", False):
        return True
    text = f"{type(exc).__name__}: {exc}"
    return any(marker in text for marker in FATAL_ENGINE_ERRORS)


def raise_if_fatal(exc: BaseException, what: str) -> None:
    """Raise :class:`EngineFailure` (from ``exc``) when ``exc`` is fatal for ``what``."""
    if is_fatal_engine_error(exc):
        raise EngineFailure(f"{what} failed for good: {type(exc).__name__}: {exc}") from exc


@dataclass
class ForestStats:
    """Running totals of a forest run."""

    trees_done: int = 0
    trees_failed: int = 0
    trees_with_correct: int = 0
    nodes: int = 0  # of finished trees
    live_trees: int = 0  # trees growing after the last round
    live_nodes: int = 0  # their nodes so far
    generated_tokens: int = 0
    prompt_tokens_computed: int = 0
    prompt_tokens_cached: int = 0
    rounds: int = 0  # rounds (``rounds`` schedule) or polls of the engine's stream (``async``)
    engine_calls: int = 0
    retries: int = 0
    started: float = 0.0

    @property
    def elapsed(self) -> float:
        return max(time.perf_counter() - self.started, 1e-9)


class Feed:
    """A question stream topped up while the forest runs (a Ray actor's queue of questions).

    ``Forest.run(feed)`` (async schedule) takes questions from it without waiting while trees
    are growing, waits for one when none is, and ends once the feed is closed and drained.
    Thread-safe: one thread runs the forest, others :meth:`put`.
    """

    EMPTY = object()  # nothing to take now, but the feed is open

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()

    def put(self, questions: Iterable[MedQuestion]) -> None:
        for q in questions:
            self._queue.put(q)

    def close(self) -> None:
        """No more questions: the forest finishes the ones it has and returns."""
        self._queue.put(None)

    def take(self, block: bool):
        """The next question; :attr:`EMPTY` when none is queued (and ``block`` is false);
        ``None`` once the feed is closed."""
        try:
            return self._queue.get(block=block)
        except queue.Empty:
            return self.EMPTY


class _Flight:
    """One tree's requests while the engine generates them."""

    def __init__(self, search: TreeSearch, reqs: list[SearchRequest]):
        self.search, self.reqs = search, reqs
        self.gen = [r for r in reqs if r.kind != "prm"]
        self.outs: list = [None] * len(self.gen)
        self.left = len(self.gen)


def to_generation_request(req: SearchRequest, adapter: Optional[str] = None, request_id: Optional[str] = None):
    """The engine request for a search request."""
    from meds3.engines.types import GenerationRequest, SamplingParams

    params = SamplingParams(temperature=req.temperature, top_p=req.top_p, max_new_tokens=req.max_new_tokens,
                            stop=list(req.stop), seed=req.seed)
    return GenerationRequest(prompt=req.prompt, n=req.n, params=params, adapter=adapter, request_id=request_id)


class Forest:
    """Runs the tree search over a stream of questions on one engine.

    Args:
        engine: a :class:`meds3.engines.Engine` (anything with ``generate`` and ``tokenizer``).
        config: the search config.
        prompt_config: how prompts render (default MedS3's).
        live_trees: trees searched at once; their requests share each engine call.
        adapter: LoRA adapter path to sample the policy with (None: the base model).
        verifier: ``verifier(text, question) -> Verdict`` (default :func:`meds3.verify.verify`).
        value_model: scores paths for the PRM prior (``config.prm_prior_weight > 0``): an object
            with ``score_batch([(question, [steps])]) -> [[[step scores]]]``, e.g.
            :class:`meds3.train.PRMScorer`; the path's last step score is the node's prior.
        max_engine_failures: consecutive rounds in which every engine call fails (each after
            its retry) before :meth:`run` raises :class:`EngineFailure`.
        schedule: ``"async"`` (each tree advances when its own requests finish), ``"rounds"``
            (one engine call per round of every tree), or ``"auto"`` (= ``async``); see the
            module docstring.

    Raises:
        ValueError: ``live_trees`` or ``max_engine_failures`` < 1, an unknown schedule, or a
            PRM prior asked for without a value model.
    """

    SCHEDULES = ("async", "rounds")

    def __init__(self, engine, config: SearchConfig | None = None, prompt_config: PromptConfig | None = None,
                 live_trees: int = 16, adapter: Optional[str] = None, verifier=None, value_model=None,
                 max_engine_failures: int = 3, schedule: str = "auto"):
        if live_trees < 1:
            raise ValueError(f"live_trees must be >= 1, got {live_trees}")
        if schedule == "auto":
            schedule = "async"
        if schedule not in self.SCHEDULES:
            raise ValueError(f"schedule must be one of {self.SCHEDULES} or 'auto', got {schedule!r}")
        self.schedule = schedule
        if max_engine_failures < 1:
            raise ValueError(f"max_engine_failures must be >= 1, got {max_engine_failures}")
        self.max_engine_failures = max_engine_failures
        self.failed_rounds = 0  # consecutive rounds in which no engine call succeeded
        self._held_ids: set[int] = set()  # trees failed in such rounds (by id of their search)
        if (config or SearchConfig()).prm_prior_weight > 0 and value_model is None:
            raise ValueError("search.prm_prior_weight > 0 needs a PRM (value_model) to score new steps")
        self.value_model = value_model
        self.engine = engine
        self.stream = stream_of(engine)  # duck-typed engines with only ``generate`` stream too
        self.config = config or SearchConfig()
        self.prompt_config = prompt_config or PromptConfig()
        self.live_trees = live_trees
        self.adapter = adapter
        self.verifier = verifier
        self.stats = ForestStats()
        self._tree_tokens: dict[int, int] = {}  # async: generated tokens of each growing tree
        self.last_tree_tokens = 0  # tokens generated for the tree yielded last (async schedule)

    def render(self, question: MedQuestion, steps) -> str:
        return render_prompt(question, getattr(self.engine, "tokenizer", None), steps, self.prompt_config)

    def render_simulation(self, question: MedQuestion, steps) -> str:
        return render_simulation_prompt(question, getattr(self.engine, "tokenizer", None), steps, self.prompt_config)

    def render_think(self, question: MedQuestion, steps) -> str:
        return render_think_prompt(question, getattr(self.engine, "tokenizer", None), steps, self.prompt_config)

    def new_search(self, question: MedQuestion) -> TreeSearch:
        kwargs = {"verifier": self.verifier} if self.verifier is not None else {}
        return TreeSearch(question, self.config, self.render, self.prompt_config,
                          render_simulation=self.render_simulation,
                          render_think=self.render_think, **kwargs)

    def run(self, questions: Iterable[MedQuestion] | Feed,
            on_round: Callable[[ForestStats], None] | None = None) -> Iterator[Tree]:
        """Search every question; yield each tree as soon as it is complete (or failed).

        ``questions`` is any iterable, or (async schedule) a :class:`Feed` topped up while the
        forest runs.

        An exception raised while handling one question's tree (its verifier, its prompt, its
        PRM scores) marks that tree ``failed`` with the error in ``tree.error``; the other
        trees go on. Engine errors are retried once, then fail only the trees they hit. Trees
        failed in a round where no engine call succeeded are held back until a later call
        succeeds (the engine works: they are yielded, failed) or the stream ends.
        ``on_round`` gets the running stats after every round (every poll when async).

        Raises:
            EngineFailure: a fatal engine error, or ``max_engine_failures`` consecutive rounds
                without a successful engine call; held-back and live trees are not yielded.
        """
        if self.schedule == "async":
            return self._run_async(questions, on_round)
        if isinstance(questions, Feed):
            raise ValueError("a Feed needs the async schedule")
        return self._run_rounds(questions, on_round)

    def _run_async(self, questions: Iterable[MedQuestion],
                   on_round: Callable[[ForestStats], None] | None) -> Iterator[Tree]:
        """The ``async`` schedule: trees submit to the engine's stream and advance one by one."""
        self.stats = ForestStats(started=time.perf_counter())
        self.failed_rounds = 0
        self._held_ids = set()
        held: list[TreeSearch] = []
        pending = iter(()) if isinstance(questions, Feed) else iter(questions)
        live: list[TreeSearch] = []
        ready: list[TreeSearch] = []  # trees whose next requests are to be prepared
        flights: dict[int, _Flight] = {}  # by id(search): the generation requests in the engine
        owner: dict[int, tuple[_Flight, int]] = {}  # engine ticket -> flight, request index
        exhausted = False
        take = questions.take if isinstance(questions, Feed) else (lambda block: next(pending, None))
        while True:
            while not exhausted and len(live) < self.live_trees:
                q = take(not live)  # a feed is waited on only while no tree grows
                if q is Feed.EMPTY:
                    break
                if q is None:
                    exhausted = True
                else:
                    live.append(self._start(q))
                    ready.append(live[-1])
            if ready:
                finished = self._launch(ready, flights, owner)
                ready = [f.search for f in finished if not f.search.done]  # only PRM requests: go on
                for search in [f.search for f in finished if f.search.done]:
                    live.remove(search)
                    if id(search) in self._held_ids:
                        held.append(search)
                    else:
                        yield self._finished(search.tree)
                continue
            if not flights:
                for search in held:  # no round is left to tell a dead engine from bad requests
                    yield self._finished(search.tree)
                return
            ready = self._poll(flights, owner)
            yield from self._end_round(live, held, on_round)

    def _launch(self, ready: list[TreeSearch], flights: dict, owner: dict) -> list["_Flight"]:
        """Prepare the next requests of ``ready`` trees: score their PRM requests (one value-model
        call), submit their generation requests. Returns the flights that need no engine:
        trees that are done (finished or failed) or had only PRM requests (applied here)."""
        batch, done = self._prepare(ready)
        settled = [_Flight(search, []) for search in done]
        self._score_prm(batch)
        submit: list[_Flight] = []
        for search, reqs in batch:
            flight = _Flight(search, reqs)
            if search.done or not flight.gen:
                if not search.done:
                    self._apply(flight)
                settled.append(flight)
            else:
                submit.append(flight)
        if submit:
            settled += self._submit(submit, flights, owner)
        return settled

    def _submit(self, new: list["_Flight"], flights: dict, owner: dict) -> list["_Flight"]:
        """Submit the flights' generation requests in one call; a request the engine refuses
        fails its own tree only. Returns the flights so failed."""
        try:
            tickets = self.stream.submit([to_generation_request(r, self.adapter) for f in new for r in f.gen])
        except Exception as exc:
            raise_if_fatal(exc, "the engine")
            if len(new) > 1:  # why: find the tree whose request the engine refuses
                return [f for flight in new for f in self._submit([flight], flights, owner)]
            self._fail(new[0].search, "submitting requests", exc)
            return new
        it = iter(tickets)
        for flight in new:
            flights[id(flight.search)] = flight
            for i in range(len(flight.gen)):
                owner[next(it)] = (flight, i)
        return []

    def _poll(self, flights: dict, owner: dict) -> list[TreeSearch]:
        """Poll the engine once; apply the samples of every tree whose requests are all done.
        Returns those trees (to prepare their next requests)."""
        self.stats.engine_calls += 1
        try:
            done = self.stream.poll()
        except Exception as exc:  # why: fall back to one retried call per tree, as in rounds
            raise_if_fatal(exc, "the engine")
            self._last_error = f"{type(exc).__name__}: {exc}"
            logger.warning("engine stream failed (%s); generating the %d waiting trees' requests again",
                           self._last_error, len(flights))
            self.stats.retries += 1
            return self._regenerate(flights, owner)
        ready = []
        for ticket, result in done:
            flight, i = owner.pop(ticket)
            self._count(result)
            self._tree_tokens[id(flight.search.tree)] = (self._tree_tokens.get(id(flight.search.tree), 0)
                                                         + result.generated_tokens)
            flight.outs[i] = result.samples
            flight.left -= 1
            if flight.left == 0:
                del flights[id(flight.search)]
                self._apply(flight)
                ready.append(flight.search)
        if done:
            self.failed_rounds = 0
        return ready

    def _regenerate(self, flights: dict, owner: dict) -> list[TreeSearch]:
        """After a failed poll (the engine dropped every unfinished request): generate the
        waiting trees' requests again with the rounds schedule's retry and per-tree fallback."""
        waiting = list(flights.values())
        flights.clear()
        owner.clear()
        # the failed poll was the whole batch's first attempt: one more, then tree by tree
        generated = self._run_generation([(f.search, f.gen) for f in waiting], whole_attempts=1)
        for flight in waiting:
            if not flight.search.done:
                flight.outs = list(generated.get(id(flight.search), []))
                self._apply(flight)
        return [f.search for f in waiting]

    def _apply(self, flight: "_Flight") -> None:
        """Hand a tree its samples (and PRM scores), in its requests' order."""
        outs = iter(flight.outs)
        try:
            flight.search.apply([[r.prm_score] if r.kind == "prm" else next(outs) for r in flight.reqs])
        except Exception as exc:  # why: a verifier error on one question fails only its tree
            self._fail(flight.search, "applying samples", exc)

    def _count(self, result) -> None:
        self.stats.generated_tokens += result.generated_tokens
        self.stats.prompt_tokens_computed += result.prompt_tokens_computed
        self.stats.prompt_tokens_cached += result.prompt_tokens_cached

    def _run_rounds(self, questions: Iterable[MedQuestion],
                    on_round: Callable[[ForestStats], None] | None) -> Iterator[Tree]:
        """The ``rounds`` schedule: one engine call per round of every live tree."""
        self.stats = ForestStats(started=time.perf_counter())
        self.failed_rounds = 0
        self._held_ids: set[int] = set()
        held: list[TreeSearch] = []  # failed while the engine may be dead: yielded once it works
        pending = iter(questions)
        live: list[TreeSearch] = []
        exhausted = False
        while True:
            # Refill freed slots until every live tree has requests: finished trees leave
            # before the round, so the round is always as full as the question stream allows.
            while True:
                while not exhausted and len(live) < self.live_trees:
                    q = next(pending, None)
                    if q is None:
                        exhausted = True
                    else:
                        live.append(self._start(q))
                batch, finished = self._prepare(live)
                for search in finished:
                    live.remove(search)
                    if id(search) in self._held_ids:
                        held.append(search)
                    else:
                        yield self._finished(search.tree)
                if not finished or exhausted:
                    break
            if not batch:
                if exhausted and not live:
                    for search in held:  # no round is left to tell a dead engine from bad requests
                        yield self._finished(search.tree)
                    return
                continue
            self._run_round(batch)
            yield from self._end_round(live, held, on_round)

    def _prepare(self, searches: list[TreeSearch]) -> tuple[list[tuple[TreeSearch, list[SearchRequest]]],
                                                            list[TreeSearch]]:
        """Each search's next requests, as ``(batch, done)``: ``(search, requests)`` for the
        searches that go on, and the searches that are done (finished, or failed here)."""
        batch: list[tuple[TreeSearch, list[SearchRequest]]] = []
        done: list[TreeSearch] = []
        for search in searches:
            try:
                reqs = search.requests()
            except Exception as exc:  # why: one bad question must not stop the other trees
                self._fail(search, "preparing requests", exc)
            (done.append(search) if search.done else batch.append((search, reqs)))
        return batch, done

    def _end_round(self, live: list[TreeSearch], held: list[TreeSearch],
                   on_round: Callable[[ForestStats], None] | None) -> Iterator[Tree]:
        """After a round (or poll): release the held trees once an engine call has succeeded
        (``held`` is emptied in place), update the stats and report them."""
        if held and not self.failed_rounds:  # an engine call succeeded: the engine works
            for search in held:
                yield self._finished(search.tree)
            held.clear()
            self._held_ids = set()
        self.stats.rounds += 1
        self.stats.live_trees = len(live)
        self.stats.live_nodes = sum(len(search.tree.nodes) for search in live)
        if on_round is not None:
            on_round(self.stats)

    def _start(self, question: MedQuestion) -> TreeSearch:
        """A new search; one whose question cannot even start is returned already failed."""
        try:
            return self.new_search(question)
        except Exception as exc:  # why: isolate the bad question to its own (failed) tree
            search = TreeSearch(question, self.config, lambda q, steps: "", self.prompt_config)
            self._fail(search, "starting the search", exc)
            return search

    @staticmethod
    def _fail(search: TreeSearch, phase: str, exc: Exception) -> None:
        """Record an error raised while handling one tree (verifier error, bad data) as that
        tree's failure, so the other trees go on."""
        reason = f"{type(exc).__name__} while {phase}: {exc}"
        logger.warning("tree %r failed: %s", search.tree.question.id, reason, exc_info=True)
        search.fail(reason)

    def _finished(self, tree: Tree) -> Tree:
        self.last_tree_tokens = self._tree_tokens.pop(id(tree), 0)
        s = self.stats
        s.trees_done += 1
        s.trees_failed += tree.status == "failed"
        s.trees_with_correct += bool(tree.correct_leaves())
        s.nodes += len(tree.nodes)
        return tree

    def _run_round(self, batch: list[tuple[TreeSearch, list[SearchRequest]]]) -> None:
        """One engine call for every request of every live tree; on a persistent engine error
        the trees of the failing call are recorded as failed and the rest go on."""
        self._score_prm(batch)
        batch = [(search, [r for r in reqs if r.kind != "prm"], reqs) for search, reqs in batch]
        generated = self._run_generation([(search, gen) for search, gen, _ in batch])
        for search, _, reqs in batch:
            if search.done:  # failed in generation or PRM scoring
                continue
            outs = iter(generated.get(id(search), []))
            try:
                search.apply([[r.prm_score] if r.kind == "prm" else next(outs) for r in reqs])
            except Exception as exc:  # why: a verifier error on one question fails only its tree
                self._fail(search, "applying samples", exc)

    def _score_prm(self, batch: list[tuple[TreeSearch, list[SearchRequest]]]) -> None:
        """Score every ``prm`` request of the round in one value-model call (stored on the request)."""
        items = [(search, r) for search, reqs in batch for r in reqs if r.kind == "prm"]
        if not items:
            return
        try:
            self._set_prm_scores([r for _, r in items], self.value_model.score_batch(
                [(search.tree.question, [r.steps]) for search, r in items]))
        except Exception as exc:  # why: score tree by tree so only the trees that fail are lost
            raise_if_fatal(exc, "the PRM")  # a lost CUDA context in the PRM fails every later tree
            logger.warning("PRM scoring failed for the round (%s: %s); scoring tree by tree",
                           type(exc).__name__, exc)
            for search, reqs in batch:
                own = [r for r in reqs if r.kind == "prm"]
                if own:
                    try:
                        self._set_prm_scores(own, self.value_model.score_batch(
                            [(search.tree.question, [r.steps]) for r in own]))
                    except Exception as own_exc:
                        raise_if_fatal(own_exc, "the PRM")
                        self._fail(search, "scoring with the PRM", own_exc)

    @staticmethod
    def _set_prm_scores(requests: list[SearchRequest], scores) -> None:
        """Store each ``prm`` request's score: the last step score of its one path."""
        scores = list(scores)
        if len(scores) != len(requests):
            raise RuntimeError(f"value model returned {len(scores)} scores for {len(requests)} paths")
        for r, per_question in zip(requests, scores):
            r.prm_score = float(per_question[0][-1])

    def _run_generation(self, batch: list[tuple[TreeSearch, list[SearchRequest]]],
                        whole_attempts: int = 2) -> dict[int, list]:
        """Samples of every generation request, by search (``id``), in request order: one call
        for all (``whole_attempts`` tries), then, if that fails, tree by tree (two tries each)."""
        batch = [(search, reqs) for search, reqs in batch if reqs]
        out: dict[int, list] = {}
        if not batch:
            return out
        flat = [r for _, reqs in batch for r in reqs]
        results = self._generate(flat, whole_attempts)
        if results is None:
            # Retry tree by tree so only the trees whose requests fail are lost.
            failed = []
            for search, reqs in batch:
                own = self._generate(reqs)
                if own is None:
                    search.fail(f"engine error on {len(reqs)} request(s): {self._last_error}")
                    failed.append(search)
                else:
                    out[id(search)] = [r.samples for r in own]
            if out:
                self.failed_rounds = 0
                return out
            self.failed_rounds += 1  # no call succeeded: the engine itself may be broken
            self._held_ids.update(id(search) for search in failed)
            if self.failed_rounds >= self.max_engine_failures:
                raise EngineFailure(f"{self.failed_rounds} consecutive rounds without a successful engine call; "
                                    f"last error: {self._last_error}")
            return out
        self.failed_rounds = 0
        i = 0
        for search, reqs in batch:
            out[id(search)] = [r.samples for r in results[i:i + len(reqs)]]
            i += len(reqs)
        return out

    _last_error = ""

    def _generate(self, reqs: list[SearchRequest], attempts: int = 2):
        """Generate with ``attempts - 1`` retries; None if every attempt raises."""
        gen_reqs = [to_generation_request(r, self.adapter) for r in reqs]
        for attempt in range(1, attempts + 1):
            try:
                self.stats.engine_calls += 1
                results = self.engine.generate(gen_reqs)
                if len(results) != len(gen_reqs):
                    raise RuntimeError(f"engine returned {len(results)} results for {len(gen_reqs)} requests")
                for r in results:
                    self._count(r)
                return results
            except Exception as exc:  # an engine failure must not stop the job
                self._last_error = f"{type(exc).__name__}: {exc}"
                raise_if_fatal(exc, "the engine")  # why: a broken engine would fail every tree that follows
                logger.warning("engine call failed (attempt %d of %d): %s", attempt, attempts, self._last_error)
                self.stats.retries += attempt < attempts
        return None
