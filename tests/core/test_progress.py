"""Progress lines: what a long stage logs, and how a log line is recognised as one."""
import logging

from core import progress
from core.progress import progress_message


def test_a_progress_line_is_logged_on_its_own_logger(caplog):
    with caplog.at_level(logging.INFO, logger=progress.LOGGER):
        progress.report("validate", "%s %d/%d files, %s rows", "gp_appointments", 3, 5, f"{1_200_000:,}")
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("ltceval.progress", "validate: gp_appointments 3/5 files, 1,200,000 rows")]


def test_progress_lines_are_found_in_an_airflow_task_log_and_a_plain_one():
    airflow = ("2026-12-01T21:42:12.128608Z [info     ] validate: gp_patients 1/1 files, 2,010 rows "
               "[ltceval.progress] loc=progress.py:25\n")
    assert progress_message(airflow) == "validate: gp_patients 1/1 files, 2,010 rows"
    assert progress_message("link: 5/5 sources [ltceval.progress]\n") == "link: 5/5 sources"


def test_other_log_lines_are_not_progress():
    assert progress_message("2026-12-01T21:42:12Z [info     ] gp_patients: 1 file(s) [identifiable_zone.pipeline] "
                            "loc=pipeline.py:107") is None
    assert progress_message("validate: looks like one but is printed, not logged") is None
