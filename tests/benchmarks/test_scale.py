"""benchmarks/scale.py without running the chain: its table, its options and their errors."""
from __future__ import annotations

import pytest

from benchmarks.memory_guard import GIB, MIB
from benchmarks.scale import STAGES, Row, format_table, parse_args, remove_output_keeping_its_logs


def test_the_table_has_a_row_per_stage_and_a_total_over_the_chain():
    rows = [Row("validate", 10.0, 400 * MIB, 1_000_000, note="landing rows"),
            Row("link", 30.0, 2048 * MIB, 300_000, note="person records linked"),
            Row("link quality", 5.0, 9000 * MIB, 290_000, in_chain=False),
            Row("ig report", 2.0, 100 * MIB, None)]
    lines = format_table(rows).splitlines()
    assert lines[0].split()[:4] == ["stage", "wall", "s", "peak"]
    validate = lines[1].split()
    assert validate[:5] == ["validate", "10.0", "400", "1,000,000", "100,000"]
    assert lines[2].split()[4] == "10,000"  # rows per second of the link
    assert "(not in total)" in lines[3]
    assert lines[4].split()[4:6] == ["-", "-"]  # "ig report": no rows, no rate
    total = lines[-1].split()
    # the benchmark's own check (link quality) counts neither in the time nor in the peak
    assert total[:3] == ["total", "42.0", "2,048"] and "peak 2.00 GiB" in lines[-1]


def test_a_stopped_stage_is_named_on_its_row_and_on_the_total_line():
    rows = [Row("validate", 10.0, 400 * MIB, 1000),
            Row("link", 60.0, 14 * GIB, None, status="stopped", note="at 14.01 GiB (limit 14.00 GiB)")]
    table = format_table(rows)
    assert "STOPPED at 14.01 GiB (limit 14.00 GiB)" in table.splitlines()[2]
    assert table.splitlines()[-1].endswith("stopped in link)")


def test_the_chain_has_the_stages_of_the_issue():
    names = [s.name for s in STAGES]
    for stage in ("generate", "validate", "link", "pseudonymise", "dbt build", "gx", "estimates", "report"):
        assert stage in names
    assert names.index("link") < names.index("link quality") < names.index("pseudonymise")


@pytest.mark.parametrize("argv, message", [
    (["--persons", "0"], "expected a positive whole number, got 0"),
    (["--persons", "many"], "expected a positive whole number, got 'many'"),
    (["--persons", "100", "--memory-limit-gib", "-1"], "expected a positive number of GiB"),
    (["--persons", "100", "--memory-limit-gib", "100000"], "is more than this machine's memory"),
    ([], "the following arguments are required: --persons"),
])
def test_bad_options_are_one_clear_error(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_a_used_work_folder_is_refused(tmp_path, capsys):
    (tmp_path / "old-run").mkdir()  # its validation cache would be read instead of the files
    with pytest.raises(SystemExit):
        parse_args(["--persons", "100", "--workdir", str(tmp_path)])
    assert "must be a new or empty folder" in capsys.readouterr().err
    assert parse_args(["--persons", "100", "--workdir", str(tmp_path / "new")]).persons == 100


def test_stages_name_known_stages_and_need_a_kept_work_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--persons", "100", "--stages", "validate,lnk", "--workdir", str(tmp_path)])
    assert "unknown stage 'lnk'; the stages are generate, validate, link" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a folder without a kept run's out/
        parse_args(["--persons", "100", "--stages", "validate", "--workdir", str(tmp_path)])
    assert "--stages needs --workdir: a folder kept (--keep)" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    args = parse_args(["--persons", "100", "--stages", "validate, link", "--workdir", str(tmp_path)])
    assert args.stages == ["validate", "link"]


def test_the_runs_logs_outlive_its_output_folder(tmp_path):
    """Without --keep the output folder goes; the run's DAG logs stay under logs/run (the
    2,000,000-person Spark run of stop 41 failed in dbt, and its logs went with the output)."""
    (tmp_path / "out" / "logs").mkdir(parents=True)
    (tmp_path / "out" / "logs" / "dag-analytical_zone.log").write_text("model FAILED\n")
    (tmp_path / "out" / "analytical").mkdir()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "ltceval-run.log").write_text("runner\n")
    remove_output_keeping_its_logs(tmp_path)
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "logs" / "run" / "dag-analytical_zone.log").read_text() == "model FAILED\n"
    assert (tmp_path / "logs" / "ltceval-run.log").read_text() == "runner\n"
    remove_output_keeping_its_logs(tmp_path)  # no output folder (a run that never started): nothing to do
