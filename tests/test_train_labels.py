"""Label placement: joint tokenization and exact step-end positions on tiny-random-llama's
tokenizer (the SmolLM2 tokenizer)."""

from __future__ import annotations

import pytest
from model_paths import model_path
from train_trees import question

from meds3.data.prompts import ROOT_STEP, PromptConfig
from meds3.train.common import load_tokenizer
from meds3.train.labels import (
    IGNORE_INDEX,
    chat_head,
    render_trajectory,
    sft_labels,
    step_labels,
    token_index_at,
    tokenize_trajectory,
    turn_end,
)

STEPS = [ROOT_STEP, "BMI = 70 / 1.75² ≈ 22.9 kg/m²", "The answer is B."]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(model_path("tiny-random-llama"))


def test_render_trajectory_spans():
    text, spans = render_trajectory(["a", " b ", "c."])
    assert text == "Step 0: a\n\nStep 1: b\n\nStep 2: c."
    assert spans == [(0, 9), (11, 20), (22, 32)]
    assert [text[s:e] for s, e in spans] == ["Step 0: a", "Step 1: b", "Step 2: c."]
    with pytest.raises(ValueError, match="step 1 is empty"):
        render_trajectory(["a", "  "])
    with pytest.raises(ValueError, match="at least one step"):
        render_trajectory([])


def test_token_index_at_handles_shared_offsets():
    # "x≈" split into byte tokens that share the offsets of "≈"; then a separator
    offsets = [(0, 1), (1, 2), (1, 2), (2, 3), (3, 4)]
    assert token_index_at(offsets, 2) == 2
    assert token_index_at(offsets, 1) == 0
    assert token_index_at([(0, 0), (0, 3), (3, 5)], 5) == 2  # empty special-token offsets skipped
    with pytest.raises(ValueError):
        token_index_at([(0, 0)], 1)


def test_positions_are_exact(tok):
    tt = tokenize_trajectory(tok, question(), STEPS)
    assert (tt.response_start, tt.step_ends, len(tt.input_ids)) == (134, [147, 176, 187], 188)
    assert tok.convert_ids_to_tokens([tt.input_ids[i] for i in tt.step_ends]) == [".", "Â²", "."]
    assert tok.convert_ids_to_tokens(tt.input_ids[tt.response_start]) == "Step"
    # the label token is followed by the separator's first token, never inside the step
    assert tok.convert_ids_to_tokens([tt.input_ids[i + 1] for i in tt.step_ends[:-1]]) == ["Ċ", "Ċ"]


def test_prefix_up_to_each_step_end_decodes_to_the_step(tok):
    steps = [ROOT_STEP, "Height squared is 3.06 m²", "So the BMI is ≈", "22.9; the answer is (B)."]
    tt = tokenize_trajectory(tok, question(), steps)
    body, spans = render_trajectory(steps)
    for end, (_, char_end) in zip(tt.step_ends, spans):
        assert tok.decode(tt.input_ids[tt.response_start: end + 1]) == body[:char_end]
        assert tok.decode(tt.input_ids[tt.response_start: end]) != body[:char_end]
    # "≈" is two byte tokens: the label is on the second
    end = tt.step_ends[2]
    assert tok.convert_ids_to_tokens(tt.input_ids[end - 1: end + 1]) == ["Ġâī", "Ī"]


def test_steps_tokenize_differently_alone(tok):
    """Tokenizing steps one by one (the MedS3 code) drifts; the joint positions do not."""
    q = question()
    tt = tokenize_trajectory(tok, q, STEPS)
    alone = tok("The answer is B.", add_special_tokens=False)["input_ids"]
    in_context = tt.input_ids[tt.step_ends[1] + 1 + 6: tt.step_ends[2] + 1]  # after "\n\nStep 2:"
    assert tok.convert_ids_to_tokens(alone)[0] == "The"
    assert tok.convert_ids_to_tokens(in_context)[0] == "ĠThe"
    head_len = len(tok(chat_head(q, tok), add_special_tokens=False)["input_ids"])
    naive, pos = [], head_len
    for i, s in enumerate(STEPS):
        for piece in ("\n\n" if i else "", f"Step {i}: ", s):  # separator, header, text apart
            pos += len(tok(piece, add_special_tokens=False)["input_ids"]) if piece else 0
        naive.append(pos - 1)
    assert naive != tt.step_ends
    assert naive == [148, 177, 188]


def test_chat_head_matches_generation_prompt(tok):
    from meds3.data.prompts import render_prompt

    q = question()
    tt = tokenize_trajectory(tok, q, [ROOT_STEP, "x"])
    assert tt.text == render_prompt(q, tok, ["x"], open_next=False)
    assert chat_head(q, tok).endswith("<|im_start|>assistant\n")


def test_sft_labels_cover_the_response_and_end_of_turn(tok):
    tt = tokenize_trajectory(tok, question(), STEPS, end_of_turn=True)
    assert turn_end(tok) == "<|im_end|>\n"
    labels = sft_labels(tt)
    assert labels[: tt.response_start] == [IGNORE_INDEX] * tt.response_start
    assert labels[tt.response_start:] == tt.input_ids[tt.response_start:]
    assert tok.decode(tt.input_ids[tt.response_start:]).endswith("The answer is B.<|im_end|>\n")
    plain = tokenize_trajectory(tok, question(), STEPS)
    assert tt.step_ends == plain.step_ends  # the end of turn changes no step position


def test_step_labels(tok):
    tt = tokenize_trajectory(tok, question(), STEPS)
    labels = step_labels(tt, [0.6, 0.25, 1.0])
    assert {i: v for i, v in enumerate(labels) if v != IGNORE_INDEX} == {176: 0.25, 187: 1.0}
    with_root = step_labels(tt, [0.6, 0.25, 1.0], label_root=True)
    assert {i: v for i, v in enumerate(with_root) if v != IGNORE_INDEX} == {147: 0.6, 176: 0.25, 187: 1.0}
    with pytest.raises(ValueError, match="2 values for 3 steps"):
        step_labels(tt, [0.5, 0.5])
    with pytest.raises(ValueError, match="step 2: value 1.5"):
        step_labels(tt, [0.5, 0.5, 1.5])


def test_custom_prompt_config(tok):
    cfg = PromptConfig(step_prefix="## Step {i}\n", step_separator="\n")
    tt = tokenize_trajectory(tok, question(), ["root", "two"], cfg)
    assert tok.decode(tt.input_ids[tt.response_start:]) == "## Step 0\nroot\n## Step 1\ntwo"
    assert tok.convert_ids_to_tokens([tt.input_ids[i] for i in tt.step_ends]) == ["root", "two"]
