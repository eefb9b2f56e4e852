"""Accuracy tables (JSON, CSV, Markdown) and plots (accuracy vs N, accuracy vs budget)."""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional, Sequence

from meds3.infer.sampler import Response
from meds3.infer.selectors import get_selector, needs_prm
from meds3.io import atomic_open, atomic_write_figure, atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

COLUMNS = ["dataset", "budget", "selector", "n", "questions", "accuracy", "ci_low", "ci_high", "correct", "answered",
           "tokens_per_question"]


def n_grid(n: int) -> list[int]:
    """Sample counts of the accuracy-vs-N curve: 1, 2, 4, ... below ``n``, then ``n``."""
    grid, k = [], 1
    while k < n:
        grid.append(k)
        k *= 2
    return grid + [n]


def score_selector(name: str, questions: Sequence[Sequence[Response]], n: Optional[int] = None) -> dict[str, Any]:
    """Accuracy of one selector over questions, using each question's first ``n`` responses.

    A question counts as correct when the chosen answer's representative response was
    verified correct; no answer counts as wrong. ``ci_low``/``ci_high``: the 95% percentile
    bootstrap interval over questions (:func:`meds3.eval.stats.bootstrap_ci`).
    """
    from meds3.eval.stats import bootstrap_ci

    select = get_selector(name)
    outcomes: list[bool] = []
    answered = tokens = 0
    for rs in questions:
        rs = list(rs[:n] if n else rs)
        scores = [r.step_scores for r in rs] if needs_prm(name) else None
        chosen = select([r.answer for r in rs], scores)
        answered += chosen.answer is not None
        outcomes.append(bool(chosen.answer is not None and rs[chosen.index].correct))
        tokens += sum(r.num_tokens for r in rs)
    q, correct = len(questions), sum(outcomes)
    low, high = bootstrap_ci(outcomes)
    return {"selector": name, "n": n or (len(questions[0]) if questions else 0), "questions": q,
            "accuracy": round(correct / q, 4) if q else 0.0, "ci_low": low, "ci_high": high, "correct": correct,
            "answered": round(answered / q, 4) if q else 0.0,
            "tokens_per_question": round(tokens / q, 1) if q else 0.0}


def accuracy_rows(saved: dict, selectors: Sequence[str]) -> tuple[list[dict], list[dict]]:
    """Rows of the main table (full N, every budget) and of the accuracy-vs-N curve.

    Args:
        saved: ``(dataset, Run) -> per-question response lists``.
        selectors: selector names; PRM selectors are skipped (logged) where scores are missing.
    """
    rows, vs_n = [], []
    skipped = set()
    for (dataset, run), questions in saved.items():
        if not questions:
            continue
        head = {"dataset": dataset, "budget": run.budget}
        if run.kind == "greedy":
            rows.append({**head, **score_selector("majority", questions), "selector": "greedy"})
            continue
        for name in selectors:
            if needs_prm(name) and any(r.step_scores is None for rs in questions for r in rs):
                skipped.add(name)
                continue
            rows.append({**head, **score_selector(name, questions, run.n)})
            for k in n_grid(run.n):
                vs_n.append({**head, **score_selector(name, questions, k)})
    if skipped:
        logger.warning("no PRM step scores: skipped %s (give prm=... and rerun with --rescore)",
                       ", ".join(sorted(skipped)))
    return [{c: r[c] for c in COLUMNS} for r in rows], [{c: r[c] for c in COLUMNS} for r in vs_n]


def format_ci(row: dict[str, Any]) -> str:
    """``"12.0-30.5"`` (percent) from a row's ``ci_low``/``ci_high``; ``"-"`` when absent."""
    if row.get("ci_low") is None or row.get("ci_high") is None:
        return "-"
    return f"{100 * row['ci_low']:.1f}-{100 * row['ci_high']:.1f}"


def _budget_label(b: Optional[int]) -> str:
    return "none" if b is None else str(b)


def markdown_table(rows: Sequence[dict]) -> str:
    """Accuracy per selector (rows) and dataset (columns, with question counts), per budget,
    then the long table with tokens per question."""
    lines = []
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    for budget in dict.fromkeys(r["budget"] for r in rows):
        sub = [r for r in rows if r["budget"] == budget]
        qs = {r["dataset"]: r["questions"] for r in sub}
        lines.append(f"Maximum thinking budget: {_budget_label(budget)}\n")
        lines.append("| selector | N | " + " | ".join(f"{d} (n={qs.get(d, 0)})" for d in datasets) + " | mean |")
        lines.append("|---|---|" + "---|" * (len(datasets) + 1))
        by_sel: dict[str, dict[str, dict]] = defaultdict(dict)
        for r in sub:
            by_sel[r["selector"]][r["dataset"]] = r
        for sel, cells in by_sel.items():
            accs = [cells[d]["accuracy"] for d in datasets if d in cells]
            n = next(iter(cells.values()))["n"]
            vals = " | ".join(f"{100 * cells[d]['accuracy']:.1f}" if d in cells else "-" for d in datasets)
            lines.append(f"| {sel} | {n} | {vals} | {100 * sum(accs) / len(accs):.1f} |")
        lines.append("")
    lines.append("| dataset | budget | selector | N | questions | accuracy | 95% CI | answered | tokens/question |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lines.append(f"| {r['dataset']} | {_budget_label(r['budget'])} | {r['selector']} | {r['n']} | {r['questions']} "
                     f"| {100 * r['accuracy']:.1f} | {format_ci(r)} | {100 * r['answered']:.1f} "
                     f"| {r['tokens_per_question']:.0f} |")
    return "\n".join(lines) + "\n"


def write_tables(out: Path, summary: dict[str, Any]) -> None:
    """``results.json``, ``results.csv`` (main rows) and ``results.md``."""
    atomic_write_json(out / "results.json", summary)
    with atomic_open(out / "results.csv", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(summary["results"])
    atomic_write_text(out / "results.md", markdown_table(summary["results"]))


def write_paper(out: Path, rows: Sequence[dict], column_order: Any = None, reference: Any = None,
                policy: Optional[str] = None) -> dict[str, Any]:
    """The paper-style report ``paper_report.{md,csv,json,png}`` of the main rows
    (:func:`meds3.eval.paper.write_paper_report`); ``policy`` labels its computed rows."""
    from meds3.eval.paper import write_paper_report

    return write_paper_report(out, [{**r, "policy": policy} if policy else r for r in rows], column_order, reference)


def write_plots(out: Path, rows: Sequence[dict], vs_n: Sequence[dict]) -> None:
    """``accuracy_vs_n.png`` and ``accuracy_vs_budget.png``, one panel per dataset."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plots (pip install matplotlib)")
        return
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    if not datasets:
        return
    budgets = list(dict.fromkeys(r["budget"] for r in rows))
    first_budget = budgets[0]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.6), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        curves: dict[str, list] = defaultdict(list)
        for r in vs_n:
            if r["dataset"] == d and r["budget"] == first_budget:
                curves[r["selector"]].append((r["n"], 100 * r["accuracy"]))
        for sel, pts in curves.items():
            ax.plot(*zip(*sorted(pts)), marker="o", label=sel)
        for r in rows:
            if r["dataset"] == d and r["budget"] == first_budget and r["selector"] == "greedy":
                ax.axhline(100 * r["accuracy"], color="grey", linestyle="--", label="greedy")
        ax.set_xscale("log", base=2)
        ns = sorted({n for pts in curves.values() for n, _ in pts})
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.minorticks_off()
        ax.set_title(f"{d} (budget {_budget_label(first_budget)})")
        ax.set_xlabel("N (responses per question)")
        ax.set_ylabel("accuracy (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write_figure(fig, out / "accuracy_vs_n.png", dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.6), squeeze=False)
    labels = [_budget_label(b) for b in budgets]
    for ax, d in zip(axes[0], datasets):
        curves = defaultdict(dict)
        for r in rows:
            if r["dataset"] == d:
                curves[r["selector"]][_budget_label(r["budget"])] = 100 * r["accuracy"]
        for sel, pts in curves.items():
            xs = [i for i, lab in enumerate(labels) if lab in pts]
            ax.plot(xs, [pts[labels[i]] for i in xs], marker="o", label=sel)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_title(d)
        ax.set_xlabel("maximum thinking tokens")
        ax.set_ylabel("accuracy (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write_figure(fig, out / "accuracy_vs_budget.png", dpi=120)
    plt.close(fig)
