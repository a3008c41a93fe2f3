"""`ragtune arena`: blind battles in the terminal, the leaderboard, and votes exchanged between raters' machines."""

from __future__ import annotations

import json
import random
from contextlib import closing
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from ragtune.errors import RagtuneError

# Defined before importing ragtune.cli, which registers it (importing this module first is then no cycle).
arena_app = typer.Typer(no_args_is_help=False, invoke_without_command=True,
                        help="Judge strategies blind, two at a time; ratings with intervals.")

from ragtune.cli import _user_errors, console  # noqa: E402

FromCompareOption = typer.Option(None, "--from-compare", help="A finished `ragtune compare --out DIR`: its questions "
                                 "and stored answers, and its project's database for the votes.")
ProjectDirOption = typer.Option(None, "--project", "-p", help="Project whose database holds the votes (default: the "
                                "comparison's project, else the current directory).")
VOTE_KEYS = {"a": "a", "b": "b", "t": "tie", "x": "both_bad"}


def open_store(project: Path | None, from_compare: Path | None):
    """The arena's store, closed when the `with` block ends."""
    from ragtune.arena.store import ArenaStore, votes_database

    return closing(ArenaStore(votes_database(project, from_compare)))


@arena_app.callback()
@_user_errors
def arena(context: typer.Context, from_compare: Optional[Path] = FromCompareOption,
          rater: Optional[str] = typer.Option(None, "--rater", help="Your name, stored with each vote."),
          project: Optional[Path] = ProjectDirOption, seed: Optional[int] = typer.Option(None, "--seed")):
    """Vote in the terminal on a comparison's answers: a question, answers A and B (strategies hidden), then
    [a] A better, [b] B better, [t] tie, [x] both bad, [s] skip, [q] quit; the strategies are revealed after each
    vote."""
    if context.invoked_subcommand is not None:
        return
    if from_compare is None:
        raise RagtuneError("the terminal arena votes on a comparison's answers",
                           "pass --from-compare DIR (or use the web arena of `ragtune serve` for live questions)")
    from ragtune.arena.battles import ComparedAnswers
    from ragtune.arena.store import RATER_NAME, Vote

    compared = ComparedAnswers(from_compare)
    rater = rater or typer.prompt("Your name")
    if not RATER_NAME.match(rater):
        raise RagtuneError(f"rater name {rater!r} is not allowed", "use letters, digits, spaces and . @ ' - _ (at "
                           "most 64)")
    rng = random.Random(seed)
    votes = 0
    with open_store(project, from_compare) as store:
        while (battle := compared.next_battle(store, rater, rng)) is not None:
            console.rule(f"battle {votes + 1}")
            console.print(Panel(escape(battle.question), title="question"))
            for slot, answer, citations in (("A", battle.answer_a, battle.citations_a),
                                            ("B", battle.answer_b, battle.citations_b)):
                cited = "\n".join(f"[{c['number']}] {c['source']}" for c in citations)
                console.print(Panel(escape(answer + (f"\n\n{cited}" if cited else "")), title=slot))
            choice = typer.prompt("[a] A better  [b] B better  [t] tie  [x] both bad  [s] skip  [q] quit",
                                  default="s").strip().lower()
            if choice == "q":
                break
            if choice not in VOTE_KEYS:
                continue
            reason = typer.prompt("why? (optional)", default="", show_default=False).strip() or None
            store.vote(battle.id, Vote(VOTE_KEYS[choice], reason))
            votes += 1
            console.print(f"A was [bold]{escape(battle.strategy_a)}[/], B was [bold]{escape(battle.strategy_b)}[/]"
                          + (f"; reference: {escape(battle.reference)}" if battle.reference else ""), highlight=False)
        else:
            console.print(f"{rater} has judged every question for every pair of strategies.")
    console.print(f"{votes} vote(s) stored. See the ratings: ragtune arena report --from-compare {from_compare}")


@arena_app.command("report")
@_user_errors
def report(from_compare: Optional[Path] = FromCompareOption, project: Optional[Path] = ProjectDirOption,
           as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")):
    """The leaderboard: Bradley-Terry ratings with bootstrap intervals, win rates, position bias, agreement between
    raters and how many more votes would separate the leader. With --from-compare, the comparison's results.json and
    report gain the human evaluation and its recommendation takes it into account."""
    from ragtune.arena.ratings import judged_strategies, leaderboard

    with open_store(project, from_compare) as store:
        judgements = store.judgements()
    if from_compare is not None:
        from ragtune.evaluation.advise import readvise

        board = readvise(from_compare).human_evaluation
        if board is None:
            raise RagtuneError(f"no votes yet for {from_compare}", f"vote first: ragtune arena --from-compare "
                               f"{from_compare}, or the Arena page of ragtune serve --from-compare {from_compare}")
        board = board.model_dump()
    else:
        if not judgements:
            raise RagtuneError("no votes yet in this project", "vote in the Arena page of `ragtune serve`, or import "
                               "votes with `ragtune arena import FILE`")
        board = leaderboard(judgements, judged_strategies(judgements)).to_dict()
    if as_json:
        console.print_json(json.dumps(board))
        return
    show_leaderboard(board)


def show_leaderboard(board: dict) -> None:
    table = Table(title=f"arena: {board['votes']} votes")
    for column in ("#", "strategy", "rating", "95% interval", "battles"):
        table.add_column(column)
    for rank, rating in enumerate(board["ratings"], 1):
        table.add_row(str(rank), escape(rating["strategy"]), f"{rating['score']:.0f}",
                      f"[{rating['ci_low']:.0f}, {rating['ci_high']:.0f}]", str(rating["battles"]))
    console.print(table)
    bias = board["position_bias"]
    console.print(f"position bias: the left side (A) won {bias['left_win_share']:.0%} of {bias['decisive']} decisive "
                  f"votes (p = {bias['p_value']:.3g})" if bias["decisive"] else "position bias: no decisive votes yet")
    console.print(board["stopping_hint"], markup=False)


@arena_app.command("export")
@_user_errors
def export_votes(file: Path = typer.Argument(..., help="JSONL file to write."),
                 from_compare: Optional[Path] = FromCompareOption, project: Optional[Path] = ProjectDirOption):
    """Write every vote with its battle as JSONL, for another machine's `ragtune arena import`."""
    with open_store(project, from_compare) as store:
        count = store.export_jsonl(file)
    console.print(f"{count} vote(s) written to {file}")


@arena_app.command("import")
@_user_errors
def import_votes(file: Path = typer.Argument(..., help="JSONL written by `ragtune arena export`."),
                 from_compare: Optional[Path] = FromCompareOption, project: Optional[Path] = ProjectDirOption):
    """Merge another machine's votes: battles already here are skipped; a malformed file imports nothing."""
    with open_store(project, from_compare) as store:
        added, skipped = store.import_jsonl(file)
    console.print(f"{added} vote(s) added, {skipped} already here")
