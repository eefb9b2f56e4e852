"""The context length a job needs, derived from its configs, and the check that it fits.

Every request is prompt + generated text; the longest a search can send is the question prompt,
the deepest path of steps above a node, the Reflect detours on that path and the largest
generation cap; an evaluation sends the prompt and at most the response cap, or a thinking
budget plus the forced answer. Text added by meds3 itself (answer cue, "Wait", Reflect trigger)
is counted at one token per character, an upper bound for any tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

DEFAULT_PROMPT_TOKENS = 1024  # room for the rendered question (system turn, few-shot, options, context)


@dataclass
class ContextNeed:
    """Tokens a job needs, with the config keys each part comes from."""

    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        return " + ".join(f"{k} {v}" for k, v in self.parts.items()) + f" = {self.total}"


def search_need(search: Any, prompt_tokens: int = DEFAULT_PROMPT_TOKENS, prefix: str = "search") -> ContextNeed:
    """The longest request of a tree search (``search`` is a :class:`meds3.mcts.SearchConfig`):
    prompt + ``max_depth`` steps of ``max_step_tokens`` + ``refine_limit`` Reflect detours (a
    Finish and a Reflect step each) + the largest generation cap."""
    parts = {"max_prompt_tokens": prompt_tokens,
             f"{prefix}.max_depth x {prefix}.max_step_tokens": search.max_depth * search.max_step_tokens}
    if search.refine_limit:
        parts[f"{prefix}.refine_limit x ({prefix}.max_finish_tokens + {prefix}.max_step_tokens)"] = (
            search.refine_limit * (search.max_finish_tokens + search.max_step_tokens + len(search.reflect_text)))
    caps = {"max_step_tokens": search.max_step_tokens, "max_finish_tokens": search.max_finish_tokens,
            "max_rollout_tokens": search.max_rollout_tokens}
    name = max(caps, key=caps.get)
    parts[f"{prefix}.{name}"] = caps[name]
    return ContextNeed(parts)


def eval_need(eval_config: Any, prompt_tokens: int = DEFAULT_PROMPT_TOKENS, prefix: str = "eval") -> ContextNeed:
    """The longest request of an evaluation (``eval_config`` is an :class:`meds3.eval.EvalConfig`):
    prompt + the largest of ``max_new_tokens`` (an unbounded run) and, per thinking budget, the
    budget + answer cue + ``answer_max_tokens`` (+ "Wait" insertions under a minimum budget)."""
    b = eval_config.budget
    forced = len(b.think_end) + len(b.answer_cue) + b.answer_max_tokens
    waits = b.max_waits * len(b.wait_text) if b.min_thinking_tokens else 0
    options = {}
    for budget in eval_config.budgets:
        if budget is None:
            options[f"{prefix}.max_new_tokens"] = eval_config.max_new_tokens
        else:
            options[f"{prefix}.budgets ({budget}) + forced answer"] = budget + forced + waits
    name = max(options, key=options.get)
    return ContextNeed({"max_prompt_tokens": prompt_tokens, name: options[name]})


def check_fits(needs: dict[str, ContextNeed], engine: dict[str, Any], backend: str,
               model_len: Optional[int] = None) -> Optional[int]:
    """Check that every need fits the context and return the ``max_model_len`` to set.

    Args:
        needs: stage name -> its need.
        engine: the engine options (``max_model_len`` when the user set one).
        backend: ``"vllm"`` reserves a fixed context; other backends are bounded by the model only.
        model_len: the model's own context (``max_position_embeddings``) when known.

    Returns:
        The context to reserve: the user's ``engine.max_model_len``, else (vLLM) the largest need,
        else None.

    Raises:
        ConfigError: a need above ``engine.max_model_len`` or the model's context, naming the keys;
            an engine option the backend does not know.
    """
    from meds3.config import ConfigError
    from meds3.engines.base import check_engine_options

    check_engine_options(backend, engine)  # an unknown key is named before its value is read
    if not needs:
        return engine.get("max_model_len")
    stage, need = max(needs.items(), key=lambda kv: kv[1].total)
    limit = engine.get("max_model_len")
    if limit is not None and need.total > int(limit):
        raise ConfigError(f"engine.max_model_len: {limit} tokens cannot hold the longest {stage} request: "
                          f"{need.describe()}; raise engine.max_model_len or lower those keys")
    if model_len is not None and need.total > model_len:
        raise ConfigError(f"the model's context ({model_len} tokens) cannot hold the longest {stage} request: "
                          f"{need.describe()}; lower those keys")
    if limit is not None:
        return int(limit)
    return need.total if backend == "vllm" else None


def with_context(engine: dict[str, Any], backend: str, context: Optional[int]) -> dict[str, Any]:
    """Engine options with ``max_model_len`` set to ``context`` for vLLM when the user set none.

    Raises:
        ConfigError: an option the backend does not know (:func:`meds3.engines.base.check_engine_options`).
    """
    from meds3.engines.base import check_engine_options

    check_engine_options(backend, engine)
    options = dict(engine)
    if backend == "vllm" and context is not None and "max_model_len" not in options:
        options["max_model_len"] = context
    return options
