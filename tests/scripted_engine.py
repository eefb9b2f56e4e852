"""A scripted engine for search tests: deterministic outputs chosen from the request, with
call accounting, and optional injected failures. Not a model: the same code paths also run
against real tiny models in the integration tests."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from meds3.engines.types import GenerationResult, Sample


class ScriptedEngine:
    """Reason steps are short texts; a Finish or rollout ends with a right or wrong answer,
    drawn from the request's seed so outputs do not depend on batch composition."""

    tokenizer = None

    def __init__(self, right: str = "B", wrong: str = "C", p_right: float = 0.5, fail_calls=(),
                 fail_prompts: tuple[str, ...] = ()):
        self.right, self.wrong, self.p_right = right, wrong, p_right
        self.calls: list[int] = []  # requests per call
        self.fail_calls = set(fail_calls)
        self.fail_prompts = fail_prompts

    def generate(self, requests):
        self.calls.append(len(requests))
        if len(self.calls) in self.fail_calls:
            raise RuntimeError(f"injected failure on call {len(self.calls)}")
        if any(p in r.prompt for r in requests for p in self.fail_prompts):
            raise RuntimeError("injected failure for a poisoned prompt")
        return [self._one(r) for r in requests]

    def _one(self, req):
        rng = random.Random(req.params.seed)
        samples = []
        for _ in range(req.n):
            if req.params.stop:  # a Reason step
                text = f"Reasoning {rng.randint(0, 999)}."
                if rng.random() < 0.1:
                    text += f" The answer is {self.right}."
                samples.append(Sample(text, [7] * 4, "stop", req.params.stop[0]))
            else:
                ans = self.right if rng.random() < self.p_right else self.wrong
                samples.append(Sample(f"Thinking. The answer is {ans}.", [7] * 6, "eos"))
        n_prompt = len(req.prompt) // 4
        return GenerationResult(req.request_id, [1] * n_prompt, samples, n_prompt, n_prompt * req.n, 0)


class SlowEngine(ScriptedEngine):
    """The scripted engine, sleeping ``delay`` seconds per call, so a job can be watched or
    killed while it runs."""

    def __init__(self, delay: float = 0.05, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay

    def generate(self, requests):
        time.sleep(self.delay)
        return super().generate(requests)


def slow_rollout_command(config_path, delay: float) -> list[str]:
    """The command of a child process that runs the local rollout job saved at ``config_path``
    with a :class:`SlowEngine` of ``delay`` seconds per call."""
    tests = str(Path(__file__).resolve().parent)
    code = (f"import sys; sys.path.insert(0, {tests!r})\n"
            "from scripted_engine import SlowEngine\n"
            "from meds3.config import load_config\n"
            "from meds3.rollout import RolloutConfig, run_rollout\n"
            f"run_rollout(load_config(RolloutConfig, {str(config_path)!r}), engine=SlowEngine({delay!r}), "
            "progress=False)\n")
    return [sys.executable, "-c", code]
