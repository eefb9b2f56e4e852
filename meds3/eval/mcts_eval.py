"""PRM-guided MCTS as an evaluation strategy (``EvalConfig.mcts``): one search per question,
saved per dataset in ``responses/<dataset>.prm-mcts.jsonl``, resumable, tabulated as the
selector ``prm-mcts`` beside the sampling selectors."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from meds3.config import to_dict
from meds3.data.question import MedQuestion
from meds3.io import append_lines

logger = logging.getLogger(__name__)

SELECTOR = "prm-mcts"


def mcts_path(out: Path, dataset: str) -> Path:
    return out / "responses" / f"{dataset}.{SELECTOR}.jsonl"


def read_mcts(path: Path) -> dict[str, dict[str, Any]]:
    """Question id -> saved search result (missing file: empty).

    Raises:
        DataError: a malformed line (file and line named).
    """
    from meds3.eval.runner import read_records

    return read_records(path, lambda record: record, "search")


def _check_key(out: Path, config, force: bool = False) -> None:
    """Saved searches must come from the same policy, PRM and search settings; with ``force``
    saved searches made with other settings are moved to ``superseded-mcts-<time>/`` (the
    sampled responses stay) and the searches start afresh."""
    from meds3.config import ConfigError
    from meds3.eval.runner import check_saved_settings

    key = {"model": config.model, "adapter": config.adapter, "prm": config.prm,
           "search": to_dict(config.mcts_search), "prompt": to_dict(config.prompt)}
    what = "saved PRM-guided searches used"
    try:
        check_saved_settings(out / "mcts.json", key, what)
    except ConfigError:
        if not force:
            raise
        aside = out / f"superseded-mcts-{time.strftime('%Y%m%d-%H%M%S')}"
        aside.mkdir(parents=True, exist_ok=True)
        for path in [out / "mcts.json", *(out / "responses").glob(f"*.{SELECTOR}.jsonl")]:
            os.replace(path, aside / path.name)
        logger.warning("%s: PRM-guided searches made with other settings moved to %s (--force)", out, aside)
        check_saved_settings(out / "mcts.json", key, what)


def run_mcts(config, out: Path, datasets: dict[str, list[MedQuestion]], engine: Any, scorer: Any,
             progress: bool, force: bool = False) -> Any:
    """Search every question without a saved result; returns the engine (built here if needed).

    Raises:
        ConfigError: saved searches made with other settings (without ``force``).
    """
    from tqdm import tqdm

    from meds3.infer.mcts import prm_guided_mcts

    _check_key(out, config, force)
    todo = [(name, [q for q in qs if q.id not in read_mcts(mcts_path(out, name))]) for name, qs in datasets.items()]
    total = sum(len(qs) for _, qs in todo)
    if not total:
        return engine
    if engine is None:
        from meds3.engines.config import build_engine_from

        engine = build_engine_from(config)
    bar = tqdm(total=total, desc=SELECTOR, unit="q", disable=not progress)
    for name, qs in todo:
        for k in range(0, len(qs), config.chunk_size):
            chunk = qs[k:k + config.chunk_size]
            answers = prm_guided_mcts(chunk, engine, scorer, config.mcts_search, config.prompt, config.adapter,
                                      live_trees=config.chunk_size)
            append_lines(mcts_path(out, name), [json.dumps(a.to_record(), ensure_ascii=False) for a in answers])
            bar.update(len(chunk))
    bar.close()
    return engine


def mcts_rows(out: Path, datasets: dict[str, list[MedQuestion]], max_nodes: int) -> list[dict[str, Any]]:
    """One table row per dataset with saved searches (same columns as the selector rows)."""
    from meds3.eval.stats import bootstrap_ci

    rows = []
    for name, qs in datasets.items():
        saved = read_mcts(mcts_path(out, name))
        records = [saved[q.id] for q in qs if q.id in saved]
        if not records:
            continue
        outcomes = [bool(r["answer"] is not None and r["correct"]) for r in records]
        low, high = bootstrap_ci(outcomes)
        q = len(records)
        rows.append({"dataset": name, "budget": None, "selector": SELECTOR, "n": max_nodes, "questions": q,
                     "accuracy": round(sum(outcomes) / q, 4), "ci_low": low, "ci_high": high,
                     "correct": sum(outcomes), "answered": round(sum(r["answer"] is not None for r in records) / q, 4),
                     "tokens_per_question": round(sum(r["tokens"] for r in records) / q, 1)})
    return rows
