"""The evolution report: accuracy of every evaluated policy under every selector."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

from meds3.evolve.stages import StageResult

COLUMNS = ("policy", "dataset", "selector", "accuracy", "questions", "tokens_per_question")


def eval_rows(policy: str, result: StageResult) -> list[dict[str, Any]]:
    """Rows of one evaluation stage, tagged with the policy evaluated (a selector run under a
    thinking budget is labelled ``selector@budget``)."""
    out = []
    for row in result.summary.get("results") or []:
        selector = row["selector"] if row.get("budget") is None else f"{row['selector']}@{row['budget']}"
        out.append({"policy": policy, **{c: row.get(c) for c in COLUMNS[1:]}, "selector": selector})
    return out


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table: one line per (policy, dataset), one column per selector."""
    selectors = list(dict.fromkeys(r["selector"] for r in rows))
    keys = list(dict.fromkeys((r["policy"], r["dataset"]) for r in rows))
    acc = {(r["policy"], r["dataset"], r["selector"]): r["accuracy"] for r in rows}
    count = {(r["policy"], r["dataset"]): r["questions"] for r in rows}
    lines = ["| policy | dataset | questions | " + " | ".join(selectors) + " |",
             "|---|---|---|" + "---|" * len(selectors)]
    for policy, dataset in keys:
        cells = [_pct(acc.get((policy, dataset, s))) for s in selectors]
        lines.append(f"| {policy} | {dataset} | {count[(policy, dataset)]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}"


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
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(out: Path, evals: Sequence[tuple[str, StageResult]], stages: Sequence[StageResult]) -> dict[str, Any]:
    """Write ``report.json``, ``report.md``, ``report.csv`` and ``accuracy_by_iteration.png``.

    Returns:
        ``{"rows": [...], "stages": [...], "table": markdown}``.
    """
    rows = [row for policy, result in evals for row in eval_rows(policy, result)]
    table = format_table(rows) if rows else "(no evaluation rows)"
    report = {
        "rows": rows,
        "stages": [{"stage": s.name, "skipped": s.skipped, "seconds": round(s.seconds, 2)} for s in stages],
        "table": table,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text("# Self-evolution report\n\nAccuracy (%) by selector.\n\n" + table + "\n",
                                   encoding="utf-8")
    with open(out / "report.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    plot_accuracy(rows, out / "accuracy_by_iteration.png")
    return report
