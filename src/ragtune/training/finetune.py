"""`finetune`: prepare the data, train with the recipe's method and objective, and leave a finished run.

Read top to bottom: start or resume a run directory → data → model and method → memory check → Trainer →
save the adapter or model → llama.cpp files → curves, metadata → rename the run as finished.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from accelerate import PartialState
from rich.console import Console
from transformers import TrainerCallback, set_seed

from ragtune.atomic_files import write_bytes_atomically
from ragtune.data import (DatasetSpec, PreparedData, TrainingCollator, encode_examples, encode_texts,
                          pack_sequences, prepare_data, read_prepared, write_prepared)
from ragtune.errors import RagtuneError
from ragtune.process_memory import release_freed_memory
from ragtune.progress import SilentProgress, rich_progress
from ragtune.training import runs
from ragtune.training.artifacts import write_llamacpp_files
from ragtune.training.callbacks import JsonlLogCallback, RichProgressCallback, SessionClockCallback, read_log
from ragtune.training.checkpoint import source_gguf, trainable_checkpoint
from ragtune.training.curves import plot_curves
from ragtune.training.label_only_loss import use_label_only_loss
from ragtune.training.memory import MemoryPlan, peak_memory_gb, plan_memory, profile_activations, reset_peak_memory
from ragtune.training.methods import (NO_GRADIENT_CHECKPOINTING, apply_method, check_gradient_checkpointing,
                                      check_method_available, quantization_config, trainable_parameters)
from ragtune.training.recipe import TrainingRecipe, load_recipe, save_recipe
from ragtune.training.sampled_metrics import sampled_generation_metrics
from ragtune.training.trainer_setup import (build_trainer, device_type, process_state, training_arguments, use_bf16,
                                            world_size)

log = logging.getLogger(__name__)
SESSIONS_FILE = "sessions.jsonl"  # one line per training session: wall time of the run and of each resume
INITIAL_EVAL_FILE = "initial_eval.json"  # validation loss before the first step


@dataclass
class FinetuneResult:
    run_dir: Path
    metadata: dict


def finetune(train: list[DatasetSpec] | None, recipe: TrainingRecipe | None, *, runs_dir: Path,
             val: list[DatasetSpec] | None = None, out: Path | None = None, resume: bool = False,
             knowledge_base_factory: Callable[[], object] | None = None, console: Console | None = None,
             callbacks: list[TrainerCallback] = ()) -> FinetuneResult | None:
    """Train a model and return the finished run (None on the non-main processes of a multi-process run).

    `resume=True` continues the unfinished run `out` (or the latest one under `runs_dir`) from its last
    checkpoint with its saved recipe and data; the result equals an uninterrupted run.
    `knowledge_base_factory` opens the workspace's knowledge base, needed for RAFT and `kb` documents.
    """
    state = process_state()
    if world_size() > 1 and out is None:
        raise RagtuneError("a multi-process run needs its directory named up front",
                           "add --out RUN_DIR so every process writes the same run")
    work_dir = _resumable_dir(runs_dir, out) if resume else _new_run_dir(runs_dir, out, recipe, state)
    if runs.is_finished_run(work_dir):  # finished, perhaps killed before taking its final name
        return FinetuneResult(runs.complete_finish(work_dir), runs.read_metadata(runs.final_dir(work_dir))) \
            if state.is_main_process else None
    try:
        session = _prepare_session(work_dir, train, val, None if resume else recipe, knowledge_base_factory,
                                   console, state)
    except Exception:
        if not resume and state.is_main_process:  # nothing trained yet: leave no half-made run behind
            shutil.rmtree(work_dir, ignore_errors=True)
        raise
    result = _train(session, work_dir, resume=resume, console=console, callbacks=callbacks, state=state)
    del session  # the model, optimizer state and data: what a following stage of the same process can reuse
    release_freed_memory()
    return result


@dataclass
class _Session:
    """Everything a training session needs, built before the first step."""

    recipe: TrainingRecipe
    checkpoint: Path
    tokenizer: object
    data: PreparedData
    train_rows: list[dict]
    val_rows: list[dict]
    model: object
    trainable: int
    total: int
    memory: MemoryPlan


def _prepare_session(work_dir: Path, train, val, recipe: TrainingRecipe | None, knowledge_base_factory,
                     console: Console | None, state: PartialState) -> _Session:
    recipe = recipe or load_recipe(work_dir / runs.RECIPE_FILE)
    check_method_available(recipe.method)
    check_gradient_checkpointing(recipe)
    checkpoint = trainable_checkpoint(recipe.model)
    tokenizer = _load_tokenizer(checkpoint)
    with state.main_process_first():  # the main process prepares the data; the others read what it wrote
        data = _run_data(work_dir, train, val, recipe, tokenizer, knowledge_base_factory, console, state)
    train_rows, val_rows = _encode(data, tokenizer, recipe)
    _say(console, state, [*filter(None, [data.report.removal_summary()]), *data.report.warnings])
    model = _load_model(checkpoint, recipe)
    _check_context(model, recipe)
    use_label_only_loss(model)
    set_seed(recipe.seed)  # new adapter weights are drawn at random: the same recipe must draw the same ones
    model = apply_method(model, recipe)
    trainable, total = trainable_parameters(model)
    memory = _plan_memory(model, recipe, _longest(train_rows + val_rows), state)
    _say(console, state, [warning] if (warning := memory.warning()) else [])
    return _Session(recipe, checkpoint, tokenizer, data, train_rows, val_rows, model, trainable, total, memory)


def _plan_memory(model, recipe: TrainingRecipe, seq_length: int, state: PartialState) -> MemoryPlan:
    """The main process's micro-batch plan, on every process: processes that accumulated gradients over different
    numbers of micro-batches would synchronise at different steps."""
    profile = profile_activations(model, bf16=use_bf16(recipe.precision))
    plan = plan_memory(model, profile, batch_size=recipe.batch_size, gradient_accumulation=recipe.gradient_accumulation,
                       seq_length=seq_length, gradient_checkpointing=recipe.gradient_checkpointing,
                       limit_gb=recipe.memory_limit_gb, device=device_type(),
                       checkpointing_possible=recipe.method not in NO_GRADIENT_CHECKPOINTING)
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        plan = broadcast_object_list([plan], from_process=0)[0]
    return plan


def _train(session: _Session, work_dir: Path, *, resume: bool, console: Console | None,
           callbacks: list[TrainerCallback], state: PartialState) -> FinetuneResult | None:
    recipe, tokenizer = session.recipe, session.tokenizer
    checkpoints_dir = work_dir / runs.CHECKPOINTS_DIR
    last_checkpoint = _last_complete_checkpoint(checkpoints_dir, state) if resume and checkpoints_dir.is_dir() else None
    if resume and last_checkpoint is None:
        _say(console, state, [f"no checkpoint in {work_dir} yet: training restarts from the first step"])
    if state.is_main_process:
        _truncate_log(work_dir / runs.LOG_FILE, last_checkpoint)
    run_callbacks = [JsonlLogCallback(work_dir / runs.LOG_FILE),
                     SessionClockCallback(work_dir / SESSIONS_FILE, last_checkpoint), *callbacks]
    if console is not None:
        run_callbacks.append(RichProgressCallback(console))
    args = training_arguments(recipe, checkpoints_dir, session.memory, train_rows=len(session.train_rows),
                              has_validation=bool(session.val_rows))
    trainer = build_trainer(session.model, tokenizer, recipe, args, train_rows=session.train_rows,
                            val_rows=session.val_rows, collator=TrainingCollator(tokenizer.pad_token_id),
                            callbacks=run_callbacks, tensorboard_dir=work_dir / runs.TENSORBOARD_DIR)
    if session.val_rows and last_checkpoint is None:  # the untrained model's loss: where the curve starts
        _record_initial_val_loss(work_dir, trainer.evaluate()["eval_loss"], state)
    reset_peak_memory(device_type())  # the peak of training itself, to set against the estimate
    trainer.train(resume_from_checkpoint=last_checkpoint)
    training_peak_gb = peak_memory_gb(device_type())
    if not state.is_main_process:
        return None

    weights_dir = work_dir / (runs.ADAPTER_DIR if hasattr(trainer.model, "peft_config") else runs.MODEL_DIR)
    trainer.save_model(str(weights_dir))  # the best checkpoint's weights when there was validation data
    tokenizer.save_pretrained(weights_dir)
    gguf_file = write_llamacpp_files(work_dir, recipe.method, session.checkpoint)
    history = read_log(work_dir / runs.LOG_FILE)
    plot_curves(history, work_dir / runs.CURVES_FILE, f"{recipe.model} · {recipe.method} · {recipe.objective}")
    metadata = _metadata(session, trainer, history, work_dir, gguf_file=gguf_file, training_peak_gb=training_peak_gb)
    run_dir = runs.finish_run(work_dir, metadata)
    if recipe.generation_samples:
        runs.update_metadata(run_dir, validation_generation=sampled_generation_metrics(
            run_dir, session.data.val, recipe.generation_samples))
    return FinetuneResult(run_dir, runs.read_metadata(run_dir))


def _new_run_dir(runs_dir: Path, out: Path | None, recipe: TrainingRecipe, state: PartialState) -> Path:
    final = out or runs.unused_run_dir(runs_dir, runs.new_run_name(recipe.method, recipe.objective))
    if final.exists():
        raise RagtuneError(f"{final} already exists", "choose another --out, or delete the old run")
    work_dir = runs.partial_dir(final)
    if state.is_main_process:
        if (work_dir / runs.RECIPE_FILE).is_file():
            raise RagtuneError(f"{work_dir} holds an unfinished run",
                               f"resume it with `ragtune finetune --resume --out {final}`, or delete it")
        shutil.rmtree(work_dir, ignore_errors=True)  # killed before its recipe was written: nothing to resume
        work_dir.mkdir(parents=True)
        save_recipe(recipe, work_dir / runs.RECIPE_FILE)
    state.wait_for_everyone()
    return work_dir


def _resumable_dir(runs_dir: Path, out: Path | None) -> Path:
    if out is None:
        return runs.latest_partial_run(runs_dir)
    work_dir = out if out.name.endswith(runs.PARTIAL_SUFFIX) else runs.partial_dir(out)
    if not (work_dir / runs.RECIPE_FILE).is_file():
        if runs.is_finished_run(runs.final_dir(work_dir)):
            return runs.final_dir(work_dir)  # finished before (perhaps killed just after): nothing left to do
        raise RagtuneError(f"no unfinished run at {work_dir}", "pass the directory `ragtune finetune` printed")
    return work_dir


def _run_data(work_dir: Path, train, val, recipe: TrainingRecipe, tokenizer, knowledge_base_factory,
              console: Console | None, state: PartialState) -> PreparedData:
    """The run's data, prepared once and kept in the run directory so a resumed run sees the same rows."""
    data_dir = work_dir / runs.DATA_DIR
    if (data_dir / "train.jsonl").is_file():
        return read_prepared(data_dir)
    if not state.is_main_process:
        raise RagtuneError(f"the main process did not write {data_dir}", "see its error above")
    if not train:
        raise RagtuneError("no training data given", "pass --train FILE (a JSONL file or a prepared dataset)")
    needs_kb = recipe.objective == "raft" or any(spec.path == "kb" for spec in train)
    knowledge_base = knowledge_base_factory() if needs_kb and knowledge_base_factory else None
    options = recipe.data.model_copy(update={"objective": recipe.objective})
    with rich_progress(console) if console is not None else nullcontext(SilentProgress()) as progress:
        data = prepare_data(train, val=val, options=options, tokenizer=tokenizer, knowledge_base=knowledge_base,
                            progress=progress)
    write_prepared(data, data_dir)
    return data


def _encode(data: PreparedData, tokenizer, recipe: TrainingRecipe) -> tuple[list[dict], list[dict]]:
    length = recipe.data.max_seq_length
    encode = encode_texts if recipe.objective == "cpt" else encode_examples
    train_rows, val_rows = encode(data.train, tokenizer, length), encode(data.val, tokenizer, length)
    if recipe.packing:
        train_rows = pack_sequences(train_rows, length, recipe.seed)
    if not train_rows:
        raise RagtuneError("no training rows are left after encoding", "see the data report in the run directory")
    return train_rows, val_rows


def _load_tokenizer(checkpoint: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_model(checkpoint: Path, recipe: TrainingRecipe):
    import torch
    from transformers import AutoModelForCausalLM

    quantization = quantization_config(recipe.method)
    return AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32 if quantization is None else None,
                                                quantization_config=quantization)


def _check_context(model, recipe: TrainingRecipe) -> None:
    context = getattr(model.config, "max_position_embeddings", None)
    if context and recipe.data.max_seq_length > context:
        raise RagtuneError(f"max_seq_length {recipe.data.max_seq_length} is longer than the model's context "
                           f"({context} tokens)", f"set --max-seq-length to at most {context}")


def _longest(rows: list[dict]) -> int:
    return max(len(row["input_ids"]) for row in rows)


def _truncate_log(path: Path, last_checkpoint: str | None) -> None:
    """On resume, drop log lines past the checkpoint, or all of them without one (the resumed run logs those steps,
    and the untrained model's validation loss, again)."""
    if not path.exists():
        return
    keep_until = _step_of(last_checkpoint)
    kept = [record for record in read_log(path) if keep_until is not None and record["step"] <= keep_until]
    write_bytes_atomically(path, "".join(json.dumps(record) + "\n" for record in kept).encode("utf-8"))


def _record_initial_val_loss(work_dir: Path, loss: float, state: PartialState) -> None:
    if state.is_main_process:
        (work_dir / INITIAL_EVAL_FILE).write_text(json.dumps({"eval_loss": loss}), encoding="utf-8")


def _initial_val_loss(work_dir: Path) -> float | None:
    path = work_dir / INITIAL_EVAL_FILE
    return json.loads(path.read_text(encoding="utf-8"))["eval_loss"] if path.exists() else None


def _metadata(session: _Session, trainer, history: list[dict], work_dir: Path, *, gguf_file: Path | None,
              training_peak_gb: float) -> dict:
    recipe, checkpoint, data, state = session.recipe, session.checkpoint, session.data, trainer.state
    base_gguf = source_gguf(checkpoint)
    sessions = read_log(work_dir / SESSIONS_FILE)
    train_seconds = sum(session["seconds"] for session in sessions)
    losses = [record["loss"] for record in history if "loss" in record]
    return {
        "base_model": recipe.model,
        "base_checkpoint": str(checkpoint),
        "base_gguf": str(base_gguf) if base_gguf else None,
        "method": recipe.method,
        "objective": recipe.objective,
        "recipe_changes": recipe.describe_changes(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "train_seconds": round(train_seconds, 2),
        "sessions": len(sessions),
        "peak_memory_gb": round(training_peak_gb, 3),
        "memory": session.memory.to_dict(),
        "trainable_parameters": session.trainable,
        "total_parameters": session.total,
        "tokens_seen": int(state.num_input_tokens_seen),
        "tokens_per_second": round(state.num_input_tokens_seen / train_seconds, 1) if train_seconds else None,
        "steps": state.global_step,
        "max_steps": state.max_steps,
        "epochs": round(state.epoch or 0, 3),
        "stopped_early": state.global_step < state.max_steps,
        "initial_val_loss": _initial_val_loss(work_dir),
        "best_val_loss": state.best_metric,
        "best_checkpoint_step": _step_of(state.best_model_checkpoint),
        "first_train_loss": losses[0] if losses else None,
        "last_train_loss": losses[-1] if losses else None,
        "rows": {"train": len(data.train), "val": len(data.val)},
        "world_size": world_size(),
        "device": device_type(),
        "precision": "bf16" if use_bf16(recipe.precision) else "fp32",
        "llamacpp_file": gguf_file.name if gguf_file else None,
    }


def _last_complete_checkpoint(checkpoints_dir: Path, state: PartialState) -> str | None:
    """The latest checkpoint written whole, short of the last step. The Trainer writes trainer_state.json last, so a
    checkpoint whose state file is missing or does not parse was being written when the run was killed: the main
    process removes it. So it does the checkpoint of the final step (a run killed while writing its result): the
    Trainer resumed from there trains one step past the end, so the run resumes from the checkpoint before it."""
    numbered = [path for path in checkpoints_dir.glob("checkpoint-*") if path.name.split("-", 1)[1].isdigit()]
    for checkpoint in sorted(numbered, key=lambda path: _step_of(str(path)), reverse=True):
        try:
            saved = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
            if not 0 < saved.get("max_steps", 0) <= saved.get("global_step", 0):
                return str(checkpoint)
        except (OSError, ValueError):
            pass
        if state.is_main_process:
            shutil.rmtree(checkpoint, ignore_errors=True)
    return None


def _step_of(checkpoint: str | None) -> int | None:
    return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else None


def _say(console: Console | None, state: PartialState, messages: list[str]) -> None:
    for message in messages:
        if console is None:
            log.warning(message)
        elif state.is_main_process:
            console.print(f"[yellow]warning:[/] {message}")
