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


def test_the_dbt_builds_models_and_seeds_are_progress_and_its_tests_are_not():
    """dbt's own lines as cosmos' watcher relays them into the analytical DAG's task log."""
    def relayed(text):
        return (f"2026-12-06T13:04:35.496545Z [info     ] 13:04:35  {text} [cosmos.operators._watcher.base] "
                "loc=base.py:227")
    model = relayed("2 of 166 OK created sql view model main.stg_ecds__attendances ........ [\x1b[32mOK\x1b[0m in 0.22s]")
    assert progress_message(model) == "dbt build: 2 of 166 nodes, model stg_ecds__attendances built"
    seed = relayed("5 of 166 OK loaded seed file main.unit_costs ........ [INSERT 12 in 0.1s]")
    assert progress_message(seed) == "dbt build: 5 of 166 nodes, seed unit_costs built"
    failed = relayed("9 of 166 ERROR creating sql table model main.int_x ........ [ERROR in 0.3s]")
    assert progress_message(failed) == "dbt build: 9 of 166 nodes, model int_x FAILED"
    assert progress_message(relayed("7 of 166 PASS not_null_mart_design_x ........ [PASS in 0.05s]")) is None
    assert progress_message("12 of 166 OK created sql table model main.int_x [dbt]") is None  # not relayed by cosmos
