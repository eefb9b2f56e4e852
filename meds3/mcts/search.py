"""The MedS3 tree search as a pure state machine: it emits generation requests and consumes
their samples; it never calls a model (the forest driver batches requests of many trees).

One iteration: select a leaf by UCT -> expand it (Reason and Finish actions, width 3) ->
check Finish children with the rules and estimate Reason children by rollouts ->
back every new child up to the root, in child order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from meds3.data.prompts import PromptConfig, has_answer_phrase, step_header, step_marker
from meds3.data.question import MedQuestion
from meds3.mcts.config import SearchConfig
from meds3.mcts.node import Node, Tree
from meds3.mcts.rules import back_up, select_child

#: ``render(question, steps) -> prompt text`` ending with the header of the next step.
Renderer = Callable[[MedQuestion, Sequence[str]], str]

REQUEST_KINDS = ("reason", "finish", "rollout", "force_finish")


@dataclass
class SearchRequest:
    """What a tree asks the engine for: ``n`` continuations of ``prompt``."""

    node_id: int
    kind: str  # one of REQUEST_KINDS
    prompt: str
    n: int
    max_new_tokens: int
    stop: list[str] = field(default_factory=list)
    seed: int = 0
    temperature: float = 0.8
    top_p: float = 0.9


def request_seed(seed: int, question_id: str, node_id: int, kind: str) -> int:
    """A seed that depends only on the search seed and the request's place in its tree, so
    a tree grows the same whatever else shares its batch."""
    digest = hashlib.sha256(f"{seed}:{question_id}:{node_id}:{kind}".encode()).digest()
    return int.from_bytes(digest[:7], "big")


def default_verifier(text: str, question: MedQuestion):
    from meds3.verify import verify

    return verify(text, question)


class TreeSearch:
    """Grows one tree. Call :meth:`requests`, generate them, pass the samples to
    :meth:`apply`; repeat until :attr:`done`."""

    def __init__(self, question: MedQuestion, config: SearchConfig, render: Renderer,
                 prompt_config: PromptConfig | None = None, verifier=default_verifier):
        self.config = config
        self.prompt_config = prompt_config or PromptConfig()
        self.render = render
        self.verifier = verifier
        root = Node(id=0, parent=None, depth=0, kind="root", step=self.prompt_config.root_step)
        self.tree = Tree(question=question, nodes=[root])
        self._pending: list[SearchRequest] = []
        self._queue: list[int] = []  # new children awaiting back-up, in creation order
        self._forced = False

    @property
    def done(self) -> bool:
        return self.tree.status != "running"

    @property
    def nodes(self) -> list[Node]:
        return self.tree.nodes

    # ------------------------------------------------------------------ driving

    def requests(self) -> list[SearchRequest]:
        """Requests this tree waits on (empty once it is done). Repeated calls without
        :meth:`apply` return the same requests."""
        if not self._pending and not self.done:
            self._pending = self._advance()
        return self._pending

    def apply(self, samples: Sequence[Sequence]) -> None:
        """Consume the samples of the pending requests, one sequence per request, in order.

        Each sample needs ``text``, ``finish_reason`` and ``num_tokens`` (an engine Sample).
        """
        if len(samples) != len(self._pending):
            raise ValueError(f"got samples for {len(samples)} requests, {len(self._pending)} are pending")
        for req, outs in zip(self._pending, samples):
            if req.kind == "rollout":
                self._apply_rollout(req, outs)
            else:
                self._apply_expansion(req, outs)
        self._pending = []
        self.tree.rounds += 1

    def fail(self, reason: str) -> None:
        """Stop the search and record why (an engine error that persisted)."""
        self.tree.status, self.tree.error, self._pending = "failed", reason, []

    # ------------------------------------------------------------------ the algorithm

    def _advance(self) -> list[SearchRequest]:
        """Run every step that needs no model and return the next requests ([] when done)."""
        unrolled = [c for c in self._queue if self._needs_rollout(self.nodes[c])]
        target_met = len(self.tree.correct_leaves()) >= self.config.target_correct_leaves
        if unrolled and not target_met:
            return [self._rollout_request(self.nodes[c]) for c in unrolled]
        for cid in self._queue:
            if not self._needs_rollout(self.nodes[cid]):
                back_up(self.nodes, cid, self._leaf_value(self.nodes[cid]), self.config.backup_rule)
        # With the target met no rollout is spent; such steps stay unvisited open leaves.
        self._queue = []
        if self._forced:
            return self._finish("max_nodes")
        stop = self._stop_reason()
        if stop is None:
            leaf = self._select_leaf()
            if leaf is not None:
                return self._expansion_requests(leaf)
            stop = "all_finished"
        open_leaves = [n for n in self.tree.leaves() if not n.completed and n.kind != "finish"]
        if (stop == "max_nodes" and open_leaves
                and len(self.tree.correct_leaves()) <= self.config.force_finish_max_correct):
            self._forced = True
            return [self._request(n, "force_finish", 1) for n in open_leaves]
        return self._finish(stop)

    def _finish(self, stop: str) -> list[SearchRequest]:
        self.tree.status, self.tree.stop_reason = "complete", stop
        return []

    def _stop_reason(self) -> Optional[str]:
        if len(self.tree.correct_leaves()) >= self.config.target_correct_leaves:
            return "correct_leaves"
        if self.tree.root.completed:
            return "all_finished"
        if len(self.nodes) >= self.config.max_nodes:
            return "max_nodes"
        return None

    def _select_leaf(self) -> Optional[Node]:
        """Descend from the root by UCT; None when every path is pruned."""
        node = self.tree.root
        while node.children:
            child = select_child(self.nodes, node, self.config)
            if child is None:
                node.completed = True
                return None
            node = child
        return None if node.completed else node

    def _expansion_requests(self, leaf: Node) -> list[SearchRequest]:
        cfg = self.config
        if leaf.depth >= cfg.max_depth or (leaf.rollout_value is not None and leaf.rollout_value >= cfg.bear_ratio):
            return [self._request(leaf, "finish", 1)]
        n_finish = 0 if leaf.kind == "root" else cfg.finish_children
        out = []
        if cfg.expansion_width - n_finish > 0:
            out.append(self._request(leaf, "reason", cfg.expansion_width - n_finish))
        if n_finish:
            out.append(self._request(leaf, "finish", n_finish))
        return out

    def _rollout_request(self, node: Node) -> SearchRequest:
        return self._request(node, "rollout", self.config.rollouts_at(node.depth))

    def _request(self, node: Node, kind: str, n: int) -> SearchRequest:
        cfg = self.config
        steps = self.tree.steps_to(node.id)
        stop: list[str] = []
        if kind == "reason":
            # The header after the step being written ends it: Step 0 (root) + len(steps) done.
            stop = [step_header(len(steps) + 2, self.prompt_config).rstrip(), "\n" + step_marker(self.prompt_config)]
        max_tokens = {"reason": cfg.max_step_tokens, "rollout": cfg.max_rollout_tokens}.get(kind, cfg.max_finish_tokens)
        return SearchRequest(node_id=node.id, kind=kind, prompt=self.render(self.tree.question, steps), n=n,
                             max_new_tokens=max_tokens, stop=stop,
                             seed=request_seed(cfg.seed, self.tree.question.id, node.id, kind),
                             temperature=cfg.temperature, top_p=cfg.top_p)

    # ------------------------------------------------------------------ consuming samples

    def _apply_expansion(self, req: SearchRequest, samples: Sequence) -> None:
        parent = self.nodes[req.node_id]
        for sample in samples:
            text = (sample.text or "").strip()
            node = Node(id=len(self.nodes), parent=parent.id, depth=parent.depth + 1, kind="reason", step=text,
                        tokens=int(sample.num_tokens), finish_reason=sample.finish_reason)
            if not text:
                node.failed, node.terminal, node.completed = "empty generation", True, True
            elif req.kind != "reason" or has_answer_phrase(text, self.prompt_config) or sample.finish_reason == "eos":
                # A Finish action, a Reason step that states the answer (re-typed Finish), or a
                # response the model ended: a terminal step checked by the rules.
                self._make_finish(node)
            self.nodes.append(node)
            parent.children.append(node.id)
            self._queue.append(node.id)

    def _make_finish(self, node: Node) -> None:
        verdict = self.verifier(node.step, self.tree.question)
        node.kind, node.terminal, node.completed = "finish", True, True
        node.verdict, node.answer = verdict.correct, verdict.extracted
        if verdict.correct is None:
            node.failed = f"unverifiable: {verdict.reason}"

    def _apply_rollout(self, req: SearchRequest, samples: Sequence) -> None:
        node = self.nodes[req.node_id]
        correct = sum(self.verifier(s.text or "", self.tree.question).correct is True for s in samples)
        node.rollout_count += len(samples)
        node.rollout_correct += correct
        node.rollout_value = node.rollout_correct / node.rollout_count if node.rollout_count else 0.0
        node.tokens += sum(int(s.num_tokens) for s in samples)

    def _needs_rollout(self, node: Node) -> bool:
        return node.kind == "reason" and not node.terminal and node.rollout_value is None

    @staticmethod
    def _leaf_value(node: Node) -> float:
        if node.kind == "finish":
            return 1.0 if node.verdict is True else 0.0
        if node.terminal:
            return 0.0
        return float(node.rollout_value or 0.0)
