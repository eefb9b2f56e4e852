"""Experiment tracking: where training losses and the evolution loop's own metrics go.

The trainers report through transformers' ``report_to`` (``TrainingArguments``); the loop's
metrics (correct-leaf rate, generated tokens, accuracy per selector and dataset) go through
:class:`Tracker`, to the same places: ``"tensorboard"`` (event files, via
``torch.utils.tensorboard``; needs the ``tensorboard`` package, ``pip install 'meds3[tracking]'``),
``"wandb"`` (needs ``wandb``), ``"none"``. ``report_to`` is one name, a comma-separated text
or a list of names.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Optional, Sequence, Union

logger = logging.getLogger(__name__)

#: What :class:`Tracker` writes to; the trainers also accept every other transformers integration.
TRACKER_TARGETS = ("tensorboard", "wandb")


def report_targets(report_to: Union[str, Sequence[str], None]) -> list[str]:
    """``report_to`` as a list of integration names: ``None``/``"none"``/``[]`` -> ``[]``,
    ``"tensorboard,wandb"`` and ``"[tensorboard, wandb]"`` -> ``["tensorboard", "wandb"]``,
    ``"all"`` kept as is.

    Raises:
        ValueError: a name transformers does not know (the known ones listed), or ``"none"``
            beside another name.
    """
    if report_to is None:
        return []
    if isinstance(report_to, str):  # "[a, b]": a list given as a key=value override stays text
        items = report_to.strip().removeprefix("[").removesuffix("]").split(",")
    else:
        items = list(report_to)
    names = [str(n).strip() for n in items if str(n).strip()]
    if "none" in names:
        if len(names) > 1:
            raise ValueError(f"report_to: 'none' cannot go with other names, got {names}")
        return []
    if set(names) <= {"all", *TRACKER_TARGETS}:
        # why: checking other names imports transformers' trainer integrations (torch and all, 10 s
        # or more on a cold start); loading a config, as submit.sh does before a job, needs none of it
        return list(dict.fromkeys(names))
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    known = {"all", *INTEGRATION_TO_CALLBACK}
    for name in names:
        if name not in known:
            raise ValueError(f"report_to: unknown integration {name!r}; use none, "
                             f"{', '.join(sorted(known))} (or a list of them)")
    return list(dict.fromkeys(names))


class Tracker:
    """Write the loop's metrics (name -> number per step) to tensorboard and/or wandb.

    Args:
        report_to: ``"none"``, ``"tensorboard"``, ``"wandb"``, ``"all"`` (both), or a list; names
            transformers knows but the tracker does not (``mlflow``, ...) are logged and left out.
        log_dir: the tensorboard event folder (also wandb's local folder).
        run_name: the wandb run's name (default: the folder's name).

    Raises:
        ValueError: an unknown name in ``report_to``.
        ImportError: ``tensorboard`` or ``wandb`` asked for but not installed (how to install named).
    """

    def __init__(self, report_to: Union[str, Sequence[str], None], log_dir: str | os.PathLike,
                 run_name: Optional[str] = None) -> None:
        names = report_targets(report_to)
        if "all" in names:
            names = [n for n in TRACKER_TARGETS if n != "wandb" or _has_module("wandb")]
        ignored = [n for n in names if n not in TRACKER_TARGETS]
        if ignored:
            logger.warning("report_to: the loop's metrics go to %s only; %s get the trainers' losses alone",
                           " and ".join(TRACKER_TARGETS), ", ".join(ignored))
        self.log_dir = str(log_dir)
        self.targets = [n for n in names if n in TRACKER_TARGETS]
        self._tb = None
        self._wandb = None
        if "tensorboard" in self.targets:
            if not _has_module("tensorboard"):
                raise ImportError("report_to tensorboard needs the tensorboard package: "
                                  "pip install 'meds3[tracking]' (or pip install tensorboard)")
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=self.log_dir)
        if "wandb" in self.targets:
            if not _has_module("wandb"):
                raise ImportError("report_to wandb needs the wandb package: pip install wandb")
            import wandb

            os.makedirs(self.log_dir, exist_ok=True)
            self._wandb = wandb.init(dir=self.log_dir,
                                     name=run_name or os.path.basename(os.path.abspath(self.log_dir)))

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Record ``metrics`` at ``step`` (an iteration); values that are not finite numbers
        (a selector with no accuracy) are left out."""
        clean = {k: float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        if self._tb is not None:
            for name, value in clean.items():
                self._tb.add_scalar(name, value, global_step=step)
            self._tb.flush()  # a live tensorboard shows an iteration as soon as it ends
        if self._wandb is not None:
            self._wandb.log(clean, step=step)

    def close(self) -> None:
        """Flush and close every writer (a second call does nothing)."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def iteration_metrics(rollout: Any = None, eval_rows: Sequence[dict[str, Any]] = (),
                      train: Optional[dict[str, Any]] = None) -> dict[str, float]:
    """The loop's metrics of one iteration, named ``group/metric`` (tensorboard groups by the
    first part).

    Args:
        rollout: the rollout stage's summary (``trees``, ``failed``, ``with_correct_leaf``,
            ``tokens_per_tree``; see :func:`meds3.rollout.runner.summarize`), as a dict or a
            result with ``to_dict()``.
        eval_rows: rows of :func:`meds3.evolve.report.eval_rows` (or an eval summary's
            ``results``): ``dataset``, ``selector``, ``accuracy``, ``tokens_per_question``.
        train: per trainer kind (``"policy"``, ``"prm"``), its ``TrainResult`` (or its dict, or
            a stage summary written before it); skipped runs are left out.

    Returns:
        ``search/trees``, ``search/failed``, ``search/correct_leaf_rate`` (trees with a correct
        leaf / trees), ``search/tokens_per_tree``, ``search/generated_tokens`` (tokens per tree
        x trees), ``accuracy/<dataset>/<selector>``, ``tokens_per_question/<dataset>/<selector>``
        (dataset: the file name without folder and extension), ``train/<kind>_records``,
        ``train/<kind>_last_loss``: what the inputs hold (a missing or null value is left out,
        never written as 0).
    """
    out: dict[str, float] = {}
    rollout = _plain(rollout)
    if rollout:
        trees = rollout.get("trees")
        for key in ("trees", "failed", "tokens_per_tree"):
            if rollout.get(key) is not None:
                out[f"search/{key}"] = float(rollout[key])
        if trees:
            if rollout.get("with_correct_leaf") is not None:
                out["search/correct_leaf_rate"] = float(rollout["with_correct_leaf"]) / float(trees)
            if rollout.get("tokens_per_tree") is not None:
                out["search/generated_tokens"] = float(rollout["tokens_per_tree"]) * float(trees)
    for row in eval_rows:
        dataset = _tag(os.path.splitext(os.path.basename(str(row.get("dataset", ""))))[0])
        selector = _tag(str(row.get("selector", "")))
        for key in ("accuracy", "tokens_per_question"):
            if row.get(key) is not None:
                out[f"{key}/{dataset}/{selector}"] = float(row[key])
    for kind, result in (train or {}).items():
        result = _plain(result)
        if not result or result.get("skipped"):
            continue
        if result.get("records") is not None:
            out[f"train/{kind}_records"] = float(result["records"])
        last = (result.get("metrics") or {}).get("last_loss", result.get("last_loss"))
        if last is not None:
            out[f"train/{kind}_last_loss"] = float(last)
    return out


def _plain(value: Any) -> Optional[dict[str, Any]]:
    """A summary as a dict: typed results through their ``to_dict()``."""
    if value is None or isinstance(value, dict):
        return value
    return value.to_dict()


def _tag(text: str) -> str:
    """A name part without the tag separator ``/`` (tensorboard would nest on it)."""
    return text.replace("/", "_") or "unnamed"
