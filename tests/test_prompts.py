"""Prompt rendering in the MedS3 step format."""

from meds3.data import MedQuestion
from meds3.data.prompts import (
    PromptConfig,
    assistant_prefix,
    has_answer_phrase,
    next_step_stop,
    render_problem,
    render_prompt,
    render_steps,
    split_steps,
)

Q = MedQuestion(id="q", question="Which nerve?", options={"A": "Facial", "B": "Vagus"}, answer="A",
                metadata={"context": "An abstract."})


def test_problem_has_context_question_and_lettered_options():
    assert render_problem(Q) == "Context: An abstract.\n\nWhich nerve?\n\nA. Facial\nB. Vagus"


def test_steps_and_assistant_prefix():
    assert render_steps(["a", " b "]) == "Step 0: a\n\nStep 1: b"
    assert assistant_prefix(["First."]) == (
        "Step 0: Let's break down this problem step by step.\n\nStep 1: First.\n\nStep 2: ")
    assert assistant_prefix([], open_next=False) == "Step 0: Let's break down this problem step by step."
    assert next_step_stop(2) == "Step 3:"


def test_split_steps_inverts_render():
    steps = ["Let's break down this problem step by step.", "The facial nerve exits there.",
             "The answer is A."]
    assert split_steps(render_steps(steps)) == steps
    assert split_steps("Preamble.\nStep 1: x\n\nStep 2: y") == ["Preamble.", "x", "y"]


def test_answer_phrase_retyping_rule():
    assert has_answer_phrase("So the answer is B.")
    assert not has_answer_phrase("We need more data.")


def test_plain_layout_without_tokenizer():
    text = render_prompt(Q, steps=["x"])
    assert text.startswith("System: You are a professional medical expert")
    assert "User: Context: An abstract." in text
    assert text.endswith("Assistant: Step 0: Let's break down this problem step by step.\n\nStep 1: x\n\nStep 2: ")


class TemplateTokenizer:
    chat_template = "set"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in messages) + "<|assistant|>"


def test_chat_template_from_tokenizer():
    cfg = PromptConfig(system_prompt="", instruction="")
    text = render_prompt(Q, TemplateTokenizer(), config=cfg)
    assert text == ("<|user|>Context: An abstract.\n\nWhich nerve?\n\nA. Facial\nB. Vagus<|end|><|assistant|>"
                    "Step 0: Let's break down this problem step by step.\n\nStep 1: ")
