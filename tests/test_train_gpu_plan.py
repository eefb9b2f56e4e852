"""What the trainers do for large models on a GPU, checked on this CPU: gradient checkpointing
really trains the LoRA, extra TrainingArguments pass through, bad ones and QLoRA without CUDA
fail with a message naming the key."""

from __future__ import annotations

import pytest
import torch
from train_trees import write_trees

from meds3.train import PolicyTrainConfig, PRMTrainConfig
from meds3.train.common import model_dtype, model_load_kwargs, training_arguments


def test_training_arguments_pass_through_and_checkpointing(tmp_path):
    config = PolicyTrainConfig(trees=["x"], gradient_checkpointing=True, device="cpu",
                               training_args={"max_grad_norm": 0.5, "optim": "adamw_torch"})
    args = training_arguments(config, tmp_path, progress=False)
    assert (args.gradient_checkpointing, args.gradient_checkpointing_kwargs) == (True, {"use_reentrant": False})
    optim = args.optim.value if hasattr(args.optim, "value") else args.optim
    assert (args.max_grad_norm, optim) == (0.5, "adamw_torch")
    assert model_dtype(config) == torch.float32 and model_load_kwargs(config) == {"dtype": torch.float32}
    with pytest.raises(ValueError, match="training_args: 'deepspeed_config' is not a TrainingArguments field"):
        PolicyTrainConfig(training_args={"deepspeed_config": "ds.json"})
    with pytest.raises(ValueError, match="load_in_4bit needs a CUDA device"):
        model_load_kwargs(PRMTrainConfig(load_in_4bit=True, device="cpu"))


@pytest.mark.parametrize("kind", ["policy", "prm"])
def test_gradient_checkpointing_trains_the_adapter(tmp_path, kind):
    from safetensors.torch import load_file

    from meds3.train import train_policy, train_prm

    write_trees(tmp_path / "rollout", n_questions=2)
    cls, fn = (PolicyTrainConfig, train_policy) if kind == "policy" else (PRMTrainConfig, train_prm)
    config = cls(trees=[str(tmp_path / "rollout")], base_model="tiny-random-llama", output_dir=str(tmp_path / kind),
                 r=4, alpha=8, dropout=0.0, max_steps=2, batch_size=4, learning_rate=1e-2,
                 gradient_checkpointing=True, device="cpu")
    result = fn(config, progress=False)
    weights = load_file(str(tmp_path / kind / "adapter" / "adapter_model.safetensors"))
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert result.steps == 2 and lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero
