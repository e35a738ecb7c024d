"""`ltceval run` shows the progress lines of a step as they come and keeps its whole log."""
import re
import sys

from ltceval.run import _step

CHILD = """
print("2026-12-01T21:42:12Z [info     ] some other line [airflow.task] loc=x.py:1")
print("2026-12-01T21:42:13Z [info     ] validate: ecds 1/2 files, 10 rows [ltceval.progress] loc=progress.py:25")
print("2026-12-01T21:42:14Z [info     ] validate: ecds 2/2 files, 20 rows [ltceval.progress] loc=progress.py:25")
"""


def test_progress_lines_reach_the_terminal_and_the_log_keeps_everything(tmp_path, capsys):
    log = tmp_path / "logs" / "step.log"
    _step("running DAG x", [sys.executable, "-c", CHILD], {}, log)
    out = capsys.readouterr().out.splitlines()
    assert out == ["  running DAG x ...", "    validate: ecds 1/2 files, 10 rows", "    validate: ecds 2/2 files, 20 rows",
                   out[-1]]
    assert out[-1].startswith("  running DAG x done (")
    text = log.read_text()
    assert "some other line" in text and text.count("[ltceval.progress]") == 2


def test_a_step_without_progress_lines_keeps_its_one_line(tmp_path, capsys):
    _step("preparing", [sys.executable, "-c", "print('quiet')"], {}, tmp_path / "step.log")
    out = capsys.readouterr().out
    assert out.startswith("  preparing ... done (") and out.count("\n") == 1


def test_a_step_beside_another_shows_its_own_line_and_time_and_fails_as_a_step_does(tmp_path, capsys):
    """`ltceval run` makes the metadata database beside the generator: its log and line are as
    if it had run alone, with its own time, and a failure names the step, its cause and its log."""
    import time

    import pytest

    from core.errors import LtcevalError
    from ltceval.run import _Beside

    quiet = _Beside("preparing", [sys.executable, "-c", "print('made')"], {}, tmp_path / "logs" / "quiet.log")
    time.sleep(3)  # the step beside it: longer than this one
    quiet.finish()
    out = capsys.readouterr().out
    shown = re.fullmatch(r"  preparing \.\.\. done \((\d+) s\)\n", out)
    assert shown and int(shown.group(1)) < 3  # its own time, not the 3 s until finish()
    assert (tmp_path / "logs" / "quiet.log").read_text() == "made\n"

    failing = _Beside("preparing", [sys.executable, "-c", "raise ValueError('no database here')"], {},
                      tmp_path / "failing.log")
    with pytest.raises(LtcevalError, match=r"^preparing failed: ValueError: no database here; full log: .*failing\.log$"):
        failing.finish()
    assert capsys.readouterr().out.startswith("  preparing ... failed after ")
