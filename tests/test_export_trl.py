"""TRL interop: a PRM trained by TRL's ``PRMTrainer`` on ``meds3 export --format prm`` is
scored by meds3 (``TRLPRMScorer``), reading each step where TRL put its label.

Needs ``trl`` with ``trl.experimental.prm`` (the ``dev`` extra pins ``trl<1.14``: 1.14 removed
the PRM trainer) and the embedded tiny model; skips without them.
"""

from __future__ import annotations

import os

import pytest
from model_paths import model_path
from train_trees import make_tree, question, write_trees

from meds3.cli import main
from meds3.export import prm_export, stepwise_completions, stepwise_prompt, stepwise_tokens
from meds3.mcts.trajectories import extract_trajectories

SEPARATOR = "\n\n"  # meds3's step separator; TRL's default "\n" is checked too where it matters


def trl_prm():
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # the experimental-API warning is expected here
    return pytest.importorskip("trl.experimental.prm", reason="trl with PRMTrainer (trl<1.14) not installed")


def tokenizer():
    from meds3.train.common import load_tokenizer

    return load_tokenizer(model_path("tiny-random-llama"))


@pytest.mark.parametrize("separator", ["\n", SEPARATOR])
def test_stepwise_tokens_are_trls_tokenization(separator):
    prm = trl_prm()
    tok = tokenizer()
    for rec in prm_export([make_tree()]):
        row = prm.PRMTrainer.tokenize_row(rec, tok, separator, max_length=None, max_completion_length=None,
                                          train_on_last_step_only=False, is_eval=False)
        tokens = stepwise_tokens(tok, rec["prompt"], rec["completions"], separator)
        assert tokens.input_ids == row["input_ids"]
        labelled = [i for i, v in enumerate(row["labels"]) if v != -100]
        assert tokens.step_ends[1:] == labelled  # Step k's score is read where TRL trained it
        assert [row["labels"][i] for i in labelled] == [int(v) for v in rec["labels"]]
        prompt_ids = tok(rec["prompt"], add_special_tokens=False)["input_ids"]
        assert tokens.response_start == len(prompt_ids) + (tok.bos_token_id is not None)
        assert tokens.step_ends[0] == tokens.response_start - 1  # Step 0 (in the prompt): its last token


def test_trl_prm_trained_on_the_export_is_scored_per_step(tmp_path):
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForTokenClassification

    from meds3.export import TRLPRMScorer

    prm = trl_prm()
    base = model_path("tiny-random-llama")
    write_trees(tmp_path / "run", n_questions=1)
    data = tmp_path / "prm.jsonl"
    assert main(["export", "--trees", str(tmp_path / "run"), "--format", "prm", "--out", str(data),
                 "--no-progress"]) == 0
    dataset = load_dataset("json", data_files=str(data), split="train")
    tok = tokenizer()
    model = AutoModelForTokenClassification.from_pretrained(str(base), num_labels=2)
    model.config.pad_token_id = tok.pad_token_id
    args = prm.PRMConfig(output_dir=str(tmp_path / "trl"), step_separator=SEPARATOR, max_steps=2,
                         per_device_train_batch_size=4, learning_rate=1e-3, use_cpu=True, bf16=False,
                         report_to="none", save_strategy="no", disable_tqdm=True)
    trainer = prm.PRMTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok)
    before = model.score.weight.detach().clone()
    trainer.train()
    assert not torch.equal(before, trainer.model.score.weight.detach())
    trainer.save_model(str(tmp_path / "trl"))

    scorer = TRLPRMScorer(tmp_path / "trl", step_separator=SEPARATOR, device="cpu")
    trajs = [t["steps"] for t in extract_trajectories(make_tree())["pos"] + extract_trajectories(make_tree())["neg"]]
    scores = scorer.score(question(), trajs)
    assert [len(s) for s in scores] == [len(t) for t in trajs] == [3, 4, 3, 3, 3]
    assert all(0.0 < p < 1.0 for s in scores for p in s)
    assert scores[0] == scores[2]  # leaves 3 and 8: the same step texts score the same

    # the packed batch equals each trajectory alone, TRL-tokenized, softmax P(good) at TRL's label positions
    saved = AutoModelForTokenClassification.from_pretrained(str(tmp_path / "trl")).eval()
    for steps, got in zip(trajs, scores):
        tokens = stepwise_tokens(tok, stepwise_prompt(question(), steps[0]), stepwise_completions(steps), SEPARATOR)
        with torch.inference_mode():
            probs = saved(input_ids=torch.tensor([tokens.input_ids])).logits[0].softmax(-1)[:, 1]
        assert got == pytest.approx(probs[tokens.step_ends].tolist(), abs=1e-5)
    assert [s for t in scorer.score_by_prefixes(question(), trajs) for s in t] == pytest.approx(
        [s for t in scores for s in t], abs=1e-5)


def test_one_label_head_scores_with_the_sigmoid(tmp_path):
    import torch
    from transformers import AutoModelForTokenClassification

    from meds3.export import TRLPRMScorer

    tok = tokenizer()
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(str(model_path("tiny-random-llama")), num_labels=1)
    model.save_pretrained(tmp_path / "one")
    tok.save_pretrained(tmp_path / "one")
    steps = extract_trajectories(make_tree())["pos"][1]["steps"]
    got = TRLPRMScorer(tmp_path / "one", device="cpu").score(question(), [steps])[0]
    tokens = stepwise_tokens(tok, stepwise_prompt(question(), steps[0]), stepwise_completions(steps))
    with torch.inference_mode():
        logits = model.eval()(input_ids=torch.tensor([tokens.input_ids])).logits[0, :, 0]
    assert got == pytest.approx(torch.sigmoid(logits[tokens.step_ends]).tolist(), abs=1e-5)
    AutoModelForTokenClassification.from_pretrained(str(model_path("tiny-random-llama")),
                                                    num_labels=3).save_pretrained(tmp_path / "three")
    tok.save_pretrained(tmp_path / "three")
    with pytest.raises(ValueError, match="the head has 3 labels"):
        TRLPRMScorer(tmp_path / "three", device="cpu")


def test_trl_scorer_needs_a_checkpoint(tmp_path):
    from meds3.export import TRLPRMScorer

    with pytest.raises(FileNotFoundError, match="no token-classification checkpoint"):
        TRLPRMScorer(tmp_path)
    with pytest.raises(ValueError, match="step_separator must not be empty"):
        TRLPRMScorer(tmp_path, step_separator="")


@pytest.mark.parametrize("fmt", ["sft", "dpo"])
def test_trl_trainers_read_the_sft_and_dpo_exports(tmp_path, fmt):
    """One optimizer step of TRL's SFTTrainer / DPOTrainer on the export: the records are in
    formats TRL recognizes (conversational messages; conversational preference, explicit prompt)."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM

    trl = pytest.importorskip("trl")
    base = str(model_path("tiny-random-llama"))
    write_trees(tmp_path / "run", n_questions=1)
    data = tmp_path / f"{fmt}.jsonl"
    assert main(["export", "--trees", str(tmp_path / "run"), "--format", fmt, "--out", str(data),
                 "--no-progress"]) == 0
    dataset = load_dataset("json", data_files=str(data), split="train")
    options = dict(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2, use_cpu=True,
                   bf16=False, report_to="none", save_strategy="no", disable_tqdm=True)
    config, trainer_cls = ((trl.SFTConfig, trl.SFTTrainer) if fmt == "sft" else (trl.DPOConfig, trl.DPOTrainer))
    trainer = trainer_cls(model=AutoModelForCausalLM.from_pretrained(base), args=config(**options),
                          train_dataset=dataset, processing_class=tokenizer())
    assert trainer.train().global_step == 1
