"""The context a job needs, by hand: search and evaluation lengths, the check against
engine.max_model_len naming the keys, the derived vLLM context, and the evolve config checks."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from meds3.config import ConfigError, load_config
from meds3.data import MedQuestion
from meds3.data.loaders import save_questions
from meds3.engines.lengths import check_fits, eval_need, search_need, with_context
from meds3.eval import EvalConfig
from meds3.evolve import EvolveConfig, split_seeds
from meds3.infer.budget import BudgetConfig
from meds3.mcts.config import SearchConfig
from meds3.rollout import RolloutConfig

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "examples" / "configs" / "paper" / "evolve_llama8b.yaml"


def test_search_need_by_hand():
    paper = SearchConfig(max_step_tokens=256, max_finish_tokens=4096, max_rollout_tokens=1536, refine_limit=1)
    # 1024 prompt + 12 x 256 path + (4096 + 256 + len("But wait, ")) Reflect detour + 4096 Finish cap
    assert search_need(paper).total == 1024 + 3072 + 4362 + 4096 == 12554
    assert search_need(SearchConfig(max_step_tokens=64, max_rollout_tokens=96, max_finish_tokens=80,
                                    max_depth=4), prompt_tokens=300).parts == {
        "max_prompt_tokens": 300, "search.max_depth x search.max_step_tokens": 256, "search.max_rollout_tokens": 96}


def test_eval_need_by_hand():
    e = EvalConfig(datasets=["x"], max_new_tokens=4096, budgets=[None, 4096])
    # the budget (4096) + "\n\nThe answer is" (15 characters) + answer_max_tokens (32) beats max_new_tokens
    assert eval_need(e).total == 1024 + 4096 + 15 + 32
    waits = EvalConfig(datasets=["x"], budgets=[100], budget=BudgetConfig(min_thinking_tokens=50, max_waits=3))
    assert eval_need(waits, prompt_tokens=0).total == 100 + 15 + 32 + 3 * len("Wait")
    assert eval_need(EvalConfig(datasets=["x"], max_new_tokens=700), prompt_tokens=0).total == 700


def test_check_fits_names_the_keys():
    needs = {"rollout": search_need(SearchConfig(max_finish_tokens=4096)),
             "eval": eval_need(EvalConfig(datasets=["x"]))}
    need = needs["rollout"].total  # 1024 + 12 x 256 + 4096
    assert need == 8192
    assert check_fits(needs, {}, "vllm") == need and check_fits(needs, {}, "transformers") is None
    assert check_fits(needs, {"max_model_len": 9000}, "vllm") == 9000
    with pytest.raises(ConfigError, match=r"engine.max_model_len: 4096 .* rollout request: .*"
                                          r"search.max_finish_tokens 4096 = 8192"):
        check_fits(needs, {"max_model_len": 4096}, "vllm")
    with pytest.raises(ConfigError, match=r"model's context \(4096 tokens\)"):
        check_fits(needs, {}, "transformers", model_len=4096)
    assert with_context({"enable_lora": True}, "vllm", need) == {"enable_lora": True, "max_model_len": need}
    assert with_context({}, "transformers", need) == {}


def test_the_paper_config_fits_and_a_small_context_is_refused():
    config = load_config(EvolveConfig, PAPER)
    assert config.engine_options()["max_model_len"] == 16384  # set in the config, large enough
    derived = load_config(EvolveConfig, PAPER, ['engine={"enable_lora": true}'])
    assert derived.engine_options()["max_model_len"] == 12554  # the iteration-1 search with Reflect
    with pytest.raises(ConfigError, match="engine.max_model_len: 4096 .*rollout.search.max_finish_tokens"):
        load_config(EvolveConfig, PAPER, ["engine.max_model_len=4096"])
    with pytest.raises(ConfigError, match="eval.budgets"):
        load_config(EvolveConfig, PAPER, ["engine.max_model_len=12600", "eval.budgets=[12000]"])
    rollout = load_config(RolloutConfig, REPO / "examples" / "configs" / "rollout_paper.yaml", ["engine={}"])
    assert rollout.engine_options() == {"max_model_len": 12554}


def _seeds(path, n):
    save_questions(path, [MedQuestion(id=f"s{i}", question=f"Q{i}?", options={"A": "a", "B": "b"}, answer="A")
                          for i in range(n)])
    return str(path)


def test_evolve_inputs_are_checked_before_any_work(tmp_path, caplog):
    seeds = _seeds(tmp_path / "seeds.jsonl", 5)
    with pytest.raises(ConfigError, match=r"held_out: 5 held-out questions leave none of the 5"):
        split_seeds(EvolveConfig(seeds=[seeds], held_out=5))
    with pytest.raises(ConfigError, match=r"seeds\[1\]: .*missing.jsonl does not exist"):
        split_seeds(EvolveConfig(seeds=[seeds, str(tmp_path / "missing.jsonl")], held_out=1))
    with pytest.raises(ConfigError, match=r"eval_datasets\[0\]: .*nope.jsonl does not exist"):
        split_seeds(EvolveConfig(seeds=[seeds], held_out=1, eval_datasets=[str(tmp_path / "nope.jsonl")]))
    with caplog.at_level(logging.WARNING):
        pool, held = split_seeds(EvolveConfig(seeds=[seeds], held_out=2, questions_per_iteration=8))
    assert len(pool) == 3 and "every iteration searches all of them again" in caplog.text
