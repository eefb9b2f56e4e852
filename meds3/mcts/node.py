"""Nodes and trees: plain data, JSON round trip, networkx export."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Optional, Union

from meds3.data.question import MedQuestion

SCHEMA_VERSION = 1
KINDS = ("root", "reason", "finish")


@dataclass
class Node:
    """One reasoning step of a search tree.

    ``value`` is the backed-up value V; ``rollout_value`` the share of rollouts from this node
    that the rules verified correct (None for Finish nodes, which are checked directly).
    ``verdict`` is the rule check of a Finish node's answer (None: no answer, unverifiable).
    ``completed`` nodes are pruned from selection: Finish and failed nodes, and nodes whose
    children are all completed. ``failed`` says why a generation produced no usable step.
    ``truncated``: the generation hit its token cap (a Finish step, or ``rollout_truncated`` of
    this node's rollouts). ``chained``: an intermediate step split out of a multi-step Finish
    output (docs/method.md); it is not counted toward ``max_nodes``.
    """

    id: int
    parent: Optional[int]
    depth: int
    kind: str
    step: str
    children: list[int] = field(default_factory=list)
    visits: int = 0
    value: float = 0.0
    rollout_value: Optional[float] = None
    rollout_count: int = 0
    rollout_correct: int = 0
    terminal: bool = False
    completed: bool = False
    verdict: Optional[bool] = None
    answer: Optional[str] = None
    tokens: int = 0
    finish_reason: Optional[str] = None
    failed: Optional[str] = None
    truncated: bool = False
    rollout_truncated: int = 0
    chained: bool = False
    action: str = ""  # the request that made it: reason, finish, force_finish, reflect ("" for the root)
    refine_count: int = 0  # Reflect steps on the path to this node, itself included
    prm_value: Optional[float] = None  # the PRM's score of the path to this node (PRM prior)

    @property
    def is_correct_leaf(self) -> bool:
        """A Finish node whose answer the rules verified correct."""
        return self.kind == "finish" and self.verdict is True


@dataclass
class Tree:
    """A search tree for one question. ``status``: ``running``, ``complete`` or ``failed``."""

    question: MedQuestion
    nodes: list[Node] = field(default_factory=list)
    status: str = "running"
    stop_reason: str = ""
    error: str = ""
    rounds: int = 0
    schema_version: int = SCHEMA_VERSION
    adapter_sha256: str = ""  # content hash of the policy adapter that grew it ("" for the base model)
    source: str = field(default="", compare=False)  # where the tree was read from (not saved)

    @property
    def root(self) -> Node:
        return self.nodes[0]

    @property
    def question_id(self) -> str:
        return self.question.id

    def path(self, node_id: int) -> list[Node]:
        """Nodes from the root to ``node_id``, both included."""
        out = []
        cur: Optional[int] = node_id
        while cur is not None:
            if len(out) > len(self.nodes):  # why: a damaged tree whose parents loop must not hang
                raise ValueError(f"tree for {self.question.id!r}: the parents of node {node_id} form a cycle")
            out.append(self.nodes[cur])
            cur = self.nodes[cur].parent
        return out[::-1]

    def steps_to(self, node_id: int) -> list[str]:
        """Step texts after the root (Step 1, Step 2, ...) down to ``node_id``."""
        return [n.step for n in self.path(node_id)[1:]]

    def leaves(self) -> list[Node]:
        return [n for n in self.nodes if not n.children]

    def correct_leaves(self) -> list[Node]:
        return [n for n in self.nodes if n.is_correct_leaf]

    def distinct_correct_leaves(self) -> list[Node]:
        """Correct leaves, one per distinct reasoning trace (step texts, whitespace-normalized):
        the count the stop rules use (MedS3 counts a repeated trace once)."""
        seen: set[tuple[str, ...]] = set()
        out = []
        for leaf in self.correct_leaves():
            key = tuple(" ".join(step.split()) for step in self.steps_to(leaf.id))
            if key not in seen:
                seen.add(key)
                out.append(leaf)
        return out

    @property
    def search_nodes(self) -> int:
        """Nodes that count toward ``max_nodes``: every node but the chained steps of
        multi-step Finish outputs (the MedS3 code raises its cap by their number)."""
        return sum(not n.chained for n in self.nodes)

    def finish_leaves(self) -> list[Node]:
        return [n for n in self.nodes if n.kind == "finish"]

    @property
    def tokens(self) -> int:
        """Generated tokens spent on this tree (steps and rollouts)."""
        return sum(n.tokens for n in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it exactly."""
        return {"schema_version": self.schema_version, "question": self.question.to_dict(),
                "status": self.status, "stop_reason": self.stop_reason, "error": self.error,
                "rounds": self.rounds, "adapter_sha256": self.adapter_sha256, "nodes": [asdict(n) for n in self.nodes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Tree":
        """Rebuild a tree from :meth:`to_dict` output.

        Raises:
            ValueError: a schema version this code does not read, or nodes that do not form a
                tree (:func:`check_nodes`).
        """
        if not isinstance(data, dict):
            raise ValueError(f"a tree is a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"tree schema version {version!r} is not supported (expected {SCHEMA_VERSION})")
        names = {f.name for f in fields(Node)}
        if not isinstance(data.get("nodes"), list):
            raise ValueError("field 'nodes' is missing or not a list")
        nodes = [Node(**{k: v for k, v in n.items() if k in names}) for n in data["nodes"]]
        check_nodes(nodes)
        return cls(question=MedQuestion.from_dict(data["question"]), nodes=nodes, status=data["status"],
                   stop_reason=data.get("stop_reason", ""), error=data.get("error", ""),
                   rounds=data.get("rounds", 0), schema_version=version,
                   adapter_sha256=data.get("adapter_sha256", ""))

    def to_networkx(self):
        """A ``networkx.DiGraph``: one vertex per node (its fields as attributes), parent -> child edges."""
        import networkx as nx

        graph = nx.DiGraph(question_id=self.question.id, status=self.status)
        for n in self.nodes:
            attrs = asdict(n)
            attrs.pop("children")
            graph.add_node(n.id, **attrs)
            if n.parent is not None:
                graph.add_edge(n.parent, n.id)
        return graph


def check_nodes(nodes: list[Node]) -> None:
    """Check that ``nodes`` form a tree as the search builds it: a root at index 0 without a
    parent, every other node's id its index and its parent an earlier node (so no node is its
    own ancestor and :meth:`Tree.path` ends).

    Raises:
        ValueError: the first node that breaks this, named.
    """
    if not nodes:
        raise ValueError("the tree has no nodes (not even a root)")
    for i, n in enumerate(nodes):
        if n.id != i:
            raise ValueError(f"node {i} has id {n.id!r} (ids are positions)")
        if i == 0:
            if n.parent is not None:
                raise ValueError(f"the root has a parent ({n.parent!r})")
        elif not isinstance(n.parent, int) or isinstance(n.parent, bool) or not 0 <= n.parent < i:
            what = "is its own parent" if n.parent == i else f"has parent {n.parent!r}, not an earlier node"
            raise ValueError(f"node {i} {what}")


SHAPE_FIELDS = ("parent", "kind", "step", "verdict", "visits", "value")


def tree_shapes(trees: Iterable[Union[Tree, dict[str, Any]]], keys: Iterable[str] = SHAPE_FIELDS,
                digits: Optional[int] = 9) -> dict[str, list[tuple]]:
    """Each tree's nodes as tuples of ``keys`` (:class:`Node` field names), keyed by question id: what
    two runs compare to say they grew the same trees (the benchmarks' ``same_trees``, the resume and
    batch-invariance tests).

    Keyed, not listed, because an asynchronous forest yields trees in the order they finish. Float
    fields are rounded to ``digits`` so a value read back from a shard compares equal to the one
    searched (``digits=None``: compared exactly, for the bit-identical guarantees). ``trees`` may
    be :class:`Tree` objects or their ``to_dict`` form (a stored line).
    """
    keys = tuple(keys)
    names = [f.name for f in fields(Node)]
    unknown = [k for k in keys if k not in names]
    if unknown:
        raise ValueError(f"unknown node fields {unknown}; a Node has {names}")

    def cell(value):
        return round(value, digits) if isinstance(value, float) and digits is not None else value

    shapes: dict[str, list[tuple]] = {}
    for tree in trees:
        tree = Tree.from_dict(tree) if isinstance(tree, dict) else tree
        shapes[tree.question.id] = [tuple(cell(getattr(n, k)) for k in keys) for n in tree.nodes]
    return shapes
