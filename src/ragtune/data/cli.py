"""`ragtune data prepare`: clean, split and report on training data before fine-tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError
from rich.table import Table

from ragtune.errors import RagtuneError

# Defined before importing ragtune.cli, which registers it (importing this module first is then no cycle).
data_app = typer.Typer(help="Prepare training data: formats, cleaning, splits, RAFT passages, mixtures.",
                       no_args_is_help=True)

from ragtune.cli import (JsonOption, ProjectOption, _print_json, _project, _user_errors,  # noqa: E402
                         console, err_console)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


@data_app.command()
@_user_errors
def prepare(train: list[str] = typer.Option(..., "--train", help="Training data: FILE[:weight=W][:task=T] (JSONL, "
                                                                  ".txt/.md or a folder of them; `kb` for the "
                                                                  "knowledge base's documents). Repeatable."),
            val: Optional[list[str]] = typer.Option(None, "--val", help="Validation data (else split off --train)."),
            test: Optional[list[str]] = typer.Option(None, "--test", help="Test data (else split off --train)."),
            objective: str = typer.Option("sft", help="sft | cpt | raft"),
            out: Optional[Path] = typer.Option(None, help="Output folder [default: <project>/.ragtune/datasets/"
                                                          "<first train file>-<objective>]."),
            model: Optional[str] = typer.Option(None, help="Generator whose tokenizer measures lengths [default: "
                                                           "models.generator of the project]."),
            val_fraction: float = typer.Option(0.1, help="Share of the training rows held out for validation."),
            test_fraction: float = typer.Option(0.1, help="Share of the training rows held out for testing."),
            seed: int = typer.Option(0, help="Seed of the split, the mixture and RAFT."),
            max_seq_length: int = typer.Option(512, help="Rows longer than this many tokens are removed."),
            raft_k: int = typer.Option(4, help="Passages per RAFT row."),
            raft_gold_fraction: float = typer.Option(0.8, help="Share of RAFT rows that include the gold passage."),
            project: Path = ProjectOption, as_json: bool = JsonOption):
    """Load, clean, split and mix training data, and write it with a report of every removed row."""
    from ragtune.data import PrepareOptions, parse_dataset_spec, prepare_data, write_prepared
    from ragtune.progress import rich_progress

    try:
        options = PrepareOptions(objective=objective, val_fraction=val_fraction, test_fraction=test_fraction,
                                 seed=seed, max_seq_length=max_seq_length, raft_k=raft_k,
                                 raft_gold_fraction=raft_gold_fraction)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
        raise RagtuneError(f"invalid options: {problems}", "see `ragtune data prepare --help`") from None
    train_specs = [parse_dataset_spec(text) for text in train]
    proj = _project(project)
    try:
        tokenizer = _load_tokenizer(model or proj.config.models.generator)
        arguments = dict(val=[parse_dataset_spec(t) for t in val or []] or None,
                         test=[parse_dataset_spec(t) for t in test or []] or None,
                         options=options, tokenizer=tokenizer, knowledge_base=proj.kb)
        if as_json:
            data = prepare_data(train_specs, **arguments)
        else:
            with rich_progress(err_console) as progress:
                data = prepare_data(train_specs, progress=progress, **arguments)
        name = f"{Path(train_specs[0].path).stem}-{objective}"
        out_dir = write_prepared(data, out or proj.workspace.state_dir / "datasets" / name)
    finally:
        proj.close()
    if as_json:
        _print_json({**data.report.to_dict(), "out": str(out_dir)})
    else:
        _print_summary(data.report, out_dir)


def _load_tokenizer(model: str):
    """The tokenizer of a generator: a local folder with tokenizer files, else `trainable_checkpoint(model)`."""
    from transformers import AutoTokenizer

    folder = Path(model).expanduser()
    if not (folder.is_dir() and any((folder / name).is_file() for name in TOKENIZER_FILES)):
        from ragtune.training.checkpoint import trainable_checkpoint

        folder = trainable_checkpoint(model)
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise RagtuneError(f"cannot load the tokenizer of {model} from {folder}: {exc}",
                           "pass --model with a generator name or a Hugging Face model folder") from exc


def _print_summary(report, out_dir: Path) -> None:
    splits = report.splits
    console.print(f"[green]train[/] {splits['train']} rows ({splits['train_weighted']} after weighting)  "
                  f"[cyan]val[/] {splits['val']}  [magenta]test[/] {splits['test']}  "
                  f"[red]removed[/] {len(report.removed)} of {report.stages['loaded']}")
    if report.removed:
        table = Table("removed because", "rows")
        for reason, count in report.removal_reasons().items():
            table.add_row(reason, str(count))
        console.print(table)
    if report.mixture and len(report.mixture) > 1:
        console.print("mixture: " + ", ".join(f"{task} {count}" for task, count in report.mixture.items()))
    if report.lengths:
        console.print("tokens per row: " + ", ".join(f"{key} {value}" for key, value in report.lengths.items()))
    for row in report.leakage:
        console.print(f"  [yellow]leakage[/] {row['origin']} ({row['split']}) repeats train row {row['train_origin']} "
                      f"({row['kind']}): {row['action']}")
    for warning in report.warnings:
        console.print(f"  [yellow]warning[/] {warning}")
    console.print(f"Wrote {out_dir} (train/val/test.jsonl, report.md with every removed row)")
