"""When checkpoints are written: by step count when asked, otherwise by elapsed time and at new best validation
losses, never at the end of a run (its weights are saved anyway)."""

from __future__ import annotations

import pytest
from transformers import TrainerCallback, TrainerControl, TrainerState

from ragtune.data import parse_dataset_spec
from ragtune.training import runs
from ragtune.training.callbacks import TimedCheckpointCallback
from ragtune.training.finetune import finetune
from ragtune.training.recipe import resolve_recipe
from ragtune.training.memory import MemoryPlan
from ragtune.training.trainer_setup import training_arguments

from .test_finetune import StopAfterCheckpoint


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SavedSteps(TrainerCallback):
    def __init__(self):
        self.steps: list[int] = []

    def on_save(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def recipe_for(tiny_model, **overrides):
    return resolve_recipe("lora", overrides={"model": str(tiny_model), "max_steps": 8, "batch_size": 4,
                                             "lora_rank": 4, "patience": 0, **overrides})


def test_timed_checkpoints_fall_due_after_the_interval_but_not_at_the_last_step():
    clock = FakeClock()
    callback = TimedCheckpointCallback(minutes=2, clock=clock)
    state, control = TrainerState(max_steps=10), TrainerControl()
    callback.on_train_begin(None, state, control)

    def step(number: int, seconds: float) -> bool:
        clock.now += seconds
        state.global_step = number
        control.should_save = False
        return callback.on_step_end(None, state, control).should_save

    assert [step(1, 60), step(2, 59)] == [False, False]
    assert step(3, 1)  # 120 s since the start
    assert step(4, 1), "still due: a save can be skipped (e.g. an evaluation without a new best)"
    callback.on_save(None, state, control)
    assert not step(5, 119) and step(6, 1)
    callback.on_save(None, state, control)
    assert not step(10, 500), "the finished run's weights are saved anyway"


@pytest.mark.parametrize(("has_validation", "save_every", "strategy"),
                         [(False, None, "no"), (True, None, "best"), (False, 4, "steps"), (True, 4, "steps")])
def test_save_strategy(tiny_model, tmp_path, has_validation, save_every, strategy):
    recipe = recipe_for(tiny_model, save_every=save_every, eval_every=2)
    plan = MemoryPlan(recipe.batch_size, recipe.gradient_accumulation, False, 4.0, None, True)
    args = training_arguments(recipe, tmp_path, plan, train_rows=32, has_validation=has_validation)
    assert args.save_strategy == strategy
    if save_every:
        assert args.save_steps == save_every


def test_a_short_run_without_validation_writes_no_checkpoint(tiny_model, qa_file, tmp_path):
    saved = SavedSteps()
    recipe = recipe_for(tiny_model, data={"val_fraction": 0.0})
    finetune([parse_dataset_spec(str(qa_file))], recipe, runs_dir=tmp_path / "runs", callbacks=[saved])
    assert saved.steps == []


def test_timed_checkpoints_let_a_killed_run_resume(tiny_model, qa_file, tmp_path):
    recipe = recipe_for(tiny_model, data={"val_fraction": 0.0}, checkpoint_minutes=1e-9)  # due at every step
    spec = [parse_dataset_spec(str(qa_file))]
    with pytest.raises(KeyboardInterrupt):
        finetune(spec, recipe, runs_dir=tmp_path / "runs", out=tmp_path / "run", callbacks=[StopAfterCheckpoint(3)])
    assert (runs.partial_dir(tmp_path / "run") / runs.CHECKPOINTS_DIR / "checkpoint-3").is_dir()
    resumed = finetune(None, None, runs_dir=tmp_path / "runs", out=tmp_path / "run", resume=True)
    assert resumed.metadata["steps"] == 8 and resumed.metadata["sessions"] == 2


def test_with_validation_every_new_best_is_checkpointed_and_the_best_kept(tiny_model, qa_file, tmp_path):
    saved = SavedSteps()
    result = finetune([parse_dataset_spec(str(qa_file))], recipe_for(tiny_model, eval_every=2),
                      runs_dir=tmp_path / "runs", callbacks=[saved])
    assert saved.steps and set(saved.steps) <= {2, 4, 6, 8}
    assert result.metadata["best_checkpoint_step"] in saved.steps


def test_a_run_killed_while_writing_its_result_resumes_from_the_checkpoint_before_the_last_step(tmp_path):
    """The Trainer resumed from the final step's checkpoint would train one step past the end (seen as a 13th loss
    line in a 12-step run): resuming takes the checkpoint before it, and the final one goes."""
    import json

    from accelerate import PartialState

    from ragtune.training.finetune import _last_complete_checkpoint

    for step in (3, 6, 12):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(
            json.dumps({"global_step": step, "max_steps": 12}))
    (tmp_path / "checkpoint-9").mkdir()  # killed while writing it: no state file
    assert _last_complete_checkpoint(tmp_path, PartialState()) == str(tmp_path / "checkpoint-6")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-3", "checkpoint-6"]
