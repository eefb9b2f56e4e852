"""Render a search tree as indented text for the terminal."""

from __future__ import annotations

from meds3.mcts.node import Node, Tree

VERDICT = {True: "correct", False: "wrong", None: "unverifiable"}


def shorten(text: str, width: int) -> str:
    """One line of at most ``width`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: max(width - 1, 1)] + "…"


def node_label(node: Node, width: int) -> str:
    parts = [f"#{node.id} {node.kind}", f"V={node.value:.3f}", f"N={node.visits}"]
    if node.rollout_value is not None:
        parts.append(f"R={node.rollout_value:.2f} ({node.rollout_correct}/{node.rollout_count})")
    if node.kind == "finish":
        parts.append(f"{VERDICT[node.verdict]}" + (f" [{node.answer}]" if node.answer is not None else ""))
    elif node.failed:
        parts.append(f"failed: {node.failed}")
    return "  ".join(parts) + "  " + shorten(node.step, width)


def format_tree(tree: Tree, width: int = 70) -> str:
    """The tree as text: a header line, then one line per node with box-drawing indentation."""
    q = tree.question
    head = (f"{q.id} [{tree.status}{': ' + tree.stop_reason if tree.stop_reason else ''}] "
            f"{len(tree.nodes)} nodes, {len(tree.correct_leaves())} correct leaves, {tree.tokens} tokens, "
            f"gold {q.answer}")
    if tree.error:
        head += f"\n  error: {tree.error}"
    lines = [head, shorten(q.question, width + 40)]

    def walk(node_id: int, prefix: str, last: bool) -> None:
        node = tree.nodes[node_id]
        lines.append(prefix + ("└─ " if last else "├─ ") + node_label(node, width))
        kids = node.children
        for i, child in enumerate(kids):
            walk(child, prefix + ("   " if last else "│  "), i == len(kids) - 1)

    walk(0, "", True)
    return "\n".join(lines)
