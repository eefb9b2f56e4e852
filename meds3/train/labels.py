"""Joint tokenization of a trajectory and the token positions that carry its labels.

A trajectory is rendered exactly as the policy sees it at search time (the chat-templated
question, then ``Step 0: ...``, ``Step 1: ...`` joined by the step separator) and tokenized
**once**. Each step's label sits on the token that holds the step's last character, found
through the character offsets of that joint tokenization. Tokenizing steps separately is
wrong: ``"The answer is 5."`` alone starts with the token ``The`` but after ``"Step 3: "``
with `` The``, so per-step token counts drift from the real sequence (a defect of the MedS3
code this module exists to avoid).

Why the step's last token and not the separator after it: the separator tokenizes
differently depending on what follows (``"\\n\\n"`` at the end of a text is one token, before
``"Step"`` it is two), so a label on it would make a step's score depend on whether a next
step exists. On the step's own last token, and with a causal model, the score of step k in
the whole trajectory equals the score of the prefix that ends at step k, which is what the
scorer needs for partial trajectories.

Everything here is a pure function of the tokenizer's output, shared by the PRM trainer,
the policy trainer and :class:`~meds3.train.scorer.PRMScorer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from meds3.data.prompts import PromptConfig, assistant_prefix, render_prompt, step_header
from meds3.data.question import MedQuestion

IGNORE_INDEX = -100  # positions the loss skips (transformers' convention)


@dataclass(frozen=True)
class TrajectoryTokens:
    """One trajectory, tokenized jointly.

    Attributes:
        input_ids: token ids of the whole text.
        response_start: index of the first token of the assistant turn (``Step 0: ...``).
        step_ends: for each step, the index of the token holding its last character.
        text: the rendered text the ids come from.
    """

    input_ids: list[int]
    response_start: int
    step_ends: list[int]
    text: str


def chat_head(question: MedQuestion, tokenizer: Any, config: PromptConfig | None = None) -> str:
    """The chat-templated question up to where the assistant's steps begin.

    Derived from :func:`render_prompt` so it is byte-identical to the generation prompt.

    Raises:
        ValueError: the rendered prompt does not end with the assistant prefix (a prompt
            config or template that the step format cannot be recovered from).
    """
    config = config or PromptConfig()
    full = render_prompt(question, tokenizer, (), config, open_next=False)
    suffix = assistant_prefix((), config, open_next=False)
    if not full.endswith(suffix):
        raise ValueError("rendered prompt does not end with the root step; cannot find the chat head")
    return full[: len(full) - len(suffix)]


def render_trajectory(steps: Sequence[str], config: PromptConfig | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The assistant text of ``steps`` (``steps[0]`` is the root step) and each step's
    character span ``(start, end)`` in it, header included, separator excluded.

    Raises:
        ValueError: no steps, or a step that is empty after stripping.
    """
    config = config or PromptConfig()
    if not steps:
        raise ValueError("a trajectory needs at least one step (Step 0)")
    parts, spans, pos = [], [], 0
    for i, step in enumerate(steps):
        body = step.strip()
        if not body:
            raise ValueError(f"step {i} is empty")
        if i:
            parts.append(config.step_separator)
            pos += len(config.step_separator)
        piece = step_header(i, config) + body
        parts.append(piece)
        spans.append((pos, pos + len(piece)))
        pos += len(piece)
    return "".join(parts), spans


def token_index_at(offsets: Sequence[tuple[int, int]], char_end: int) -> int:
    """Index of the token that holds character ``char_end - 1``: the last token starting
    before ``char_end`` (byte-level tokens of one character share its offsets; the last wins).

    Raises:
        ValueError: no token starts before ``char_end``.
    """
    best = -1
    for i, (start, end) in enumerate(offsets):
        if end > start and start < char_end:
            best = i
        elif start >= char_end and end > start:
            break
    if best < 0:
        raise ValueError(f"no token covers character {char_end - 1}")
    return best


def tokenize_trajectory(tokenizer: Any, question: MedQuestion, steps: Sequence[str],
                        config: PromptConfig | None = None, end_of_turn: bool = False) -> TrajectoryTokens:
    """Tokenize the chat head and the steps as one text and locate every step's last token.

    Args:
        tokenizer: a fast transformers tokenizer (character offsets are needed).
        question: the question the steps answer.
        steps: step texts, ``steps[0]`` being the root step, as in ``Trajectory.steps``.
        config: prompt format (default :class:`PromptConfig`).
        end_of_turn: append the chat template's end of the assistant turn (for SFT, so the
            policy learns to stop).

    Returns:
        The ids, where the response starts and each step's last-token index.

    Raises:
        ValueError: a slow tokenizer (no offsets), or an empty trajectory or step.
    """
    config = config or PromptConfig()
    head = chat_head(question, tokenizer, config)
    body, spans = render_trajectory(steps, config)
    text = head + body + (turn_end(tokenizer) if end_of_turn else "")
    if not getattr(tokenizer, "is_fast", True):
        raise ValueError("label placement needs a fast tokenizer (character offsets)")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    ends = [token_index_at(offsets, len(head) + end) for _, end in spans]
    start = token_index_at(offsets, len(head) + 1)
    return TrajectoryTokens(list(enc["input_ids"]), start, ends, text)


def turn_end(tokenizer: Any) -> str:
    """What the chat template writes after an assistant message (``"<|im_end|>\\n"``), or the
    EOS token where there is no template."""
    sentinel = "\x00MEDS3\x00"
    if getattr(tokenizer, "chat_template", None):
        msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": sentinel}]
        text = tokenizer.apply_chat_template(msgs, tokenize=False)
        if sentinel in text:
            return text.split(sentinel, 1)[1]
    return tokenizer.eos_token or ""


def sft_labels(tokens: TrajectoryTokens) -> list[int]:
    """Causal-LM labels: the token ids of the response (steps, answer, end of turn);
    :data:`IGNORE_INDEX` on the prompt."""
    n = tokens.response_start
    return [IGNORE_INDEX] * n + tokens.input_ids[n:]


def step_labels(tokens: TrajectoryTokens, values: Sequence[float], label_root: bool = False) -> list[float]:
    """PRM labels: ``values[k]`` at step k's last token, :data:`IGNORE_INDEX` elsewhere.

    Args:
        tokens: the jointly tokenized trajectory.
        values: one value in [0, 1] per step.
        label_root: also label Step 0 (the root, whose value is the question's solve rate).

    Raises:
        ValueError: a different number of values than steps, or a value outside [0, 1].
    """
    if len(values) != len(tokens.step_ends):
        raise ValueError(f"{len(values)} values for {len(tokens.step_ends)} steps")
    labels = [float(IGNORE_INDEX)] * len(tokens.input_ids)
    for k, (pos, v) in enumerate(zip(tokens.step_ends, values)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"step {k}: value {v} is outside [0, 1]")
        if k or label_root:
            labels[pos] = float(v)
    return labels
