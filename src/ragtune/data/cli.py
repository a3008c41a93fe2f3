"""`ragtune data prepare`: clean, split and report on training data before fine-tuning."""

from __future__ import annotations

from contextlib import nullcontext
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
    from ragtune.data.sources import reads_knowledge_base
    from ragtune.progress import rich_progress

    try:
        options = PrepareOptions(objective=objective, val_fraction=val_fraction, test_fraction=test_fraction,
                                 seed=seed, max_seq_length=max_seq_length, raft_k=raft_k,
                                 raft_gold_fraction=raft_gold_fraction)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
        raise RagtuneError(f"invalid options: {problems}", "see `ragtune data prepare --help`") from None
    train_specs = [parse_dataset_spec(text) for text in train]
    proj = _project(project, existing=reads_knowledge_base(train_specs, objective))
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


@data_app.command()
@_user_errors
def synthesize(docs: str = typer.Option("kb", "--docs", help="Documents to ask about: a file or folder (ingested "
                                                            "into the project first), or `kb` for everything in it."),
               n: int = typer.Option(100, "--n", min=1, help="Items to write (before checks)."),
               model: Optional[str] = typer.Option(None, help="Generator writing the questions: a built-in name, "
                                                              "a local model or openai:MODEL@URL [default: "
                                                              "models.generator of the project]."),
               out: Optional[Path] = typer.Option(None, help="The kept items (Q&A JSONL); splits and the report go "
                                                             "beside it [default: <project>/.ragtune/synthetic/"
                                                             "questions.jsonl]."),
               mix: str = typer.Option("factual=0.5,why=0.3,two_sentences=0.2",
                                       help="Question kinds and their shares."),
               coverage: str = typer.Option("size", help="size: documents in proportion to their length; even: the "
                                                         "same share for each."),
               round_trip_k: int = typer.Option(5, help="A question must retrieve its chunk in this many hits."),
               seed: int = typer.Option(0, help="Seed of the sampling and the splits."),
               project: Path = ProjectOption, as_json: bool = JsonOption):
    """Write a checked question set from the documents, offline: every rejection explained, train/val/test split by
    chunk, and a report (Markdown and JSON). An interrupted run resumes where it stopped."""
    from ragtune.progress import SilentProgress, rich_progress
    from ragtune.synthesis import SynthesisOptions, synthesize as run_synthesis
    from ragtune.synthesis.checks import CheckSettings
    from ragtune.synthesis.sampling import KINDS

    shares = _parse_mix(mix, KINDS)
    if coverage not in ("size", "even"):
        raise RagtuneError(f"unknown --coverage {coverage}", "choose size or even")
    proj = _project(project, existing=docs == "kb")
    try:
        root = None
        if docs != "kb":
            path = Path(docs).expanduser().resolve()
            if not path.exists():
                raise RagtuneError(f"{docs} does not exist", "pass a file or folder of documents, or `kb`")
            proj.ingest([str(path)])
            root = str(path if path.is_dir() else path.parent)
        options = SynthesisOptions(n=n, model=model, mix=shares, coverage=coverage, seed=seed,
                                   checks=CheckSettings(round_trip_k=round_trip_k))
        target = out or proj.workspace.state_dir / "synthetic" / "questions.jsonl"
        with (nullcontext(SilentProgress()) if as_json else rich_progress(err_console)) as progress:
            result = run_synthesis(proj, target, options, root=root, progress=progress)
    finally:
        proj.close()
    report = result.report
    if as_json:
        _print_json({**{k: v for k, v in report.items() if k != "reasons"}, "out": str(result.questions),
                     "splits_files": {name: str(path) for name, path in result.splits.items()}})
        return
    console.print(f"[green]kept[/] {report['kept']} of {report['planned']} ({report['pass_rate']:.0%}) written by "
                  f"{report['model']}; documents covered {report['coverage']['kept']} of "
                  f"{report['coverage']['documents']}")
    if report["rejected"]:
        table = Table("rejected because", "items")
        for reason, count in report["rejected"].items():
            table.add_row(report["reasons"][reason], str(count))
        console.print(table)
    console.print(f"Wrote {result.questions} and its splits (" + ", ".join(
        f"{name} {count}" for name, count in report["splits"].items()) + "), report beside it (.report.md)")


def _parse_mix(text: str, kinds: tuple[str, ...]) -> dict[str, float]:
    shares = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        kind, _, value = part.partition("=")
        try:
            shares[kind.strip()] = float(value)
        except ValueError:
            raise RagtuneError(f"--mix: '{part}' is not KIND=SHARE", f"e.g. {','.join(k + '=1' for k in kinds)}") \
                from None
    unknown = set(shares) - set(kinds)
    if unknown or not shares or sum(shares.values()) <= 0 or min(shares.values()) < 0:
        raise RagtuneError(f"--mix {text}: kinds must be among {', '.join(kinds)} with shares >= 0, not all 0",
                           "e.g. --mix factual=0.5,why=0.3,two_sentences=0.2")
    return {kind: share / sum(shares.values()) for kind, share in shares.items()}
