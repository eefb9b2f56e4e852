"""TRL stepwise-supervision export of PRM data: ``{"prompt": str, "completions": [str, ...],
"labels": [bool, ...]}``, one label per completion step (TRL's "stepwise supervision" dataset
type, read by TRL's ``PRMTrainer``: ``True`` means the step is good).

Which trajectories: :func:`meds3.train.data.prm_records`, the selection meds3's PRM trainer
uses (correct and incorrect paths, questions with both, deduplicated). Labels: step k is
``True`` when its backed-up value is ``>= threshold`` (:func:`hard_labels`, the rule of meds3's
``loss: hard``, default threshold 0.5).

Layout (shared with :class:`~meds3.export.trl_scorer.TRLPRMScorer`, which must tokenize a
trajectory the way the trainer saw it):

- ``prompt``: the question in meds3's template-free chat layout (``System: ...``, ``User: ...``,
  ``Assistant: ``) followed by Step 0 (the search root, whose value is the question's solve
  rate, not a step's: meds3 does not label it either) and the step separator, so Step 1 starts
  on its own line as it does for the policy.
- ``completions``: ``"Step 1: ..."``, ``"Step 2: ..."``, headers included (they are part of the
  text the policy writes), without separators: TRL appends its ``step_separator`` after every
  step and puts the label on the separator's last token.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from meds3.data.prompts import PromptConfig, step_header
from meds3.data.question import MedQuestion
from meds3.mcts.node import Tree
from meds3.train.data import PRMDataConfig, prm_records
from meds3.train.labels import TrajectoryTokens, chat_head

DEFAULT_THRESHOLD = 0.5  # the default of PRMTrainConfig.threshold (meds3's "hard" PRM loss)


def check_threshold(threshold: float) -> None:
    """Raises ValueError unless ``threshold`` is in (0, 1] (as ``PRMTrainConfig`` requires)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")


def hard_labels(values: Sequence[float], threshold: float = DEFAULT_THRESHOLD) -> list[bool]:
    """Binary step labels from backed-up values: ``value >= threshold`` (the rule
    :func:`meds3.train.prm.prm_loss` applies with ``loss="hard"``).

    Raises:
        ValueError: a threshold outside (0, 1] or a value outside [0, 1], naming the step.
    """
    check_threshold(threshold)
    for k, v in enumerate(values):
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"step {k}: value {v} is outside [0, 1]")
    return [float(v) >= threshold for v in values]


def stepwise_prompt(question: MedQuestion, root_step: str, prompt: PromptConfig | None = None) -> str:
    """The ``prompt`` field: the template-free chat head, Step 0 and the step separator."""
    config = prompt or PromptConfig()
    return chat_head(question, None, config) + step_header(0, config) + root_step.strip() + config.step_separator


def stepwise_completions(steps: Sequence[str], prompt: PromptConfig | None = None) -> list[str]:
    """The ``completions`` field: the steps after Step 0 (``steps[0]``), each with its header."""
    config = prompt or PromptConfig()
    return [step_header(k, config) + s.strip() for k, s in enumerate(steps) if k]


def stepwise_record(record: dict[str, Any], threshold: float = DEFAULT_THRESHOLD,
                    prompt: PromptConfig | None = None) -> dict[str, Any]:
    """One record of :func:`~meds3.train.data.prm_records` in TRL's stepwise format (plus its
    ``question_id``).

    Raises:
        ValueError: see :func:`hard_labels`.
    """
    question = MedQuestion.from_dict(record["question"])
    steps, values = record["steps"], record["values"]
    return {"prompt": stepwise_prompt(question, steps[0], prompt),
            "completions": stepwise_completions(steps, prompt),
            "labels": hard_labels(values[1:], threshold), "question_id": record["question_id"]}


def prm_export(trees: Iterable[Tree], config: PRMDataConfig | None = None, threshold: float = DEFAULT_THRESHOLD,
               prompt: PromptConfig | None = None) -> list[dict[str, Any]]:
    """Stepwise-supervision records for the trajectories meds3's PRM trainer selects from
    ``trees`` (its order: per question, correct paths then incorrect ones). A trajectory with
    no step after Step 0 is left out: it has nothing to label."""
    return [stepwise_record(r, threshold, prompt) for r in prm_records(trees, config, prompt) if len(r["steps"]) > 1]


def stepwise_tokens(tokenizer: Any, prompt_text: str, completions: Sequence[str],
                    step_separator: str = "\n") -> TrajectoryTokens:
    """Token ids of a stepwise record laid out as TRL's ``PRMTrainer.tokenize_row`` does (the
    prompt and each step tokenized alone, BOS before the prompt when the tokenizer has one, the
    separator's ids after each step), and where each score is read.

    Returns:
        ``step_ends[0]`` is the prompt's last token (Step 0, which is never trained);
        ``step_ends[k]`` for k >= 1 is the last separator token after step k, the position that
        TRL labels.

    Raises:
        ValueError: an empty prompt or a step with no tokens.
    """
    ids = list(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    if not ids:
        raise ValueError("the prompt has no tokens")
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    separator = list(tokenizer.encode(step_separator, add_special_tokens=False))
    response_start, ends = len(ids), [len(ids) - 1]
    for k, step in enumerate(completions, start=1):
        step_ids = list(tokenizer(step, add_special_tokens=False)["input_ids"])
        if not step_ids:
            raise ValueError(f"step {k} has no tokens")
        ids += step_ids + separator
        ends.append(len(ids) - 1)
    text = prompt_text + "".join(step + step_separator for step in completions)
    return TrajectoryTokens(ids, response_start, ends, text)
