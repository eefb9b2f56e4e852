"""The forest driver: many trees advance in rounds, one engine call per round.

Every round gathers the pending requests of every live tree (expansions and rollouts alike)
into a single ``Engine.generate`` call; a finished tree is handed to the caller and replaced
by the next question, so the batch stays full (continuous batching). This is the one place
where search meets the model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

from meds3.data.prompts import PromptConfig, render_prompt
from meds3.data.search_prompts import render_simulation_prompt, render_think_prompt
from meds3.data.question import MedQuestion
from meds3.mcts.config import SearchConfig
from meds3.mcts.node import Tree
from meds3.mcts.search import SearchRequest, TreeSearch

logger = logging.getLogger(__name__)


@dataclass
class ForestStats:
    """Running totals of a forest run."""

    trees_done: int = 0
    trees_failed: int = 0
    trees_with_correct: int = 0
    nodes: int = 0
    generated_tokens: int = 0
    prompt_tokens_computed: int = 0
    prompt_tokens_cached: int = 0
    rounds: int = 0
    engine_calls: int = 0
    retries: int = 0
    started: float = 0.0

    @property
    def elapsed(self) -> float:
        return max(time.perf_counter() - self.started, 1e-9)


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

    Raises:
        ValueError: ``live_trees`` < 1, or a PRM prior asked for without a value model.
    """

    def __init__(self, engine, config: SearchConfig | None = None, prompt_config: PromptConfig | None = None,
                 live_trees: int = 16, adapter: Optional[str] = None, verifier=None, value_model=None):
        if live_trees < 1:
            raise ValueError(f"live_trees must be >= 1, got {live_trees}")
        if (config or SearchConfig()).prm_prior_weight > 0 and value_model is None:
            raise ValueError("search.prm_prior_weight > 0 needs a PRM (value_model) to score new steps")
        self.value_model = value_model
        self.engine = engine
        self.config = config or SearchConfig()
        self.prompt_config = prompt_config or PromptConfig()
        self.live_trees = live_trees
        self.adapter = adapter
        self.verifier = verifier
        self.stats = ForestStats()

    def render(self, question: MedQuestion, steps) -> str:
        return render_prompt(question, getattr(self.engine, "tokenizer", None), steps, self.prompt_config)

    def render_simulation(self, question: MedQuestion, steps) -> str:
        return render_simulation_prompt(question, getattr(self.engine, "tokenizer", None), steps, self.prompt_config)

    def render_think(self, question: MedQuestion, steps) -> str:
        return render_think_prompt(question, getattr(self.engine, "tokenizer", None), steps, self.prompt_config)

    def new_search(self, question: MedQuestion) -> TreeSearch:
        kwargs = {"verifier": self.verifier} if self.verifier is not None else {}
        return TreeSearch(question, self.config, self.render, self.prompt_config, render_simulation=self.render_simulation,
                          render_think=self.render_think, **kwargs)

    def run(self, questions: Iterable[MedQuestion],
            on_round: Callable[[ForestStats], None] | None = None) -> Iterator[Tree]:
        """Search every question; yield each tree as soon as it is complete (or failed)."""
        self.stats = ForestStats(started=time.perf_counter())
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
                        live.append(self.new_search(q))
                batch: list[tuple[TreeSearch, list[SearchRequest]]] = []
                finished = []
                for search in live:
                    reqs = search.requests()
                    (finished.append(search) if search.done else batch.append((search, reqs)))
                for search in finished:
                    live.remove(search)
                    yield self._finished(search.tree)
                if not finished or exhausted:
                    break
            if not batch:
                if exhausted and not live:
                    return
                continue
            self._run_round(batch)
            self.stats.rounds += 1
            if on_round is not None:
                on_round(self.stats)

    def _finished(self, tree: Tree) -> Tree:
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
            if search.done:  # failed in generation
                continue
            outs = iter(generated.get(id(search), []))
            search.apply([[r.prm_score] if r.kind == "prm" else next(outs) for r in reqs])

    def _score_prm(self, batch: list[tuple[TreeSearch, list[SearchRequest]]]) -> None:
        """Score every ``prm`` request of the round in one value-model call (stored on the request)."""
        items = [(search, r) for search, reqs in batch for r in reqs if r.kind == "prm"]
        if not items:
            return
        scores = self.value_model.score_batch([(search.tree.question, [r.steps]) for search, r in items])
        for (_, r), per_question in zip(items, scores):
            r.prm_score = float(per_question[0][-1])

    def _run_generation(self, batch: list[tuple[TreeSearch, list[SearchRequest]]]) -> dict[int, list]:
        """Samples of every generation request, by search (``id``), in request order."""
        batch = [(search, reqs) for search, reqs in batch if reqs]
        out: dict[int, list] = {}
        if not batch:
            return out
        flat = [r for _, reqs in batch for r in reqs]
        results = self._generate(flat)
        if results is None:
            # Retry tree by tree so only the trees whose requests fail are lost.
            for search, reqs in batch:
                own = self._generate(reqs)
                if own is None:
                    search.fail(f"engine error on {len(reqs)} request(s): {self._last_error}")
                else:
                    out[id(search)] = [r.samples for r in own]
            return out
        i = 0
        for search, reqs in batch:
            out[id(search)] = [r.samples for r in results[i:i + len(reqs)]]
            i += len(reqs)
        return out

    _last_error = ""

    def _generate(self, reqs: list[SearchRequest]):
        """Generate with one retry; None if both attempts raise."""
        gen_reqs = [to_generation_request(r, self.adapter) for r in reqs]
        for attempt in (1, 2):
            try:
                self.stats.engine_calls += 1
                results = self.engine.generate(gen_reqs)
                if len(results) != len(gen_reqs):
                    raise RuntimeError(f"engine returned {len(results)} results for {len(gen_reqs)} requests")
                for r in results:
                    self.stats.generated_tokens += r.generated_tokens
                    self.stats.prompt_tokens_computed += r.prompt_tokens_computed
                    self.stats.prompt_tokens_cached += r.prompt_tokens_cached
                return results
            except Exception as exc:  # an engine failure must not stop the job
                self._last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("engine call failed (attempt %d of 2): %s", attempt, self._last_error)
                self.stats.retries += attempt == 1
        return None
