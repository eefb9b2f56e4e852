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

from meds3.data.prompts import PromptConfig, has_answer_phrase, split_steps, step_header, step_marker
from meds3.data.question import MedQuestion
from meds3.mcts.config import SearchConfig
from meds3.mcts.node import Node, Tree
from meds3.mcts.rules import back_up, select_child

#: ``render(question, steps) -> prompt text`` ending with the header of the next step.
Renderer = Callable[[MedQuestion, Sequence[str]], str]

#: ``prm`` requests are scored by the forest's value model, not generated.
REQUEST_KINDS = ("reason", "finish", "rollout", "force_finish", "reflect", "think", "prm")


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
    steps: list[str] = field(default_factory=list)  # ``prm``: the path to score (Step 0 first)
    prm_score: Optional[float] = None  # ``prm``: filled in by the forest's value model


THINK_TOKENS = 4  # a Think output names its action in the first word or two


def request_seed(seed: int, question_id: str, node_id: int, kind: str) -> int:
    """A seed that depends only on the search seed and the request's place in its tree, so a
    tree draws the same random numbers whatever else shares its batch (and grows the same bit
    for bit with a batch-invariant engine: ``engine.batch_invariant``)."""
    digest = hashlib.sha256(f"{seed}:{question_id}:{node_id}:{kind}".encode()).digest()
    return int.from_bytes(digest[:7], "big")


def default_verifier(text: str, question: MedQuestion):
    from meds3.verify import verify

    return verify(text, question)


class TreeSearch:
    """Grows one tree. Call :meth:`requests`, generate them, pass the samples to
    :meth:`apply`; repeat until :attr:`done`."""

    def __init__(self, question: MedQuestion, config: SearchConfig, render: Renderer,
                 prompt_config: PromptConfig | None = None, verifier=default_verifier,
                 render_simulation: Renderer | None = None, render_think: Renderer | None = None):
        from meds3.data.search_prompts import render_simulation_prompt, render_think_prompt

        self.config = config
        self.prompt_config = prompt_config or PromptConfig()
        self.render = render
        pc = self.prompt_config
        self.render_simulation = render_simulation or (lambda q, steps: render_simulation_prompt(q, None, steps, pc))
        self.render_think = render_think or (lambda q, steps: render_think_prompt(q, None, steps, pc))
        self.verifier = verifier
        self._planned: Optional[tuple[int, list[str]]] = None  # a Think choice awaiting its expansion
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
            elif req.kind == "prm":
                self.nodes[req.node_id].prm_value = float(outs[0])
            elif req.kind == "think":
                self._apply_think(req, outs)
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
        if self._planned is not None:
            node_id, actions = self._planned
            self._planned = None
            return self._action_requests(self.nodes[node_id], actions)
        nodes = [self.nodes[c] for c in self._queue]
        target_met = self._correct_count() >= self.config.target_correct_leaves
        if not target_met and any(self._needs_rollout(n) or self._needs_prm(n) for n in nodes):
            return ([self._rollout_request(n) for n in nodes if self._needs_rollout(n)]
                    + [self._prm_request(n) for n in nodes if self._needs_prm(n)])
        for cid in self._queue:
            node = self.nodes[cid]
            if self._needs_rollout(node) or self._needs_prm(node) or self._excluded(node):
                continue  # a truncated Finish is no outcome: never backed up, pruned (completed)
            back_up(self.nodes, cid, self._leaf_value(node), self.config.backup_rule)
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
                and self._correct_count() <= self.config.force_finish_max_correct):
            self._forced = True
            return [self._request(n, "force_finish", 1) for n in open_leaves]
        return self._finish(stop)

    def _finish(self, stop: str) -> list[SearchRequest]:
        self.tree.status, self.tree.stop_reason = "complete", stop
        return []

    def _correct_count(self) -> int:
        """Correct leaves for the stop rules: one per distinct reasoning trace (none at test
        time: with ``finish_value: prm`` no rule check steers the search)."""
        if self.config.finish_value == "prm":
            return 0
        return len(self.tree.distinct_correct_leaves())

    def _stop_reason(self) -> Optional[str]:
        if self._correct_count() >= self.config.target_correct_leaves:
            return "correct_leaves"
        if self.tree.root.completed:
            return "all_finished"
        if self.tree.search_nodes >= self.config.max_nodes:
            return "max_nodes"
        return None

    def _select_leaf(self) -> Optional[Node]:
        """Descend from the root by UCT; None when every path is pruned.

        A node whose children are all pruned but that no back-up marked completed (its last
        child was a truncated Finish, which is never backed up) is marked completed, with
        every ancestor that this completes, and the descent starts again from the root.
        """
        root = self.tree.root
        while True:
            node = root
            while node.children:
                child = select_child(self.nodes, node, self.config)
                if child is None:
                    break
                node = child
            else:
                return None if node.completed else node
            node.completed = True
            while node.parent is not None:
                node = self.nodes[node.parent]
                if not all(self.nodes[c].completed for c in node.children):
                    break
                node.completed = True
            if root.completed:
                return None

    def _expansion_requests(self, leaf: Node) -> list[SearchRequest]:
        cfg = self.config
        if leaf.kind == "finish":
            return [self._request(leaf, "reflect", 1)]  # selection returns only a Finish open to Reflect
        rollout = leaf.rollout_value if leaf.rollout_value is not None else leaf.prm_value
        if leaf.depth >= cfg.max_depth or (rollout is not None and rollout >= cfg.bear_ratio):
            return [self._request(leaf, "finish", 1)]
        if cfg.action_policy == "model" and leaf.kind != "root":
            return [self._request(leaf, "think", cfg.expansion_width)]  # the policy picks each child's action
        n_finish = 0 if leaf.kind == "root" else cfg.finish_children
        return self._action_requests(leaf, ["reason"] * (cfg.expansion_width - n_finish) + ["finish"] * n_finish)

    def _action_requests(self, leaf: Node, actions: Sequence[str]) -> list[SearchRequest]:
        """One request per action kind, Reason first, with as many samples as children of it."""
        return [self._request(leaf, kind, actions.count(kind)) for kind in ("reason", "finish") if kind in actions]

    def _rollout_request(self, node: Node) -> SearchRequest:
        return self._request(node, "rollout", self.config.rollouts_at(node.depth))

    def _prm_request(self, node: Node) -> SearchRequest:
        steps = [self.prompt_config.root_step, *self.tree.steps_to(node.id)]
        return SearchRequest(node_id=node.id, kind="prm", prompt="", n=1, max_new_tokens=0, steps=steps)

    def _request(self, node: Node, kind: str, n: int) -> SearchRequest:
        cfg = self.config
        steps = self.tree.steps_to(node.id)
        question = self.tree.question
        stop: list[str] = []
        if kind in ("reason", "reflect"):
            # The header after the step being written ends it: Step 0 (root) + len(steps) done.
            stop = [step_header(len(steps) + 2, self.prompt_config).rstrip(), "\n" + step_marker(self.prompt_config)]
        if kind == "rollout" and cfg.simulation == "direct":
            prompt = self.render_simulation(question, steps)
        elif kind == "think":
            prompt = self.render_think(question, steps)
        elif kind == "reflect":
            prompt = self.render(question, steps) + cfg.reflect_text
        else:
            prompt = self.render(question, steps)
        max_tokens = {"reason": cfg.max_step_tokens, "reflect": cfg.max_step_tokens, "think": THINK_TOKENS,
                      "rollout": cfg.max_rollout_tokens}.get(kind, cfg.max_finish_tokens)
        temperature, top_p = cfg.sampling("rollout" if kind == "rollout" else "expansion")
        return SearchRequest(node_id=node.id, kind=kind, prompt=prompt, n=n, max_new_tokens=max_tokens, stop=stop,
                             seed=request_seed(cfg.seed, question.id, node.id, kind),
                             temperature=temperature, top_p=top_p)

    # ------------------------------------------------------------------ consuming samples

    def _apply_think(self, req: SearchRequest, samples: Sequence) -> None:
        """The policy's choice of action for each child; an output naming neither action counts
        as Reason (MedS3 falls back to Reason when the Think action yields nothing usable)."""
        from meds3.data.search_prompts import parse_action

        self._planned = (req.node_id, [parse_action(s.text) or "reason" for s in samples])

    def _apply_expansion(self, req: SearchRequest, samples: Sequence) -> None:
        parent = self.nodes[req.node_id]
        reflect = req.kind == "reflect"
        if reflect:
            # The Finish becomes an inner step of the path its Reflect child continues (MedS3).
            parent.kind, parent.terminal, parent.completed = "reason", False, False
        for sample in samples:
            text = (sample.text or "").strip()
            if reflect:
                text = (self.config.reflect_text + text).strip()
            node = Node(id=len(self.nodes), parent=parent.id, depth=parent.depth + 1, kind="reason", step=text,
                        tokens=int(sample.num_tokens), finish_reason=sample.finish_reason, action=req.kind,
                        refine_count=parent.refine_count + reflect)
            if not text:
                node.failed, node.terminal, node.completed = "empty generation", True, True
            elif req.kind not in ("reason", "reflect") and sample.finish_reason == "length":
                node.truncated = True  # a Finish cut at its token cap
                self._make_finish(node)
            elif req.kind not in ("reason", "reflect"):
                node = self._chain(parent, node)  # a Finish action: one node per step it wrote
                self._make_finish(node)
            elif has_answer_phrase(text, self.prompt_config) or sample.finish_reason == "eos":
                # A Reason step that states the answer (re-typed Finish), or a response the
                # model ended: a terminal step checked by the rules.
                self._make_finish(node)
            if node.parent == parent.id:
                parent.children.append(node.id)
            self.nodes.append(node)
            self._queue.append(node.id)

    def _chain(self, parent: Node, node: Node) -> Node:
        """Split a Finish output that wrote several ``Step k:`` blocks and ends with the answer
        into a chain: one intermediate node per step before the last, each starting from the
        parent's value with one visit (MedS3 ``process_answer_nodes``), so that the back-up of
        the answer step moves each toward the outcome. Returns the node of the answer step,
        ready to append after the chain (which is already in the tree)."""
        parts = split_steps(node.step, self.prompt_config)
        if not self.config.split_finish or len(parts) < 2 or not has_answer_phrase(parts[-1], self.prompt_config):
            return node
        above = parent
        for part in parts[:-1]:
            link = Node(id=len(self.nodes), parent=above.id, depth=above.depth + 1, kind="reason", step=part,
                        visits=1, value=parent.value, chained=True, action=node.action,
                        refine_count=node.refine_count)
            self.nodes.append(link)
            above.children.append(link.id)
            above = link
        node.id, node.parent, node.depth, node.step = len(self.nodes), above.id, above.depth + 1, parts[-1]
        above.children.append(node.id)
        return node

    def _make_finish(self, node: Node) -> None:
        verdict = self.verifier(node.step, self.tree.question)
        node.kind, node.terminal = "finish", True
        node.verdict, node.answer = verdict.correct, verdict.extracted
        if self._excluded(node):
            node.verdict, node.failed = None, f"truncated at {node.tokens} tokens (answer unknown)"
        elif verdict.correct is None:
            node.failed = f"unverifiable: {verdict.reason}"
        node.completed = not self._reflectable(node)

    def _reflectable(self, node: Node) -> bool:
        """A Finish whose value (its 0/1 verdict) is under ``low_gate`` stays open for one Reflect
        child while the path has Reflect steps to spare (MedS3 ``refine_limit``, ``low_gate``).
        At test time (``finish_value: prm``) the PRM score arrives later: no Reflect."""
        if self.config.finish_value == "prm":
            return False
        value = 1.0 if node.verdict is True else 0.0
        return (node.kind == "finish" and not self._excluded(node) and value < self.config.low_gate
                and node.refine_count < self.config.refine_limit)

    def _apply_rollout(self, req: SearchRequest, samples: Sequence) -> None:
        node = self.nodes[req.node_id]
        for sample in samples:
            truncated = sample.finish_reason == "length"
            node.rollout_truncated += truncated
            node.tokens += int(sample.num_tokens)
            if truncated and not self.config.count_truncated:
                continue  # cut at the cap: neither right nor wrong
            node.rollout_count += 1
            node.rollout_correct += self.verifier(sample.text or "", self.tree.question).correct is True
        if node.rollout_count:
            node.rollout_value = node.rollout_correct / node.rollout_count

    def _excluded(self, node: Node) -> bool:
        """A truncated Finish when truncated outputs do not count (the default)."""
        return node.truncated and not self.config.count_truncated

    @staticmethod
    def _valued_by_search(node: Node) -> bool:
        """A step whose value comes from rollouts and/or the PRM (not a Finish, not a chain link)."""
        return node.kind == "reason" and not node.terminal and not node.chained and node.visits == 0

    def _prm_finish(self, node: Node) -> bool:
        """A Finish valued by the PRM (test time), not yet scored."""
        return (self.config.finish_value == "prm" and node.kind == "finish" and not self._excluded(node)
                and node.visits == 0 and node.prm_value is None)

    def _needs_rollout(self, node: Node) -> bool:
        return (self.config.prm_prior_weight < 1 and self._valued_by_search(node)
                and node.rollout_count == 0 and node.rollout_truncated == 0)

    def _needs_prm(self, node: Node) -> bool:
        if self._prm_finish(node):
            return True
        return self.config.prm_prior_weight > 0 and self._valued_by_search(node) and node.prm_value is None

    def _leaf_value(self, node: Node) -> float:
        if node.kind == "finish" and self.config.finish_value == "prm":
            return float(node.prm_value or 0.0)
        if node.kind == "finish":
            return 1.0 if node.verdict is True else 0.0
        if node.terminal:
            return 0.0
        w = self.config.prm_prior_weight
        if w > 0 and node.prm_value is not None:
            if node.rollout_value is None:  # w = 1 (no rollouts), or every rollout was cut
                return float(node.prm_value)
            return (1 - w) * float(node.rollout_value) + w * float(node.prm_value)
        if node.rollout_value is None:
            # Every rollout was cut at its cap: no evidence, so the node keeps its parent's value.
            return float(self.nodes[node.parent].value) if node.parent is not None else 0.0
        return float(node.rollout_value)
