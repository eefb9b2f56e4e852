"""The evolution report: accuracy of every evaluated policy under every selector."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

from meds3.evolve.stages import StageResult
from meds3.io import atomic_open, atomic_write_figure, atomic_write_json, atomic_write_text

COLUMNS = ("policy", "dataset", "selector", "accuracy", "ci_low", "ci_high", "questions", "tokens_per_question")
SEARCH_COLUMNS = ("iteration", "trees", "failed", "with_correct_leaf", "correct_leaf_rate", "sft_records",
                  "prm_records")


def eval_rows(policy: str, result: StageResult) -> list[dict[str, Any]]:
    """Rows of one evaluation stage, tagged with the policy evaluated (a selector run under a
    thinking budget is labelled ``selector@budget``). The stage's own ``results.json`` is read
    when present, so a ``meds3 eval --rescore`` of the stage shows in the next report."""
    out = []
    for row in stage_results(result):
        selector = row["selector"] if row.get("budget") is None else f"{row['selector']}@{row['budget']}"
        out.append({"policy": policy, **{c: row.get(c) for c in COLUMNS[1:]}, "selector": selector})
    return out


def stage_results(result: StageResult) -> list[dict[str, Any]]:
    """The result rows of one evaluation stage: its ``results.json`` when readable, else the manifest's copy."""
    results = result.summary.get("results") or []
    path = Path(result.directory) / "results.json"
    if path.is_file():
        try:
            results = json.loads(path.read_text(encoding="utf-8")).get("results") or results
        except (json.JSONDecodeError, AttributeError):
            pass  # an unreadable file: the manifest's copy stands
    return list(results)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table: one line per (policy, dataset), one column per selector."""
    selectors = list(dict.fromkeys(r["selector"] for r in rows))
    keys = list(dict.fromkeys((r["policy"], r["dataset"]) for r in rows))
    acc = {(r["policy"], r["dataset"], r["selector"]): r for r in rows}
    count = {(r["policy"], r["dataset"]): r["questions"] for r in rows}
    lines = ["| policy | dataset | questions | " + " | ".join(selectors) + " |",
             "|---|---|---|" + "---|" * len(selectors)]
    for policy, dataset in keys:
        cells = [_pct(acc.get((policy, dataset, s))) for s in selectors]
        lines.append(f"| {policy} | {dataset} | {count[(policy, dataset)]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(row: Any) -> str:
    """Accuracy in percent with its 95% bootstrap interval when the row has one."""
    if row is None or row.get("accuracy") is None:
        return "-"
    text = f"{100 * float(row['accuracy']):.1f}"
    if row.get("ci_low") is not None and row.get("ci_high") is not None:
        text += f" ({100 * row['ci_low']:.0f}-{100 * row['ci_high']:.0f})"
    return text


def search_rows(stages: Sequence[StageResult]) -> list[dict[str, Any]]:
    """Per iteration: trees searched, failed, with a correct leaf, their share, and the SFT and
    PRM records its trainers used (trees of every iteration so far)."""
    by_name = {s.name: s.summary for s in stages}
    out = []
    for name, summary in by_name.items():
        if not name.endswith("/rollout"):
            continue
        it = name.split("/")[0]
        trees = int(summary.get("trees") or 0)
        with_correct = int(summary.get("with_correct_leaf") or 0)
        out.append({"iteration": it, "trees": trees, "failed": summary.get("failed"),
                    "with_correct_leaf": with_correct,
                    "correct_leaf_rate": round(with_correct / trees, 4) if trees else None,
                    "sft_records": by_name.get(f"{it}/policy", {}).get("records"),
                    "prm_records": by_name.get(f"{it}/prm", {}).get("records")})
    return out


def format_search_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :func:`search_rows`."""
    lines = ["| " + " | ".join(SEARCH_COLUMNS) + " |", "|" + "---|" * len(SEARCH_COLUMNS)]
    for r in rows:
        cells = [("-" if r[c] is None else f"{100 * r[c]:.1f} %" if c == "correct_leaf_rate" else str(r[c]))
                 for c in SEARCH_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_accuracy(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Accuracy by policy (base, iter1, ...) for each selector, averaged over datasets."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(dict.fromkeys(r["policy"] for r in rows))
    fig, ax = plt.subplots(figsize=(6, 4))
    for selector in dict.fromkeys(r["selector"] for r in rows):
        ys = []
        for p in policies:
            vals = [r["accuracy"] for r in rows if r["policy"] == p and r["selector"] == selector
                    and r["accuracy"] is not None]
            ys.append(100 * sum(vals) / len(vals) if vals else float("nan"))
        ax.plot(policies, ys, marker="o", label=selector)
    ax.set_xlabel("policy")
    ax.set_ylabel("accuracy (%), mean over datasets")
    ax.set_title("Self-evolution: accuracy by iteration")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def write_report(out: Path, evals: Sequence[tuple[str, StageResult]], stages: Sequence[StageResult],
                 column_order: Any = None, reference: Any = None) -> dict[str, Any]:
    """Write ``report.json``, ``report.md``, ``report.csv`` and ``accuracy_by_iteration.png``, and
    the paper-style ``paper_report.{md,csv,json,png}`` (:mod:`meds3.eval.paper`): one row per
    iteration's policy and selector, ``column_order`` and quoted ``reference`` rows as there.

    Returns:
        ``{"rows": [...], "stages": [...], "table": markdown}``.
    """
    rows = [row for policy, result in evals for row in eval_rows(policy, result)]
    table = format_table(rows) if rows else "(no evaluation rows)"
    search = search_rows(stages)
    report = {
        "rows": rows,
        "search": search,
        "stages": [{"stage": s.name, "skipped": s.skipped, "seconds": round(s.seconds, 2)} for s in stages],
        "table": table,
    }
    atomic_write_json(out / "report.json", report)
    atomic_write_text(
        out / "report.md", "# Self-evolution report\n\n"
        "Accuracy (%) by selector, with 95% bootstrap intervals over questions.\n\n"
        + table + "\n\n## Search\n\nTrees of each iteration; records: what that iteration's trainers used "
        "(trees of every iteration so far).\n\n" + format_search_table(search) + "\n")
    with atomic_open(out / "report.csv", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    plot_accuracy(rows, out / "accuracy_by_iteration.png")
    from meds3.eval.paper import write_paper_report

    write_paper_report(out, [{**row, "policy": policy} for policy, result in evals for row in stage_results(result)],
                       column_order, reference)
    return report
