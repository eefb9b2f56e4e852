"""The README cards meds3 pushes with a model or dataset (:mod:`meds3.hub`): YAML front matter
from ``huggingface_hub``'s card data, then what it is, how to load it, the training settings read
from the run's ``config.yaml``, the loss summary and an evaluation table."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

# Settings left out of a card: local paths, and the prompt (recorded in meds3_train.json).
_PRIVATE_SETTINGS = ("trees", "output_dir", "prompt", "base_model", "seeds")


def flat_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``config.yaml`` settings as ``dotted.key -> value``, without local paths and the prompt."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if not prefix and key in _PRIVATE_SETTINGS:
            continue
        if isinstance(value, dict):
            out.update(flat_settings(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _table(rows: dict[str, Any], header: tuple[str, str]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| `{k}` | {json.dumps(v) if not isinstance(v, str) else v} |" for k, v in rows.items()]
    return "\n".join(lines)


def eval_table(report: str | os.PathLike) -> str:
    """The markdown results table of a ``meds3 eval`` output folder or a ``.md`` file."""
    path = Path(report)
    if path.is_dir():
        path = next((p for p in (path / "paper_report.md", path / "results.md") if p.is_file()), path / "results.md")
    if not path.is_file():
        raise FileNotFoundError(f"{report}: no eval report (results.md of a meds3 eval output)")
    return path.read_text(encoding="utf-8").strip()


_USAGE = {
    "policy": """```python
from peft import PeftModel
from transformers import AutoModelForCausalLM

from meds3.engines import resolve_model
from meds3.hub import resolve_hub

adapter = resolve_hub("hf://{repo}")  # a local snapshot of this repository
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(resolve_model("{base}")), adapter)
```

In meds3 configs, name it directly: `adapter: hf://{repo}`.""",
    "prm": """```python
from meds3.train.scorer import PRMScorer

scorer = PRMScorer("hf://{repo}")
scores = scorer.score(question, [steps])  # one probability per step
```

In meds3 configs: `prm: hf://{repo}`.""",
}
_ABOUT = {
    "policy": "A LoRA policy adapter trained by meds3 with supervised "
              "fine-tuning on the correct trajectories of its MCTS rollout trees.",
    "prm": "A process reward model trained by meds3: a LoRA adapter "
           "with a one-logit token-classification head; the sigmoid of the logit at a step's last token "
           "is the probability that the step lies on a correct path.",
}
_SUMMARY_KEYS = ("records", "examples", "questions", "steps", "epochs", "first_loss", "last_loss", "seconds")


def model_card(repo_id: str, kind: str, base: str, base_hub_id: Optional[str], settings: dict[str, Any],
               summary: dict[str, Any], datasets: Sequence[str], report: Optional[str]):
    """The ``huggingface_hub.ModelCard`` of a pushed policy adapter (``kind="policy"``,
    ``library_name: peft``) or PRM (``"prm"``, ``library_name: meds3``).

    Args:
        base: the base model as trained (a path, alias or Hub id); ``base_hub_id``: its Hub id or None.
        settings: the run's ``config.yaml``; summary: its ``summary.json`` (either may be empty).
        datasets: Hub dataset ids for the card's ``datasets``; report: a markdown eval table or None.
    """
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        base_model=base_hub_id, library_name="peft" if kind == "policy" else "meds3",
        datasets=list(datasets) or None, tags=["meds3", "lora", "medical", "policy" if kind == "policy" else "prm"],
        pipeline_tag="text-generation" if kind == "policy" else "token-classification",
    )
    link = f" ([{base_hub_id}](https://huggingface.co/{base_hub_id}))" if base_hub_id and base_hub_id != base else ""
    parts = [f"# {repo_id}", _ABOUT[kind], f"Base model: `{base or 'unknown'}`{link}",
             "## Use", _USAGE[kind].format(repo=repo_id, base=base_hub_id or base)]
    if settings:
        parts += ["## Training settings", "From `config.yaml` (the full job config is in this repository).",
                  _table(flat_settings(settings), ("setting", "value"))]
    if summary:
        parts += ["## Training", _table({k: summary[k] for k in _SUMMARY_KEYS if k in summary}, ("measure", "value"))]
    if report:
        parts += ["## Evaluation", report]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(parts) + "\n")


_DATASET_ABOUT = {
    "trees": "MCTS rollout trees written by meds3 (`meds3 rollout`): one JSON tree per line in "
             "`trees/*.jsonl`; a question searched again has a later line, and readers keep its newest tree.",
    "sft": "Policy SFT records written by `meds3 train policy` (`data.jsonl`): the correct trajectories "
           "its LoRA policy was trained on.",
    "prm": "PRM records written by `meds3 train prm` (`data.jsonl`): trajectories with their steps' "
           "backed-up values, the PRM's training labels.",
}


def dataset_card(repo_id: str, kind: str, rows: int, data_files: str, settings: dict[str, Any]):
    """The ``huggingface_hub.DatasetCard`` of pushed trees or records: ``rows`` lines in
    ``data_files`` (a glob in the repository, declared so ``datasets.load_dataset`` finds them)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(pretty_name=repo_id.split("/", 1)[1], tags=["meds3", "medical", kind],
                           configs=[{"config_name": "default", "data_files": [{"split": "train", "path": data_files}]}])
    load = (f'from meds3.train.data import iter_trees\n\ntrees = list(iter_trees("hf://datasets/{repo_id}"))'
            if kind == "trees" else
            f'from datasets import load_dataset\n\nrecords = load_dataset("{repo_id}", split="train")')
    parts = [f"# {repo_id}", _DATASET_ABOUT[kind], f"{rows} {'trees' if kind == 'trees' else 'records'}.",
             "## Use", f"```python\n{load}\n```"]
    if settings:
        parts += ["## Settings", _table(flat_settings(settings), ("setting", "value"))]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(parts) + "\n")
