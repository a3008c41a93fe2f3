"""Long work shows its progress: bars in a terminal, and lines with counts, rate and ETA in a log."""

from __future__ import annotations

import io
import time

from rich.console import Console
from transformers import TrainerState

from ragtune.progress import LineProgress, RichProgress, format_duration, format_rate, rich_progress
from ragtune.training.callbacks import RichProgressCallback


def log_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=200), out


def test_a_log_gets_lines_with_count_rate_and_eta_and_a_terminal_gets_bars():
    console, out = log_console()
    with rich_progress(console) as progress:
        assert isinstance(progress, LineProgress)
    task = LineProgress(console, every_seconds=0).task("embedding chunks", 4)
    task.advance(2)
    task.add_total(4)
    task.advance(6)
    first, last = out.getvalue().splitlines()
    assert first.startswith("embedding chunks: 2/4 (50%), ") and "/s, 0:00 elapsed, ETA " in first
    assert last.startswith("embedding chunks: 8/8 (100%), ") and "ETA" not in last
    with rich_progress(Console(file=io.StringIO(), force_terminal=True)) as progress:
        assert isinstance(progress, RichProgress)


def test_lines_come_at_most_every_interval_and_once_at_the_end():
    console, out = log_console()
    with rich_progress(console) as progress:
        progress.every_seconds = 3600
        sources, chunks = progress.task("reading sources", 3), progress.task("embedding chunks")
        for _ in range(3):  # batch by batch, the total grows with what was read: each batch complete for a while
            sources.advance()
            chunks.add_total(512)
            chunks.advance(512)
    assert out.getvalue().splitlines()[0].startswith("reading sources: 3/3 (100%), ")
    assert out.getvalue().splitlines()[1].startswith("embedding chunks: 1,536/1,536 (100%), ")
    assert len(out.getvalue().splitlines()) == 2
    assert format_duration(59.6) == "1:00" and format_duration(3725) == "1:02:05"
    console, out = log_console()
    with rich_progress(console) as progress:
        progress.task("reading sources", 2).advance(2)
        time.sleep(1.1)  # other work goes on after this task ended
    assert ", 0:00 elapsed" in out.getvalue()  # its own time, not the block's
    assert format_rate(62.04) == "62.0/s" and format_rate(1 / 34.5) == "34.5 s each"  # slow work: time per item


def test_training_progress_in_a_log_shows_steps_loss_rate_and_eta():
    console, out = log_console()
    callback = RichProgressCallback(console, every_seconds=0)
    state = TrainerState(max_steps=4, is_world_process_zero=True)
    callback.on_train_begin(None, state, None)
    for step in range(1, 5):  # in the Trainer's order: the step ends, then its loss is logged
        state.global_step, state.num_input_tokens_seen = step, step * 256
        callback.on_step_end(None, state, None)
        callback.on_log(None, state, None, logs={"loss": 3.0 - step / 4})
    callback.on_log(None, state, None, logs={"eval_loss": 2.75})
    callback.on_train_end(None, state, None)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 and lines[0].startswith("training: step 1/4 (25%), loss -, val -, ") and "ETA" in lines[0]
    assert lines[4].startswith("training: step 4/4 (100%), loss 2.0000, val 2.7500, ")  # the last step's own
    assert "tok/s" in lines[4] and "ETA" not in lines[4]
