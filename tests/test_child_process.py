"""run_in_child: results, progress, errors with their type, advice and traceback, and a child that dies."""

import os

import pytest

from ragtune.child_process import StageProcessDied, run_in_child
from child_targets import counts_in_another_process, dies, fails_reading_a_source, fails_with_advice, warns
from child_targets_configured import warns_after_a_library_configured_logging
from ragtune.errors import RagtuneError


class RecordingProgress:
    def __init__(self):
        self.tasks = []

    def task(self, description, total=0):
        record = {"description": description, "total": total, "done": 0}
        self.tasks.append(record)

        class Task:
            def advance(self, n=1):
                record["done"] += n

            def add_total(self, n):
                record["total"] += n
        return Task()


def test_the_result_and_the_progress_come_back_from_another_process():
    progress = RecordingProgress()
    result = run_in_child(counts_in_another_process, 5, progress=progress, offset=1)
    assert result["sum"] == 11 and result["pid"] != os.getpid()
    assert progress.tasks == [{"description": "counting", "total": 7, "done": 5}]


def test_the_child_error_is_raised_here_with_its_type_and_advice():
    with pytest.raises(RagtuneError, match="cannot start") as raised:
        run_in_child(fails_with_advice)
    assert raised.value.hint == "free some memory"
    assert "fails_with_advice" in "".join(raised.value.__notes__)  # where it happened in the child


def test_a_child_killed_without_a_result_is_reported():
    with pytest.raises(StageProcessDied, match="exit code -9"):
        run_in_child(dies)


def test_an_error_with_its_own_arguments_survives_the_trip():
    from ragtune.errors import SourceError
    with pytest.raises(SourceError) as raised:
        run_in_child(fails_reading_a_source)
    assert (raised.value.source, raised.value.reason, raised.value.hint) == ("docs/a.pdf", "encrypted", "decrypt it")


@pytest.mark.parametrize("target", [warns, warns_after_a_library_configured_logging])
def test_a_warning_in_the_child_reaches_stderr_in_the_commands_format(capfd, target):
    run_in_child(target)
    stderr = capfd.readouterr().err
    assert "WARNING  3 of 9 rows removed while cleaning" in stderr and "WARNING:ragtune" not in stderr
