"""`ltceval run` shows the progress lines of a step as they come and keeps its whole log."""
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
