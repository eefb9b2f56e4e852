"""Prompt rendering in the MedS3 step format: the one place to change how prompts read.

A response is a sequence of steps, ``Step 0: Let's break down this problem step by step.``
(the MCTS root), then ``Step 1: ...``, ``Step 2: ...``, joined by blank lines; the last
step ends with ``The answer is ...``. Chat templates come from the tokenizer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from meds3.data.question import MedQuestion

# The MedS3 code's expert prefix, root step and answer phrase (Evol_Instruct/prompts).
DEFAULT_SYSTEM = "You are a professional medical expert majored at reasoning in hard medical-related problems."
DEFAULT_INSTRUCTION = ("Solve the problem step by step. Write each step on its own as \"Step i: ...\", "
                       "separate steps with a blank line, and end with \"The answer is {answer}.\"")
ROOT_STEP = "Let's break down this problem step by step."


@dataclass
class PromptConfig:
    """How questions and steps are rendered. Defaults follow the MedS3 code."""

    system_prompt: str = DEFAULT_SYSTEM  # "" to send no system turn
    instruction: str = DEFAULT_INSTRUCTION  # shown after the problem; "" for none
    root_step: str = ROOT_STEP  # text of Step 0, the MCTS root
    step_prefix: str = "Step {i}: "  # how step i starts
    step_separator: str = "\n\n"  # between steps
    answer_phrase: str = "The answer is"  # a Finish step ends with this phrase and the answer
    context_label: str = "Context"  # heading of a supporting passage (PubMedQA abstracts)
    few_shot: int = 0  # worked examples shown before the problem (MedS3 shows 1 to the base model in iteration 1)

    def __post_init__(self) -> None:
        if "{i}" not in self.step_prefix:
            raise ValueError(f"step_prefix must contain '{{i}}', got {self.step_prefix!r}")
        if not self.step_separator:
            raise ValueError("step_separator must not be empty")
        if not self.answer_phrase.strip():
            raise ValueError("answer_phrase must not be empty")
        from meds3.data.search_prompts import FEW_SHOT_EXAMPLES

        if not 0 <= self.few_shot <= len(FEW_SHOT_EXAMPLES):
            raise ValueError(f"few_shot must be in [0, {len(FEW_SHOT_EXAMPLES)}], got {self.few_shot}")


def render_options(options: dict[str, str]) -> str:
    """Options as lettered lines: ``A. text`` one per line."""
    return "\n".join(f"{letter}. {text}" for letter, text in options.items())


def render_problem(question: MedQuestion, config: PromptConfig | None = None) -> str:
    """The problem text: context (if any), the question, then its lettered options."""
    config = config or PromptConfig()
    parts = []
    if question.context:
        parts.append(f"{config.context_label}: {question.context}")
    parts.append(question.question.strip())
    if question.options:
        parts.append(render_options(question.options))
    return "\n\n".join(parts)


def render_user_message(question: MedQuestion, config: PromptConfig | None = None) -> str:
    """The user turn: problem then instruction."""
    from meds3.data.search_prompts import few_shot_block

    config = config or PromptConfig()
    text = render_problem(question, config)
    if config.few_shot:
        text = few_shot_block(config.few_shot) + "Problem: " + text
    if config.instruction:
        text += "\n\n" + config.instruction
    return text


def step_header(i: int, config: PromptConfig | None = None) -> str:
    """``"Step i: "`` as configured."""
    return (config or PromptConfig()).step_prefix.format(i=i)


def step_marker(config: PromptConfig | None = None) -> str:
    """What every step header starts with (``"Step "``): the prefix before its number."""
    return (config or PromptConfig()).step_prefix.split("{i}")[0]


def render_steps(steps: Sequence[str], config: PromptConfig | None = None, start: int = 0) -> str:
    """Join step texts as ``Step start: ...`` + separator + ``Step start+1: ...``."""
    config = config or PromptConfig()
    return config.step_separator.join(step_header(start + k, config) + s.strip() for k, s in enumerate(steps))


def assistant_prefix(steps: Sequence[str], config: PromptConfig | None = None, open_next: bool = True) -> str:
    """Text of a partial assistant turn: Step 0 (the root), the given steps, and, with
    ``open_next``, the separator and header of the next step for the model to continue."""
    config = config or PromptConfig()
    all_steps = [config.root_step, *steps]
    text = render_steps(all_steps, config)
    if open_next:
        text += config.step_separator + step_header(len(all_steps), config)
    return text


def next_step_stop(steps_done: int, config: PromptConfig | None = None) -> str:
    """Stop string that ends a Reason step: the header of the step after it.

    ``steps_done`` counts steps before the one being generated, the root included.
    """
    config = config or PromptConfig()
    return step_header(steps_done + 1, config).rstrip()


def split_steps(text: str, config: PromptConfig | None = None) -> list[str]:
    """Split a response written in the step format into step texts (headers removed).

    Text before the first header is kept as a step of its own when not blank.
    """
    config = config or PromptConfig()
    prefix = re.escape(config.step_prefix.strip()).replace(re.escape("{i}"), r"\d+")
    parts = re.split(rf"(?:^|\n)\s*{prefix}\s*", text)
    return [p.strip() for p in parts if p.strip()]


def has_answer_phrase(text: str, config: PromptConfig | None = None) -> bool:
    """Whether a step states a final answer (the MedS3 re-typing rule: Reason -> Finish)."""
    config = config or PromptConfig()
    return config.answer_phrase.lower() in text.lower()


def chat_messages(question: MedQuestion, config: PromptConfig | None = None) -> list[dict[str, str]]:
    """System (if configured) and user messages for a chat template."""
    config = config or PromptConfig()
    messages = []
    if config.system_prompt:
        messages.append({"role": "system", "content": config.system_prompt})
    messages.append({"role": "user", "content": render_user_message(question, config)})
    return messages


def render_prompt(question: MedQuestion, tokenizer: Any = None, steps: Sequence[str] = (),
                  config: PromptConfig | None = None, open_next: bool = True) -> str:
    """The full model input: chat-templated question plus a partial assistant turn.

    Args:
        question: the question.
        tokenizer: a transformers tokenizer; its chat template renders the turns. Without
            one (or without a template) a plain ``System/User/Assistant`` layout is used.
        steps: steps already taken after the root (Step 0).
        open_next: end with the header of the next step so the model continues it.

    Returns:
        Text whose continuation is the model's next step.
    """
    config = config or PromptConfig()
    messages = chat_messages(question, config)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        head = "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages) + "Assistant: "
    return head + assistant_prefix(steps, config, open_next=open_next)
