"""What the policy and PRM trainers share: the LoRA training config, devices, transformers
``TrainingArguments``, the output layout and the summary with its loss curve."""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Optional, Union

from meds3.data.errors import DataError
from meds3.data.prompts import PromptConfig
from meds3.io import atomic_write_figure, atomic_write_json

logger = logging.getLogger(__name__)

META_FILE = "meds3_train.json"  # beside the adapter: base model, kind, prompt format
LLAMA_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class NoTrainingData(DataError):
    """The trees hold no example for this trainer (no correct path for the policy, no finished
    path for the PRM): a small search with a weak model can end that way."""


#: Keys of ``summary.json`` written before :class:`TrainResult` (read back by :meth:`TrainResult.from_dict`).
_LEGACY_LOSS_KEYS = ("first_loss", "last_loss")


@dataclass
class TrainResult:
    """What a policy or PRM training run produced (``train_policy`` / ``train_prm`` return it).

    ``output_dir`` is what a later stage loads: the adapter folder of a policy (an engine's
    ``adapter``), the PRM output folder of a PRM (``PRMScorer(output_dir)``); ``None`` for a
    skipped run with nothing to load. ``skipped`` says why a run trained nothing (no correct
    trajectory for the policy, no finished one for the PRM); the counts are then 0.
    """

    kind: str  # "policy" or "prm"
    output_dir: Optional[str]
    records: int = 0  # records written to data.jsonl
    metrics: dict[str, float] = field(default_factory=dict)  # first_loss, last_loss (when a loss was logged)
    skipped: Optional[str] = None
    examples: int = 0  # tokenized examples (a record can be dropped when nothing is left to learn)
    questions: int = 0  # distinct questions of the records
    steps: int = 0  # optimizer steps
    epochs: float = 0.0
    losses: list[float] = field(default_factory=list)  # every logged training loss
    seconds: float = 0.0  # wall time of trainer.train()
    adapter_dir: Optional[str] = None
    loss_png: Optional[str] = None
    device: Optional[str] = None  # "cpu" or "cuda"
    merged_dir: Optional[str] = None  # policy with merge=true
    correct_records: Optional[int] = None  # PRM: records whose trajectory ends correct
    loss_type: Optional[str] = None  # PRM: bce, hard or mse

    @classmethod
    def skip(cls, kind: str, reason: str, output_dir: Optional[str] = None) -> "TrainResult":
        """A run that trained nothing, with why; ``output_dir``: what to use instead (the
        previous policy's adapter), if anything."""
        return cls(kind=kind, output_dir=output_dir, skipped=reason,
                   adapter_dir=output_dir if kind == "policy" else None)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON data (:meth:`from_dict` reads it back)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], kind: Optional[str] = None) -> "TrainResult":
        """A result from :meth:`to_dict`, or from a ``summary.json`` / stage summary written
        before this class (flat ``first_loss``/``last_loss``, no ``output_dir``; a skipped
        one as ``{"skipped": reason, "adapter_dir": ...}``, whose ``kind`` is then given).

        Raises:
            ValueError: not a mapping, no ``kind``, or a key that is no field (named).
        """
        if not isinstance(data, dict):
            raise ValueError(f"a training result is a JSON object, got {type(data).__name__}")
        data = dict(data)
        names = {f.name for f in fields(cls)}
        metrics = dict(data.pop("metrics", None) or {})
        for key in _LEGACY_LOSS_KEYS:
            value = data.pop(key, None)
            if value is not None:
                metrics.setdefault(key, float(value))
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"training result: unknown key(s) {', '.join(map(repr, unknown))}")
        data.setdefault("kind", kind)
        if data["kind"] not in ("policy", "prm"):
            raise ValueError(f"training result: kind must be 'policy' or 'prm', got {data['kind']!r}")
        if "output_dir" not in data:  # written before TrainResult: derive what to load
            adapter = data.get("adapter_dir")
            data["output_dir"] = (adapter if data["kind"] == "policy" or adapter is None
                                  else str(Path(adapter).parent))
        return cls(**data, metrics=metrics)

    def summary(self) -> dict[str, Any]:
        """The content of ``summary.json``: the layout it has always had (flat first/last loss,
        kind-specific keys only where they apply)."""
        out: dict[str, Any] = {
            "kind": self.kind, "records": self.records, "examples": self.examples, "steps": self.steps,
            "epochs": self.epochs, "first_loss": self.metrics.get("first_loss"),
            "last_loss": self.metrics.get("last_loss"), "losses": list(self.losses), "seconds": self.seconds,
            "adapter_dir": self.adapter_dir, "loss_png": self.loss_png,
        }
        if self.correct_records is not None:
            out["correct_records"] = self.correct_records
        out["questions"] = self.questions
        if self.loss_type is not None:
            out["loss_type"] = self.loss_type
        out["device"] = self.device
        if self.merged_dir is not None:
            out["merged_dir"] = self.merged_dir
        if self.skipped is not None:
            out["skipped"] = self.skipped
        return out


#: Largest LoRA rank accepted: already the hidden size of an 8B model; beyond it a typo.
MAX_LORA_RANK = 4096


@dataclass
class LoRATrainConfig:
    """Fields common to LoRA trainers. Defaults: the MedS3 paper (lr 2e-4, 1 epoch)."""

    trees: list[str] = field(default_factory=list)  # rollout output folders, tree folders or shard files
    base_model: str = "smollm2-135m-instruct"  # path, embedded alias or Hugging Face id
    output_dir: str = "runs/train"
    r: int = 16  # LoRA rank
    alpha: int = 32  # LoRA alpha
    dropout: float = 0.05  # LoRA dropout
    target_modules: list[str] = field(default_factory=lambda: list(LLAMA_LINEAR))
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: Optional[int] = None  # optimizer steps cap (None: whole epochs)
    batch_size: int = 4  # per device
    grad_accum: int = 1
    max_length: int = 1024  # tokens per example; longer ones are cut (PRM: later steps lose labels)
    warmup_ratio: float = 0.0
    lr_scheduler: str = "linear"  # a transformers scheduler name
    weight_decay: float = 0.0
    logging_steps: int = 1  # optimizer steps between logged losses
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"  # float32 on CPU; bf16 weights and mixed precision on GPU
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (8B on one GPU: on)
    load_in_4bit: bool = False  # QLoRA: the frozen base in 4-bit NF4 (needs bitsandbytes and a GPU)
    training_args: dict[str, Any] = field(default_factory=dict)  # extra TrainingArguments (deepspeed, fsdp, ...)
    # where transformers reports the losses: none, tensorboard, wandb, ... or a list (meds3.tracking)
    report_to: Union[str, list[str]] = "none"
    logging_dir: Optional[str] = None  # tensorboard event folder (None: <output_dir>/trainer/runs/<time>_<host>)
    prompt: PromptConfig = field(default_factory=PromptConfig)

    def __post_init__(self) -> None:
        if isinstance(self.trees, str):
            self.trees = [self.trees]
        from meds3.config import check_finite, check_output_dir

        check_finite(self)  # a NaN learning rate passes `<= 0` and trains nothing but NaNs
        check_output_dir(self.output_dir)
        for name in ("r", "alpha", "batch_size", "grad_accum", "max_length", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.r > MAX_LORA_RANK:
            raise ValueError(f"r (LoRA rank) must be at most {MAX_LORA_RANK}, got {self.r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or null, got {self.max_steps}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not self.target_modules:
            raise ValueError("target_modules must name at least one module")
        from meds3.tracking import report_targets

        report_targets(self.report_to)  # an unknown integration fails here, not after loading the model
        if self.logging_dir is not None:
            check_output_dir(self.logging_dir, "logging_dir")
        for key in ("report_to", "logging_dir"):
            if key in self.training_args:
                raise ValueError(f"training_args: set {key} as the config key {key!r}, not in training_args")
        if self.training_args:
            import inspect

            from transformers import TrainingArguments

            known = set(inspect.signature(TrainingArguments.__init__).parameters)
            for key in self.training_args:
                if key not in known:
                    raise ValueError(f"training_args: {key!r} is not a TrainingArguments field")


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``.

    Raises:
        ValueError: ``"cuda"`` asked for on a machine without it.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for but CUDA is not available")
    return device


def model_dtype(config: LoRATrainConfig):
    """Weights' dtype: float32 on CPU (no fast bf16 matmul there), bfloat16 on CUDA (an 8B model
    in float32 alone takes 32 GB)."""
    import torch

    return torch.bfloat16 if resolve_device(config.device) == "cuda" else torch.float32


def model_load_kwargs(config: LoRATrainConfig) -> dict[str, Any]:
    """``from_pretrained`` options of the base model: dtype, and the 4-bit QLoRA quantization.

    Raises:
        ValueError: ``load_in_4bit`` without CUDA or without bitsandbytes.
    """
    kwargs: dict[str, Any] = {"dtype": model_dtype(config)}
    if config.load_in_4bit:
        import importlib.util

        if resolve_device(config.device) != "cuda":
            raise ValueError("load_in_4bit needs a CUDA device (bitsandbytes 4-bit kernels)")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ValueError("load_in_4bit needs bitsandbytes: pip install bitsandbytes")
        import torch
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    return kwargs


def prepare_for_training(model, config: LoRATrainConfig):
    """Before ``get_peft_model``: k-bit preparation (QLoRA) and input gradients for gradient
    checkpointing through a frozen base."""
    if config.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    elif config.gradient_checkpointing:
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    return model


def load_tokenizer(path: str | os.PathLike):
    """The model's tokenizer, right-padded (positions of real tokens start at 0)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    tok.padding_side = "right"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def lora_config(config: LoRATrainConfig, task_type: str):
    """peft ``LoraConfig`` from the training config."""
    from peft import LoraConfig

    return LoraConfig(task_type=task_type, r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.target_modules))


def training_arguments(config: LoRATrainConfig, output_dir: Path, progress: bool):
    """transformers ``TrainingArguments``: no checkpoints, a loss logged every ``logging_steps``
    and reported to ``config.report_to``."""
    from transformers import TrainingArguments

    from meds3.tracking import report_targets

    device = resolve_device(config.device)
    return TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.learning_rate,
        num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        lr_scheduler_type=config.lr_scheduler, warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay, logging_steps=config.logging_steps, seed=config.seed,
        data_seed=config.seed, save_strategy="no", report_to=report_targets(config.report_to) or "none",
        use_cpu=device == "cpu",
        bf16=device == "cuda", disable_tqdm=not progress, remove_unused_columns=False,
        dataloader_num_workers=0, logging_first_step=True,
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        **config.training_args,
    )


def attach_logging(trainer, progress: bool) -> None:
    """Log each training loss through ``logging`` instead of the ``Trainer`` printing dicts
    to standard output when its progress bar is off (stdout carries the CLI's summary)."""
    from transformers import PrinterCallback, TrainerCallback

    class LossLogger(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                logger.info("step %d/%d: loss %.4f", state.global_step, state.max_steps, float(logs["loss"]))

    if not progress:
        trainer.remove_callback(PrinterCallback)
    trainer.add_callback(LossLogger())


def attach_logging_dir(trainer, config: LoRATrainConfig) -> None:
    """Send the tensorboard events of ``report_to`` to ``config.logging_dir`` (None: transformers'
    default, ``<trainer output_dir>/runs/<time>_<host>``).

    Why a callback of our own: transformers 5 removed ``TrainingArguments.logging_dir`` (its
    ``TensorBoardCallback`` reads the ``TENSORBOARD_LOGGING_DIR`` environment variable instead,
    which would leak into every later run of the process); a callback built with its writer
    is the public way to choose the folder.
    """
    from transformers.integrations import TensorBoardCallback

    if config.logging_dir is None:
        return
    if not any(isinstance(cb, TensorBoardCallback) for cb in trainer.callback_handler.callbacks):
        return  # tensorboard is not among report_to
    from torch.utils.tensorboard import SummaryWriter

    trainer.remove_callback(TensorBoardCallback)
    trainer.add_callback(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=config.logging_dir)))


def loss_history(log_history: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """``(step, loss)`` pairs from ``trainer.state.log_history``."""
    return [(int(e["step"]), float(e["loss"])) for e in log_history if "loss" in e and "step" in e]


def plot_loss(history: list[tuple[int, float]], path: Path, title: str) -> Path:
    """Write the training loss curve as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if history:
        steps, losses = zip(*history)
        ax.plot(steps, losses, marker="o" if len(steps) < 40 else None, lw=1.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write_figure(fig, path)
    plt.close(fig)
    return path


def write_meta(adapter_dir: Path, kind: str, config: LoRATrainConfig, **extra: Any) -> None:
    """Record how to rebuild the model around the adapter (read by the PRM scorer)."""
    from meds3.config import to_dict

    meta = {"kind": kind, "base_model": config.base_model, "prompt": to_dict(config.prompt), **extra}
    atomic_write_json(adapter_dir / META_FILE, meta)


def finish_summary(out: Path, kind: str, trainer, n_records: int, n_examples: int, seconds: float,
                   adapter_dir: Path, output_dir: Path, **extra: Any) -> TrainResult:
    """Write ``summary.json`` and ``loss.png``; return the run's :class:`TrainResult`.

    Args:
        extra: further :class:`TrainResult` fields (``questions``, ``device``, ...).
    """
    history = [(step, round(loss, 6)) for step, loss in loss_history(trainer.state.log_history)]
    plot_loss(history, out / "loss.png", f"{kind} LoRA training loss")
    metrics = {"first_loss": history[0][1], "last_loss": history[-1][1]} if history else {}
    result = TrainResult(
        kind=kind, output_dir=str(output_dir), records=n_records, metrics=metrics, examples=n_examples,
        steps=int(trainer.state.global_step), epochs=round(float(trainer.state.epoch or 0), 4),
        losses=[v for _, v in history], seconds=round(seconds, 1), adapter_dir=str(adapter_dir),
        loss_png=str(out / "loss.png"), **extra)
    atomic_write_json(out / "summary.json", result.summary())
    logger.info("%s training: %d examples, %d steps, loss %s -> %s in %.0f s; adapter in %s", kind, n_examples,
                result.steps, metrics.get("first_loss"), metrics.get("last_loss"), seconds, adapter_dir)
    return result
