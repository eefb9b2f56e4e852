"""A paper-style report: one row per (policy, selector), one column per dataset in a paper's column order.

Each cell is the accuracy (%) with its 95% percentile-bootstrap interval over questions; the
``mean`` column is the unweighted mean over the row's datasets (as papers report it), its
interval from resampling every dataset's questions and averaging the resampled accuracies.
``answered`` is the mean share of questions with an answer and ``tokens/answer`` the mean number
of generated tokens spent per question's answer (every response that fed it), both unweighted
over datasets. Reference rows (published numbers, :func:`load_reference`) are shown apart,
labelled ``(quoted: <source>)``, and never enter a computed row or mean.

Writers: ``paper_report.md``, ``paper_report.csv``, ``paper_report.json`` and ``paper_report.png``.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

from meds3.eval.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, bootstrap_ci
from meds3.io import atomic_open, atomic_write_figure, atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

# MedS3's eleven evaluation sets, then m1's, by the names meds3 uses (meds3.data.sources, the
# file stems `meds3 data fetch` writes). Datasets not listed are appended alphabetically.
MEDS3_COLUMNS = ["medqa", "medqa_5opt", "medmcqa", "pubmedqa", "mmlu_medical", "mmlu_nutrition_virology", "bioasq",
                 "pubhealth", "drugdose", "biomrc", "healthfact", "ddxplus", "seer"]
M1_COLUMNS = ["medmcqa", "medqa", "pubmedqa", "mmlu_pro_health", "gpqa_medical", "lancet", "medbullets_op4",
              "medbullets_op5", "medxpertqa_text", "nejm"]
PAPER_COLUMNS = list(dict.fromkeys(MEDS3_COLUMNS + M1_COLUMNS))
COLUMN_ORDERS = {"meds3": MEDS3_COLUMNS, "m1": M1_COLUMNS, "paper": PAPER_COLUMNS}
MEAN = "mean"
CSV_COLUMNS = ["kind", "policy", "selector", "source", "dataset", "accuracy", "ci_low", "ci_high", "questions",
               "answered", "tokens_per_answer"]


def order_columns(datasets: Sequence[str], column_order: Optional[Sequence[str] | str] = None) -> list[str]:
    """``datasets`` in ``column_order``: dataset names and/or presets (``"meds3"``, ``"m1"``,
    ``"paper"``: :data:`COLUMN_ORDERS`), or one preset name; default (None or empty) ``"paper"``.
    Datasets it does not list follow, alphabetically."""
    if isinstance(column_order, str):
        if column_order not in COLUMN_ORDERS:
            raise ValueError(f"unknown column order {column_order!r}; known: {', '.join(COLUMN_ORDERS)} "
                             "or a list of dataset names")
        column_order = [column_order]
    names: list[str] = []
    for item in column_order or ["paper"]:
        names += COLUMN_ORDERS.get(item, [item])
    present = set(datasets)
    known = [d for d in dict.fromkeys(names) if d in present]
    return known + sorted(present - set(known))


def load_reference(path: str | Path) -> list[dict[str, Any]]:
    """Published rows from a YAML file: a list (or ``{"rows": [...]}``) of ``{name, source,
    values: {dataset: accuracy in percent}}``; a null value (not yet copied) is kept as missing.

    Raises:
        ValueError: a row without ``name`` or ``source``, or a value that is not a number in [0, 100].
    """
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
    rows = (data.get("rows") or []) if isinstance(data, dict) else data
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not row.get("name") or not row.get("source"):
            raise ValueError(f"{path}: reference row {i} needs 'name' and 'source'")
        values = {}
        for dataset, value in (row.get("values") or {}).items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 <= value <= 100):
                raise ValueError(f"{path}: {row['name']}: {dataset}: {value!r} is not a percentage in [0, 100]")
            values[str(dataset)] = None if value is None else float(value)
        out.append({"name": str(row["name"]), "source": str(row["source"]), "values": values})
    return out


def _selector_label(row: dict[str, Any]) -> str:
    return row["selector"] if row.get("budget") is None else f"{row['selector']}@{row['budget']}"


def _correct(row: dict[str, Any]) -> int:
    if row.get("correct") is not None:
        return int(row["correct"])
    return int(round(float(row["accuracy"]) * int(row["questions"])))


def mean_ci(counts: Sequence[tuple[int, int]], level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
            seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Bootstrap interval of the unweighted mean accuracy over datasets.

    Each resample draws every dataset's questions with replacement (its accuracy: a binomial
    draw of ``questions`` at the observed accuracy, the same distribution as resampling its 0/1
    outcomes) and averages the datasets' accuracies.

    Args:
        counts: ``(correct, questions)`` per dataset.

    Returns:
        ``(low, high)`` as fractions; ``(0.0, 0.0)`` for no datasets.
    """
    import numpy as np

    counts = [(c, q) for c, q in counts if q]
    if not counts:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = np.zeros(resamples)
    for c, q in counts:
        means += rng.binomial(q, c / q, size=resamples) / q
    means /= len(counts)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return round(float(low), 4), round(float(high), 4)


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _pct(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(100 * float(x), 2)


def paper_table(results: Sequence[dict[str, Any]], column_order: Optional[Sequence[str] | str] = None,
                reference: Optional[Sequence[dict[str, Any]] | str | Path] = None,
                seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """The paper-style table of eval result rows (:func:`meds3.eval.report.accuracy_rows`).

    Args:
        results: rows with ``dataset``, ``selector``, ``accuracy``, ``questions`` and, when known,
            ``policy`` (default ``"policy"``), ``budget``, ``correct``, ``ci_low``/``ci_high``,
            ``answered``, ``tokens_per_question``.
        column_order: see :func:`order_columns`.
        reference: published rows, or the path of their YAML file (:func:`load_reference`).
        seed: seed of the bootstrap intervals (cells recomputed here and the mean).

    Returns:
        ``{"columns": [...datasets, "mean"], "rows": [...], "reference": [...]}``; every number a
        percentage. A computed row: ``policy``, ``selector``, ``cells`` (dataset -> ``{accuracy,
        ci_low, ci_high, questions}``), ``mean`` (``{accuracy, ci_low, ci_high, datasets}``),
        ``answered``, ``tokens_per_answer``. A reference row: ``name``, ``source``, ``label``,
        ``cells`` (dataset -> ``{accuracy}``), ``mean`` over its values on the table's datasets
        (None unless it has all of them).
    """
    if isinstance(reference, (str, Path)):
        reference = load_reference(reference)
    reference = list(reference or [])
    datasets = order_columns([r["dataset"] for r in results], column_order)
    grouped: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in results:
        if r.get("accuracy") is None or not r.get("questions"):
            continue
        grouped.setdefault((str(r.get("policy") or "policy"), _selector_label(r)), {})[r["dataset"]] = r
    rows = []
    for (policy, selector), by_dataset in grouped.items():
        cells = {}
        for d in datasets:
            if d not in by_dataset:
                continue
            r = by_dataset[d]
            if r.get("ci_low") is None or r.get("ci_high") is None:
                c, q = _correct(r), int(r["questions"])
                low, high = bootstrap_ci([1] * c + [0] * (q - c), seed=seed)
            else:
                low, high = r["ci_low"], r["ci_high"]
            cells[d] = {"accuracy": _pct(r["accuracy"]), "ci_low": _pct(low), "ci_high": _pct(high),
                        "questions": int(r["questions"])}
        present = [by_dataset[d] for d in datasets if d in by_dataset]
        low, high = mean_ci([(_correct(r), int(r["questions"])) for r in present], seed=seed)
        mean_acc = _mean([100 * float(r["accuracy"]) for r in present])
        tokens = _mean([r.get("tokens_per_question") for r in present])
        rows.append({"policy": policy, "selector": selector, "cells": cells,
                     "mean": {"accuracy": None if mean_acc is None else round(mean_acc, 2),
                              "ci_low": _pct(low), "ci_high": _pct(high), "datasets": len(present)},
                     "answered": _pct(_mean([r.get("answered") for r in present])),
                     "tokens_per_answer": tokens if tokens is None else round(tokens, 1)})
    refs = []
    for ref in reference:
        values = ref.get("values") or {}
        cells = {d: {"accuracy": values[d]} for d in datasets if values.get(d) is not None}
        full = len(cells) == len(datasets) and datasets
        refs.append({"name": ref["name"], "source": ref["source"], "label": f"{ref['name']} (quoted: {ref['source']})",
                     "cells": cells,
                     "mean": {"accuracy": round(_mean([c["accuracy"] for c in cells.values()]), 2) if full else None,
                              "datasets": len(cells)}})
    return {"columns": datasets + [MEAN], "rows": rows, "reference": refs}


def _cell(cell: Optional[dict[str, Any]]) -> str:
    if not cell or cell.get("accuracy") is None:
        return "-"
    text = f"{cell['accuracy']:.1f}"
    if cell.get("ci_low") is not None and cell.get("ci_high") is not None:
        text += f" ({cell['ci_low']:.1f}-{cell['ci_high']:.1f})"
    return text


def _num(x: Optional[float], fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def paper_markdown(table: dict[str, Any]) -> str:
    """The table in Markdown: computed rows, then the quoted reference rows below a labelled line."""
    datasets = table["columns"][:-1]
    questions = {}
    for row in table["rows"]:
        for d, c in row["cells"].items():
            questions.setdefault(d, c["questions"])
    head = [f"{d} (n={questions[d]})" if d in questions else d for d in datasets]
    lines = ["Accuracy (%) with 95% bootstrap intervals over questions; mean: unweighted over datasets.", "",
             "| policy | selector | " + " | ".join(head) + " | mean | answered (%) | tokens/answer |",
             "|---|---|" + "---|" * (len(datasets) + 3)]
    for row in table["rows"]:
        cells = " | ".join(_cell(row["cells"].get(d)) for d in datasets)
        lines.append(f"| {row['policy']} | {row['selector']} | {cells} | {_cell(row['mean'])} "
                     f"| {_num(row['answered'], '.1f')} | {_num(row['tokens_per_answer'], '.0f')} |")
    if table["reference"]:
        lines.append("| " + " | ".join(["*published (quoted, not computed here)*"] + [""] * (len(datasets) + 4))
                     + " |")
        for ref in table["reference"]:
            cells = " | ".join(_cell(ref["cells"].get(d)) for d in datasets)
            lines.append(f"| {ref['label']} | | {cells} | {_cell(ref['mean'])} | - | - |")
    return "\n".join(lines) + "\n"


def paper_csv_rows(table: dict[str, Any]) -> list[dict[str, Any]]:
    """Long rows (:data:`CSV_COLUMNS`): one per row and column; ``kind`` is computed or quoted."""
    out = []
    for row in table["rows"]:
        base = {"kind": "computed", "policy": row["policy"], "selector": row["selector"], "source": "",
                "answered": row["answered"], "tokens_per_answer": row["tokens_per_answer"]}
        for d in table["columns"][:-1]:
            if d in row["cells"]:
                c = row["cells"][d]
                out.append({**base, "dataset": d, "accuracy": c["accuracy"], "ci_low": c["ci_low"],
                            "ci_high": c["ci_high"], "questions": c["questions"]})
        m = row["mean"]
        out.append({**base, "dataset": MEAN, "accuracy": m["accuracy"], "ci_low": m["ci_low"],
                    "ci_high": m["ci_high"], "questions": None})
    for ref in table["reference"]:
        base = {"kind": "quoted", "policy": ref["name"], "selector": "", "source": ref["source"], "ci_low": None,
                "ci_high": None, "questions": None, "answered": None, "tokens_per_answer": None}
        for d, c in ref["cells"].items():
            out.append({**base, "dataset": d, "accuracy": c["accuracy"]})
        if ref["mean"]["accuracy"] is not None:
            out.append({**base, "dataset": MEAN, "accuracy": ref["mean"]["accuracy"]})
    return [{k: r.get(k) for k in CSV_COLUMNS} for r in out]


def plot_paper(table: dict[str, Any], path: Path) -> Optional[Path]:
    """Grouped bars per column (datasets, mean): computed rows with their intervals, quoted rows
    hatched. None (logged) when matplotlib is missing or there is nothing to draw."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no paper_report.png (pip install matplotlib)")
        return None
    series = [(f"{r['policy']} / {r['selector']}", {**r["cells"], MEAN: r["mean"]}, False) for r in table["rows"]]
    series += [(r["label"], {**r["cells"], MEAN: r["mean"]}, True) for r in table["reference"]]
    columns = table["columns"]
    if not series or len(columns) < 2:
        return None
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(columns) * max(1, len(series) / 3)), 4.2))
    for i, (label, cells, quoted) in enumerate(series):
        xs, ys, err = [], [], [[], []]
        for j, col in enumerate(columns):
            cell = cells.get(col) or {}
            if cell.get("accuracy") is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            ys.append(cell["accuracy"])
            lo, hi = cell.get("ci_low"), cell.get("ci_high")
            err[0].append(0.0 if lo is None else max(0.0, cell["accuracy"] - lo))
            err[1].append(0.0 if hi is None else max(0.0, hi - cell["accuracy"]))
        ax.bar(xs, ys, width, label=label, hatch="//" if quoted else None, alpha=0.6 if quoted else 1.0,
               yerr=None if quoted else err, capsize=2)
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Accuracy by dataset (bars: 95% bootstrap CI; hatched: quoted)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def write_paper_report(out: str | Path, results: Sequence[dict[str, Any]],
                       column_order: Optional[Sequence[str] | str] = None,
                       reference: Optional[Sequence[dict[str, Any]] | str | Path] = None,
                       seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Write ``paper_report.{md,csv,json,png}`` in ``out``; returns the table (:func:`paper_table`)."""
    out = Path(out)
    table = paper_table(results, column_order, reference, seed)
    atomic_write_json(out / "paper_report.json", table)
    with atomic_open(out / "paper_report.csv", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(paper_csv_rows(table))
    atomic_write_text(out / "paper_report.md", "# Paper-style report\n\n" + paper_markdown(table))
    plot_paper(table, out / "paper_report.png")
    return table
