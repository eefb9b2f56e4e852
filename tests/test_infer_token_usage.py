"""TokenUsage: the token accounting shared by a budget-forced Generation and a sampled
Response; stored responses keep their key order and read back."""

from __future__ import annotations

import json

import pytest

from meds3.data.question import MedQuestion
from meds3.infer import Generation, Response, TokenUsage, make_response

#: Keys of a stored response (eval ``responses.jsonl``), in the order they have always had.
STORED_KEYS = ["question_id", "index", "text", "steps", "answer", "correct", "reason", "num_tokens",
               "thinking_tokens", "answer_tokens", "inserted_tokens", "forced_stop", "waits", "finish_reason",
               "step_scores"]


def _generation() -> Generation:
    return Generation("Step 1: think.\n\nThe answer is B.", [5, 6, 7], thinking_tokens=9, answer_tokens=3,
                      inserted_tokens=4, forced_stop=True, waits=1, finish_reason="stop")


def test_generation_and_usage():
    gen = _generation()
    assert gen.num_tokens == 12  # generated only: the 4 inserted tokens cost nothing
    assert gen.usage() == TokenUsage(thinking_tokens=9, answer_tokens=3, inserted_tokens=4, forced_stop=True,
                                     waits=1, finish_reason="stop")
    assert Generation("x").usage() == TokenUsage()


def test_make_response_carries_the_usage_and_round_trips():
    question = MedQuestion(id="q1", question="Which?", options={"A": "one", "B": "two"}, answer="B")
    response = make_response(question, 2, _generation())
    assert (response.question_id, response.index, response.answer, response.correct) == ("q1", 2, "B", True)
    assert response.usage() == _generation().usage() and response.num_tokens == 12
    stored = response.to_dict()
    assert list(stored) == STORED_KEYS and stored["num_tokens"] == 12
    assert Response.from_dict(json.loads(json.dumps(stored))) == response


def test_from_dict_checks_num_tokens():
    stored = make_response(MedQuestion(id="q1", question="Which?", options={"A": "a", "B": "b"}, answer="B"), 0,
                           _generation()).to_dict()
    stored["num_tokens"] = 13
    with pytest.raises(ValueError, match=r"q1#0: num_tokens 13 is not thinking_tokens \+ answer_tokens \(12\)"):
        Response.from_dict(stored)
