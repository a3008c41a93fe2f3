"""`ragtune finetune` and `ragtune export`: thin commands over ragtune.training."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ragtune.cli import JsonOption, ProjectOption, _print_json, _project, _user_errors, console, err_console
from ragtune.errors import RagtuneError


@_user_errors
def finetune(train: Optional[list[str]] = typer.Option(None, "--train", help="Training data: a JSONL file (Q&A, "
                                                       "instruction or chat), text files for cpt, `kb` for the "
                                                       "knowledge base, or a `ragtune data prepare` folder. "
                                                       "Repeat for a mixture: FILE:weight=2:task=NAME."),
             val: Optional[list[str]] = typer.Option(None, "--val", help="Validation data (default: a split of "
                                                     "the training data)."),
             method: Optional[str] = typer.Option(None, help="full | lora | dora | ia3 | prefix | prompt | freeze "
                                                             "| qlora (default lora)."),
             objective: Optional[str] = typer.Option(None, help="sft (pairs, chats) | cpt (documents) | raft."),
             epochs: Optional[float] = typer.Option(None, help="Passes over the data (default: by dataset size)."),
             max_steps: Optional[int] = typer.Option(None, help="Optimizer steps (wins over --epochs)."),
             learning_rate: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default per method)."),
             batch_size: Optional[int] = typer.Option(None, help="Rows per step."),
             max_seq_length: Optional[int] = typer.Option(None, help="Longest training row in tokens."),
             packing: Optional[bool] = typer.Option(None, "--packing/--no-packing", help="Pack short rows together."),
             seed: Optional[int] = typer.Option(None, help="Seed for splits, data order and initialisation."),
             model: Optional[str] = typer.Option(None, help="Base model (default: the project's generator)."),
             recipe: Optional[Path] = typer.Option(None, help="YAML recipe file; flags override it."),
             out: Optional[Path] = typer.Option(None, help="Run directory (default .ragtune/runs/<time>-<method>)."),
             resume: bool = typer.Option(False, "--resume", help="Continue the unfinished run --out (or the "
                                                                 "latest one) from its last checkpoint."),
             project: Path = ProjectOption, as_json: bool = JsonOption):
    """Fine-tune the model on your data; prints the run directory (--json: the run's metadata)."""
    from ragtune.data import parse_dataset_spec
    from ragtune.data.sources import reads_knowledge_base
    from ragtune.training.recipe import resolve_recipe

    proj = _project(project, existing=reads_knowledge_base([parse_dataset_spec(s) for s in train or []], objective))
    if resume:
        resolved, train_specs, val_specs = None, None, None
    else:
        data_overrides = {"max_seq_length": max_seq_length, "seed": seed}
        overrides = {"objective": objective, "epochs": epochs, "max_steps": max_steps,
                     "learning_rate": learning_rate, "batch_size": batch_size, "packing": packing, "seed": seed,
                     "model": model, "data": {k: v for k, v in data_overrides.items() if v is not None}}
        resolved = resolve_recipe(method, recipe, overrides,
                                  project_defaults={"model": proj.config.models.generator})
        if not train:
            raise RagtuneError("no training data given", "pass --train FILE (repeat it to mix datasets)")
        train_specs = [parse_dataset_spec(spec) for spec in train]
        val_specs = [parse_dataset_spec(spec) for spec in val] if val else None
    result = proj.finetune(train_specs, resolved, val=val_specs, out=out, resume=resume,
                           console=None if as_json else err_console)
    if result is None:  # a non-main process of a multi-process run
        return
    if as_json:
        _print_json(result.metadata)
        return
    _print_run_summary(result.metadata)
    console.print(str(result.run_dir))


def _print_run_summary(metadata: dict) -> None:
    table = Table("run", "value")
    for key in ("method", "objective", "base_model", "trainable_parameters", "total_parameters", "steps",
                "stopped_early", "best_val_loss", "first_train_loss", "last_train_loss", "tokens_seen",
                "tokens_per_second", "train_seconds", "peak_memory_gb", "llamacpp_file"):
        table.add_row(key, str(metadata.get(key)))
    err_console.print(table)


@_user_errors
def export(run: Path = typer.Argument(..., help="A finished run directory."),
           merge: bool = typer.Option(False, "--merge", help="Merge the adapter into the base model."),
           out: Optional[Path] = typer.Option(None, help="Output folder (default RUN/merged)."),
           as_json: bool = JsonOption):
    """Write a standalone merged model (transformers folder + GGUF for llama.cpp) from a run."""
    from ragtune.training.artifacts import MERGED_DIR, export_merged
    from ragtune.training.runs import read_metadata

    metadata = read_metadata(run)
    if not merge:
        raise RagtuneError("nothing to do without --merge: the run already holds its adapter in PEFT format "
                           f"({run}/adapter) and its llama.cpp file", "pass --merge to write a merged model")
    written = export_merged(run, Path(metadata["base_checkpoint"]), out or run / MERGED_DIR)
    if as_json:
        _print_json(written)
        return
    for kind, path in written.items():
        console.print(f"{kind}: {path}")
