"""N-sample inference: responses in the MedS3 step format, with answers and verdicts.

Every question's prompt ends with ``Step 0: <root>`` and the header ``Step 1: `` (see
:func:`meds3.data.prompts.render_prompt`); the model writes the rest. All questions of a call
go to the engine together and are streamed: a question is complete as soon as its own responses
are (budget forcing adds phases per response, see :mod:`meds3.infer.budget`), and
``on_question`` hears of it then.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

from meds3.data.prompts import PromptConfig, assistant_prefix, render_prompt, split_steps
from meds3.data.question import MedQuestion
from meds3.engines.types import SamplingParams
from meds3.infer.budget import USAGE_FIELDS, BudgetConfig, Generation, TokenUsage, generate_with_budget
from meds3.verify import Verdict, extract_answer, verify

logger = logging.getLogger(__name__)


@dataclass
class SamplerConfig:
    """How responses are sampled.

    Attributes:
        n: responses per question (the paper samples 16).
        temperature: sampling temperature; 0 is greedy (then use ``n=1``).
        top_p: nucleus mass.
        max_new_tokens: most tokens per response (without a maximum thinking budget).
        seed: base seed; each question's seed derives from it and the question id, so a
            question gets the same random draws whatever else is in the batch (the same
            responses bit for bit with a batch-invariant engine; None: unseeded).
        adapter: LoRA adapter directory of the policy (None: the base model).
        budget: budget forcing (off by default).
    """

    n: int = 16
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 1024
    seed: Optional[int] = 0
    adapter: Optional[str] = None
    budget: BudgetConfig = field(default_factory=BudgetConfig)

    def __post_init__(self) -> None:
        if isinstance(self.budget, dict):
            self.budget = BudgetConfig(**self.budget)
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        # SamplingParams validates temperature, top_p and max_new_tokens with clear messages.
        SamplingParams(temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens)

    def params(self) -> SamplingParams:
        """The engine sampling parameters (seed set per question by the sampler)."""
        return SamplingParams(temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens)


@dataclass
class Response(TokenUsage):
    """One sampled response to one question, with its token accounting (:class:`TokenUsage`:
    ``num_tokens``, ``thinking_tokens``, ``answer_tokens``, ``inserted_tokens``,
    ``forced_stop``, ``waits``, ``finish_reason``, keyword-only).

    Attributes:
        question_id: id of the question.
        index: position among the question's samples (0-based).
        text: the generated text, after the prompt's ``Step 1: `` header.
        steps: step texts with headers removed, Step 0 (the root) first, as the PRM
            scorer expects.
        answer: normalized extracted answer (None: unverifiable, no answer found).
        correct: verdict against the gold answer (None: no gold answer or no answer).
        reason: the verifier's explanation.
        step_scores: PRM probability per step, Step 0 included (None until scored).
    """

    question_id: str
    index: int
    text: str
    steps: list[str]
    answer: Optional[str]
    correct: Optional[bool]
    reason: str = ""
    step_scores: Optional[list[float]] = None

    @property
    def verdict(self) -> Verdict:
        """The verdict as :class:`meds3.verify.Verdict`."""
        return Verdict(self.correct, self.answer, self.reason)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with ``num_tokens`` (keys in the order stored files have always had);
        :meth:`from_dict` inverts it."""
        data = asdict(self)
        usage = {name: data.pop(name) for name in USAGE_FIELDS}
        step_scores = data.pop("step_scores")
        return {**data, "num_tokens": self.num_tokens, **usage, "step_scores": step_scores}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Response":
        """Build from :meth:`to_dict` output.

        Raises:
            ValueError: a stored ``num_tokens`` that is not thinking + answer tokens.
        """
        data = dict(data)
        num_tokens = data.pop("num_tokens", None)
        response = cls(**data)
        if num_tokens is not None and num_tokens != response.num_tokens:
            raise ValueError(f"response {response.question_id}#{response.index}: num_tokens {num_tokens} is not "
                             f"thinking_tokens + answer_tokens ({response.num_tokens})")
        return response


def question_seed(seed: Optional[int], question_id: str) -> Optional[int]:
    """Seed of one question: stable across runs and batch compositions."""
    if seed is None:
        return None
    return (seed * 1_000_003 + zlib.crc32(question_id.encode("utf-8"))) % (2**31 - 1)


def make_response(question: MedQuestion, index: int, gen: Generation,
                  prompt_config: PromptConfig | None = None) -> Response:
    """Build a :class:`Response` from a generation: steps, answer and verdict.

    The verdict is rule-checked when the question has a gold answer; otherwise only the
    answer is extracted (``correct`` None).
    """
    prompt_config = prompt_config or PromptConfig()
    steps = split_steps(assistant_prefix((), prompt_config, open_next=True) + gen.text, prompt_config)
    if question.answer:
        v = verify(gen.text, question)
        answer, correct, reason = v.extracted, v.correct, v.reason
    else:
        answer, correct, reason = extract_answer(gen.text, question), None, "no gold answer"
    return Response(question_id=question.id, index=index, text=gen.text, steps=steps, answer=answer,
                    correct=correct, reason=reason, **asdict(gen.usage()))


def sample_responses(engine: Any, questions: Sequence[MedQuestion], config: SamplerConfig | None = None,
                     prompt_config: PromptConfig | None = None, progress: bool = True, *,
                     on_question: Optional[Callable[[int, list[Response]], None]] = None) -> list[list[Response]]:
    """Sample ``config.n`` responses for every question.

    Args:
        engine: a :class:`meds3.engines.Engine`.
        questions: the questions (any number; they are generated together).
        config: sampling settings.
        prompt_config: how prompts render (default MedS3's).
        progress: log a one-line summary at the end.
        on_question: ``on_question(index, responses)`` once per question, as soon as its
            responses are complete (verdicts included), in completion order; what it raises
            stops the sampling.

    Returns:
        Per question, its responses in sample order.
    """
    config = config or SamplerConfig()
    prompt_config = prompt_config or PromptConfig()
    tokenizer = getattr(engine, "tokenizer", None)
    prompts = [render_prompt(q, tokenizer, (), prompt_config) for q in questions]
    seeds = [question_seed(config.seed, q.id) for q in questions]
    out: list[list[Response]] = [[] for _ in questions]

    def done(index: int, gens: list[Generation]) -> None:
        out[index] = [make_response(questions[index], j, g, prompt_config) for j, g in enumerate(gens)]
        if on_question is not None:
            on_question(index, out[index])

    generate_with_budget(engine, prompts, config.n, config.params(), config.budget, config.adapter, seeds,
                         on_done=done)
    if progress and out:
        flat = [r for rs in out for r in rs]
        logger.info("sampled %d responses for %d questions: %.1f tokens each, %.0f%% with an answer",
                    len(flat), len(out), sum(r.num_tokens for r in flat) / len(flat),
                    100 * sum(r.answer is not None for r in flat) / len(flat))
    return out
