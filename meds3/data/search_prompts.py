"""Prompts the search uses beside the step continuation of :func:`meds3.data.prompts.render_prompt`:
few-shot examples for the base model, the direct-answer simulation prompt of MedS3's first
iteration, and the Think prompt with which the policy chooses each child's action.

Sources: pixas/MedSSS ``Evol_Instruct/prompts/prompt_template.py`` (``simu_template``,
``Simulate``, ``think``), ``Evol_Instruct/actions/base_action.py`` (``Think``, ``Reflect``) and
``Evol_Instruct/prompts/examples.py`` (``mcts_example``; ours are written for meds3).
"""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence

from meds3.data.prompts import PromptConfig, chat_messages, render_problem, render_steps
from meds3.data.question import MedQuestion

#: Worked examples in the step format, shown to the base model when ``PromptConfig.few_shot > 0``.
FEW_SHOT_EXAMPLES = (
    "Problem: A 30-year-old man weighs 81 kg and is 1.80 m tall. What is his body mass index?\n"
    "A. 20.1 kg/m^2\nB. 25.0 kg/m^2\nC. 27.8 kg/m^2\nD. 31.2 kg/m^2\n\n"
    "Step 0: Let's break down this problem step by step.\n\n"
    "Step 1: Body mass index is weight in kilograms divided by the square of height in metres.\n\n"
    "Step 2: The height squared is 1.80 * 1.80 = 3.24 m^2.\n\n"
    "Step 3: 81 / 3.24 = 25.0 kg/m^2, which matches option B. The answer is B.",
    "Problem: A 23-year-old woman at 22 weeks of gestation has burning on urination for one day, no fever and "
    "no costovertebral angle tenderness. Which treatment is best?\n"
    "A. Ampicillin\nB. Ceftriaxone\nC. Doxycycline\nD. Nitrofurantoin\n\n"
    "Step 0: Let's break down this problem step by step.\n\n"
    "Step 1: Dysuria without fever or flank tenderness in pregnancy points to acute cystitis, not pyelonephritis.\n\n"
    "Step 2: Doxycycline is avoided in pregnancy; ceftriaxone is kept for pyelonephritis; nitrofurantoin is a "
    "first-line oral choice for cystitis in the second trimester.\n\n"
    "Step 3: Nitrofurantoin is the best treatment. The answer is D.",
)

SIMULATE_INSTRUCTION = ("Given all previous reasoning steps, generate the final answer. Conclude the task by stating: "
                        "\"The answer is {answer}\". Ensure that this answer is consistent with the prior steps and "
                        "fully addresses the task question.")

ACTIONS = {
    "reason": "This action is conducted if the task requires further one-step reasoning or no previous reasoning "
              "steps available.",
    "finish": "This action is conducted if all reasoning steps are complete enough and a final answer can be "
              "provided.",
}
THINK_INSTRUCTION = ("Given all previous reasoning steps, decide on the most suitable action to take next for solving "
                     "the given problem.\n\n1. Reason: {reason}\n2. Finish: {finish}\nOutput your choice using the "
                     "format: \"The action is {{action}}.\" {{action}} can only take 'Reason' or 'Finish'. Do not "
                     "output other information.")
THINK_PREFIX = "The action is "


def few_shot_block(k: int) -> str:
    """The first ``k`` worked examples, introduced as in MedS3 (``"Reasoning Example:"``); ``""`` for 0.

    Raises:
        ValueError: ``k`` negative or above the number of examples.
    """
    if not 0 <= k <= len(FEW_SHOT_EXAMPLES):
        raise ValueError(f"few_shot must be in [0, {len(FEW_SHOT_EXAMPLES)}], got {k}")
    return "" if k == 0 else "Reasoning Example:\n" + "\n\n".join(FEW_SHOT_EXAMPLES[:k]) + "\n\n"


def _chat(messages: list[dict[str, str]], tokenizer: Any) -> str:
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages) + "Assistant: "


def _with_user(question: MedQuestion, config: PromptConfig, text: str) -> list[dict[str, str]]:
    messages = chat_messages(question, config)
    messages[-1] = {"role": "user", "content": text}
    return messages


def render_simulation_prompt(question: MedQuestion, tokenizer: Any = None, steps: Sequence[str] = (),
                             config: PromptConfig | None = None) -> str:
    """MedS3's direct-answer simulation prompt (iteration 1): the problem and the steps so far in
    the user turn, then the instruction to give the final answer; the model answers afresh."""
    config = config or PromptConfig()
    reasoning = render_steps([config.root_step, *steps], config)
    text = (f"Problem: {render_problem(question, config)}\n\nReasoning Steps:\n{reasoning}\n\n"
            + SIMULATE_INSTRUCTION.format(answer="{answer}"))
    return _chat(_with_user(question, config, text), tokenizer)


def render_think_prompt(question: MedQuestion, tokenizer: Any = None, steps: Sequence[str] = (),
                        config: PromptConfig | None = None) -> str:
    """MedS3's Think prompt: the problem, the steps so far and the two actions; the assistant turn
    starts with ``"The action is "`` so the next word is the choice."""
    config = config or PromptConfig()
    reasoning = render_steps([config.root_step, *steps], config)
    text = (f"<problem>\n{render_problem(question, config)}\n</problem>\n\n<steps>\n{reasoning}\n</steps>\n\n"
            + THINK_INSTRUCTION.format(**ACTIONS))
    return _chat(_with_user(question, config, text), tokenizer) + THINK_PREFIX


_ACTION_RE = re.compile(r"\b(reason|finish)", re.IGNORECASE)


def parse_action(text: str) -> Optional[str]:
    """The action a Think output chose: ``"reason"`` or ``"finish"`` (the first one named), or
    None when it names neither."""
    match = _ACTION_RE.search(text or "")
    return match.group(1).lower() if match else None
