"""Build the transformers Trainer for a recipe: arguments, schedule of evaluations and checkpoints, callbacks.

ragtune trains with the stock `transformers.Trainer` (accelerate underneath): checkpoints with optimizer,
scheduler and RNG state, exact resumption, DDP/FSDP under `accelerate launch`, early stopping and best-model
selection all come from there; this module only chooses the settings.
"""

from __future__ import annotations

import math
from importlib.util import find_spec
from pathlib import Path

import torch
from accelerate import PartialState
from torch.utils.data import Dataset
from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from ragtune.training.callbacks import TimedCheckpointCallback
from ragtune.training.memory import MemoryPlan
from ragtune.training.recipe import TrainingRecipe

AUTO_EVALUATIONS = 10  # validation runs per training run when eval_every is not set


class RowDataset(Dataset):
    """A list of encoded rows (dicts of token lists) as a torch Dataset."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]


def process_state() -> PartialState:
    """This process's place in a (possibly multi-process) run. Created first with `cpu` set where there is no
    GPU: without it, processes started by `accelerate launch`/torchrun on CPUs would each train alone."""
    return PartialState(cpu=not torch.cuda.is_available())


def world_size() -> int:
    """Processes taking part in training (started by `accelerate launch` or torchrun)."""
    return process_state().num_processes


def device_type() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def use_bf16(precision: str) -> bool:
    """bf16 when asked, or for "auto" where the GPU or CPU (AVX512-BF16 / AMX) computes it natively."""
    if precision != "auto":
        return precision == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def auto_epochs(train_rows: int) -> float:
    """Epochs when the recipe leaves them open: 3 for ordinary datasets, up to 10 for few-shot ones
    (about 300 rows seen in total), with early stopping guarding against overfitting."""
    return float(min(10, max(3, math.ceil(300 / max(train_rows, 1)))))


def total_steps(recipe: TrainingRecipe, train_rows: int) -> int:
    """Optimizer steps the run will take (what Trainer computes, needed here to schedule evaluations)."""
    if recipe.max_steps:
        return recipe.max_steps
    rows_per_step = recipe.batch_size * recipe.gradient_accumulation * world_size()
    epochs = recipe.epochs or auto_epochs(train_rows)
    return max(1, math.ceil(epochs * math.ceil(train_rows / rows_per_step)))


def training_arguments(recipe: TrainingRecipe, output_dir: Path, memory: MemoryPlan, *, train_rows: int,
                       has_validation: bool) -> TrainingArguments:
    """TrainingArguments for `recipe`: evaluations about AUTO_EVALUATIONS per run; checkpoints every `save_every`
    steps, or else at each new best validation loss (the TimedCheckpointCallback of `build_trainer` adds
    checkpoints by time). Rows per step are split into `memory`'s micro-batches. Checkpoints hold the optimizer
    state: for full fine-tuning three times the model's size, which on a short CPU run costs as much as the
    training (BENCHMARKS.md), hence none by default."""
    steps = total_steps(recipe, train_rows)
    eval_every = recipe.eval_every or max(1, steps // AUTO_EVALUATIONS)
    save_every = recipe.save_every
    if save_every and has_validation and save_every % eval_every:
        save_every = eval_every * max(1, round(save_every / eval_every))  # best-model tracking needs aligned steps
    save_strategy = "steps" if save_every else ("best" if has_validation else "no")
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=memory.micro_batch_size,
        per_device_eval_batch_size=memory.micro_batch_size,
        gradient_accumulation_steps=memory.gradient_accumulation,
        learning_rate=recipe.learning_rate,
        num_train_epochs=recipe.epochs or auto_epochs(train_rows),
        max_steps=recipe.max_steps or -1,
        warmup_steps=recipe.warmup,
        lr_scheduler_type=recipe.scheduler,
        weight_decay=recipe.weight_decay,
        max_grad_norm=recipe.max_grad_norm,
        seed=recipe.seed,
        data_seed=recipe.seed,
        bf16=use_bf16(recipe.precision),
        use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=memory.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if memory.gradient_checkpointing else None,
        eval_strategy="steps" if has_validation else "no",
        eval_steps=eval_every if has_validation else None,
        save_strategy=save_strategy,
        **({"save_steps": save_every} if save_every else {}),
        save_total_limit=2,  # the best and the latest
        load_best_model_at_end=has_validation,
        metric_for_best_model="eval_loss" if has_validation else None,
        greater_is_better=False if has_validation else None,
        logging_steps=max(1, min(eval_every, 10)),
        logging_first_step=True,
        report_to="none",
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False if world_size() > 1 else None,
    )


def build_trainer(model, tokenizer, recipe: TrainingRecipe, args: TrainingArguments, *, train_rows: list[dict],
                  val_rows: list[dict], collator, tensorboard_dir: Path,
                  callbacks: list[TrainerCallback]) -> Trainer:
    """The Trainer with early stopping (when there is validation data) and the logging callbacks."""
    all_callbacks = list(callbacks) + _tracking_callbacks(tensorboard_dir)
    if recipe.save_every is None:
        all_callbacks.append(TimedCheckpointCallback(recipe.checkpoint_minutes))
    if val_rows and recipe.patience:
        all_callbacks.append(EarlyStoppingCallback(early_stopping_patience=recipe.patience))
    trainer = Trainer(model=model, args=args, train_dataset=RowDataset(train_rows),
                      eval_dataset=RowDataset(val_rows) if val_rows else None, data_collator=collator,
                      processing_class=tokenizer, callbacks=all_callbacks)
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts to stdout; ragtune has its own progress
    return trainer


def _tracking_callbacks(tensorboard_dir: Path) -> list[TrainerCallback]:
    """TensorBoard always (its writer is a dependency); MLflow when the user has installed it."""
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import MLflowCallback, TensorBoardCallback

    callbacks: list[TrainerCallback] = [TensorBoardCallback(tb_writer=SummaryWriter(str(tensorboard_dir)))]
    if find_spec("mlflow") is not None:
        callbacks.append(MLflowCallback())
    return callbacks
