"""Faults, with nothing lost: processes killed mid-write, a read-only output folder, a full disk.

Real runs (`ltceval run` in a child process, killed with SIGKILL), real files and mounts; the
only thing simulated is the fault itself.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from core.errors import PublishError

from analytical_dag_runs import (DBT_GROUPS, MATCHING_TASK, PRODUCERS, last_run_task_states, node_task,
                                project_nodes)
from ltceval_runs import (REPO, TIMEOUT, baseline, comparable, copy_out, current_period, key_file, killed_then_rerun,
                          ltceval, published_state, readable_facts, run_args, run_env, tree_digest, warehouse_tables)

pytestmark = pytest.mark.slow


def _assert_readable(out: Path, period: str) -> None:
    assert readable_facts(out, period) == {"report_whole": True, "publication_period": period,
                                           "report_listed": True, "panel_has_rows": True}


# -- a process killed in the middle of publishing -----------------------------------------------

_PUBLISHER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from ltceval import publish
    from core.settings import Paths

    paths, period = Paths(Path(sys.argv[1])), "2024-03"
    runs = [publish.Run(period, k) for k in sys.argv[2:]]
    print("ready", flush=True)
    i = 0
    while True:  # publish the two versions in turn (the one not live first) until killed
        publish.publish_reports(paths, runs[i % 2], required=("business_case.html",))
        i += 1
""")


def _make_version(paths, run, tag: str, n_files: int = 300) -> None:
    from ltceval import publish

    vdir = publish.open_version(paths, run)
    (vdir / "tables").mkdir()
    for i in range(n_files):
        (vdir / "tables" / f"t{i:03d}.csv").write_text(f"{tag},{i}\n" * 2000)
    (vdir / "business_case.html").write_text(f"<html>{tag}</html>")


def test_publish_killed_at_any_moment_leaves_a_whole_version(tmp_path):
    """SIGKILL a process that keeps publishing two versions of a period, at 25 random moments:
    every time, `reports/<period>` and `reports/latest` are one whole version, every file as
    recorded in its publication.json; then a normal publish still works."""
    from ltceval import publish
    from core.settings import Paths

    paths = Paths(tmp_path / "out")
    a, b = publish.Run("2024-03", "2024-03_20240101T000000Z_aaaa"), publish.Run("2024-03", "2024-03_20240101T000001Z_bbbb")
    _make_version(paths, a, "A")
    publish.publish_reports(paths, a, required=("business_case.html",))
    _make_version(paths, b, "B")
    rng = random.Random(7)
    seen = set()
    for _ in range(25):
        live = os.readlink(paths.reports_root / "2024-03").endswith(a.run_key)
        order = (b, a) if live else (a, b)
        proc = subprocess.Popen([sys.executable, "-c", _PUBLISHER, str(paths.out), *(r.run_key for r in order)],
                                cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        period = paths.reports_root / "2024-03"
        target = os.readlink(period)
        assert target in (f".versions/{a.run_key}", f".versions/{b.run_key}"), target
        tag = "A" if target.endswith(a.run_key) else "B"
        seen.add(tag)
        assert (period / "business_case.html").read_text() == f"<html>{tag}</html>"
        manifest = json.loads((period / "publication.json").read_text())
        files = {k: v for k, v in tree_digest(period).items() if not k.startswith(".") and k != "publication.json"}
        assert files == manifest["files"]  # every file whole, as published
        assert all((period / "tables" / f"t{i:03d}.csv").read_text() == f"{tag},{i}\n" * 2000 for i in range(0, 300, 25))
        assert os.readlink(paths.reports_root / "latest") == "2024-03"
    assert publish.publish_reports(paths, a, required=("business_case.html",)).resolve() == publish.version_dir(paths, a)
    assert seen  # the kills landed while either version was live


def test_warehouse_is_swapped_in_only_after_the_gates_and_readers_keep_the_old_file(tmp_path):
    """The staged warehouse is published only if the gates passed on exactly that file; the
    swap is one rename, so a reader that opened the old warehouse keeps reading it whole."""
    from ltceval import publish
    from core.settings import Paths

    paths = Paths(tmp_path / "out")

    def build(rows: int) -> None:
        publish.reset_staging_warehouse(paths)
        with duckdb.connect(str(paths.staging_warehouse)) as con:
            con.execute(f"create table mart_evaluation_panel as select range as id from range({rows})")

    build(3)
    with pytest.raises(PublishError, match="has not passed the mart gates"):
        publish.publish_warehouse(paths)
    publish.seal_staging_warehouse(paths)
    publish.record_gates_passed(paths)
    publish.publish_warehouse(paths)
    assert not paths.staging_warehouse.exists()

    build(5)
    publish.seal_staging_warehouse(paths)
    publish.record_gates_passed(paths)
    with duckdb.connect(str(paths.staging_warehouse)) as con:  # a write after the gates
        con.execute("insert into mart_evaluation_panel values (99)")
    with pytest.raises(PublishError, match="changed after the mart gates passed"):
        publish.publish_warehouse(paths)
    publish.seal_staging_warehouse(paths)
    publish.record_gates_passed(paths)
    reader = duckdb.connect(str(paths.published_warehouse), read_only=True)
    try:
        assert reader.execute("select count(*) from mart_evaluation_panel").fetchone()[0] == 3
        publish.publish_warehouse(paths)
        # the open reader still sees the whole old file; a new reader sees the new one
        assert reader.execute("select count(*) from mart_evaluation_panel").fetchone()[0] == 3
    finally:
        reader.close()
    with duckdb.connect(str(paths.published_warehouse), read_only=True) as con:
        assert con.execute("select count(*) from mart_evaluation_panel").fetchone()[0] == 6


# -- a whole run killed while dbt writes the warehouse --------------------------------------------

def test_run_killed_mid_write_then_rerun_equals_a_clean_run(tmp_path_factory):
    """Kill `ltceval run` (SIGKILL to its process group) while dbt writes the staging
    warehouse: the published reports and warehouse are untouched and readable; the next run
    succeeds and publishes the same as the clean run (apart from run timestamps), with the
    same warehouse tables (no row duplicated). The rerun is shared with test_reruns.py."""
    base = baseline(tmp_path_factory)
    period = current_period(base)
    pair = killed_then_rerun(tmp_path_factory)
    out = pair.out
    assert pair.published_after_kill == pair.published_before  # not a byte changed
    assert pair.readable_after_kill == {"report_whole": True, "publication_period": period,
                                        "report_listed": True, "panel_has_rows": True}
    assert pair.staging_left_after_kill  # the half-built warehouse is left aside, never published

    rerun = pair.rerun
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert str(out / "reports" / period / "business_case.html") in rerun.stdout
    assert comparable(out, period) == comparable(base, period)
    assert warehouse_tables(out / "analytical" / "warehouse.duckdb") == \
        warehouse_tables(base / "analytical" / "warehouse.duckdb")
    assert not (out / "analytical" / ".staging" / "warehouse.duckdb").exists()
    _assert_readable(out, period)


# -- a dbt data test that fails -----------------------------------------------------------------

def test_failing_dbt_test_fails_the_analytical_run_and_publishes_nothing(tmp_path_factory):
    """One pseudonymised person with a sex outside M/F/U: the accepted_values test of
    stg_gp__registered_persons fails in the analytical DAG's `dbt build`. The DAG, run with
    `dag.test()` as `ltceval run` runs it, fails; every model and seed was a task of the run,
    the red one is that model's test task (the model itself built), the GX gates and the
    publishing never ran, and the published warehouse and reports are as before."""
    from ltceval.run import airflow_env
    from core.settings import Paths

    base = baseline(tmp_path_factory)
    period = current_period(base)
    out = copy_out(base, tmp_path_factory.mktemp("dbt-test-fails") / "out")
    before = published_state(out, period)
    person = out / "analytical" / "pseudonymised" / "person.parquet"
    bad = person.with_name("person.bad.parquet")
    with duckdb.connect() as con:
        con.execute(f"copy (select * replace (case when row_number() over () = 1 then 'X' else sex end as sex) "
                    f"from read_parquet('{person}')) to '{bad}' (format parquet)")
    os.replace(bad, person)
    embedded = airflow_env(Paths(out))  # what `ltceval run` gives each DAG's process
    env = run_env(key_file(tmp_path_factory), **{k: v for k, v in embedded.items() if os.environ.get(k) != v})
    proc = subprocess.run([sys.executable, "-m", "ltceval.embedded", "analytical_zone"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.rstrip().endswith("dag analytical_zone finished: failed")

    states = last_run_task_states(out, "analytical_zone")
    models, seeds = project_nodes()
    assert all(node_task(states, m, "run") for m in models) and all(node_task(states, s, "seed") for s in seeds)
    first_group = DBT_GROUPS[0]
    assert states[f"{first_group}.stg_gp__registered_persons.run"] == "success"
    assert states[f"{first_group}.stg_gp__registered_persons.test"] == "failed"
    assert states[PRODUCERS[0]] == "failed"
    # neither the matching nor the second group's build ran; its node tasks never reported a build
    assert states[MATCHING_TASK] == states[PRODUCERS[1]] == "upstream_failed"
    assert states[node_task(states, "mart_evaluation_panel", "run")] in ("upstream_failed", "skipped")
    assert states["validate_marts"] == states["publish_warehouse"] == "upstream_failed"
    named = [line for line in proc.stdout.splitlines() if line.startswith("dag analytical_zone: failed or not run:")]
    assert named and f"{first_group}.stg_gp__registered_persons.test" in named[0]
    assert published_state(out, period) == before
    _assert_readable(out, period)


# -- a read-only output folder, a full disk -------------------------------------------------------

def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _failed_run_keeps_outputs(out: Path, env: dict, period: str, before: dict, reason: str) -> str:
    proc = ltceval(*run_args(out), env=env)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("ltceval: error:") and "Traceback" not in error
    assert "PublishError" in error and reason in error and str(out / "reports") in error, error
    assert "untouched" in error
    assert published_state(out, period) == before
    _assert_readable(out, period)
    return error


def test_read_only_output_folder_is_a_clear_error_and_keeps_outputs(tmp_path_factory):
    base = baseline(tmp_path_factory)
    period = current_period(base)
    out = copy_out(base, tmp_path_factory.mktemp("readonly") / "out")
    reports = out / "reports"
    before = published_state(out, period)
    if os.geteuid() != 0:
        os.chmod(reports, 0o555)
        reason, undo = "Permission denied", lambda: os.chmod(reports, 0o755)
    elif _mount("--bind", str(reports), str(reports)):
        if not _mount("-o", "remount,bind,ro", str(reports)):
            subprocess.run(["umount", str(reports)])
            pytest.skip("cannot remount read-only here")
        reason, undo = "Read-only file system", lambda: subprocess.run(["umount", str(reports)], check=True)
    else:
        pytest.skip("running as root without mount: a read-only folder cannot be made")
    try:
        error = _failed_run_keeps_outputs(out, run_env(key_file(tmp_path_factory)), period, before, reason)
        # it fails when the run opens its version folder, before the expensive steps
        assert "identifiable_zone" in error
    finally:
        undo()


def test_full_disk_is_a_clear_error_and_keeps_outputs(tmp_path_factory):
    """The output folder on a small tmpfs holding the published outputs and a few KB more."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    base = baseline(tmp_path_factory)
    period = current_period(base)
    out = copy_out(base, tmp_path_factory.mktemp("diskfull") / "out")
    reports = out / "reports"
    saved = reports.with_name("reports-copy")
    reports.rename(saved)
    reports.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(reports)):
        pytest.skip("cannot mount a tmpfs here")
    try:
        for p in saved.iterdir():
            dst = reports / p.name
            shutil.copytree(p, dst, symlinks=True) if p.is_dir() and not p.is_symlink() else \
                (os.symlink(os.readlink(p), dst) if p.is_symlink() else shutil.copy2(p, dst))
        used_kb = int(subprocess.run(["df", "-k", "--output=used", str(reports)], capture_output=True,
                                     text=True).stdout.split()[-1])
        assert _mount("-o", f"remount,size={used_kb + 24}k", str(reports))
        before = published_state(out, period)
        _failed_run_keeps_outputs(out, run_env(key_file(tmp_path_factory)), period, before,
                                  "No space left on device")
    finally:
        subprocess.run(["umount", str(reports)], check=True)


def test_file_size_limit_is_a_clear_error_and_keeps_outputs(tmp_path_factory):
    """Where no tmpfs can be mounted: the IG-report step in a child process whose file-size
    limit (RLIMIT_FSIZE) stops it mid-write, as a full disk would."""
    base = baseline(tmp_path_factory)
    period = current_period(base)
    out = copy_out(base, tmp_path_factory.mktemp("fsize") / "out")
    before = published_state(out, period)
    child = textwrap.dedent(f"""
        import resource, signal, sys
        from pathlib import Path
        from identifiable_zone import pipeline
        from core.errors import PublishError
        from core.settings import Paths
        from ltceval import publish

        paths = Paths(Path({str(out)!r}))
        run = publish.new_run({period!r})
        publish.open_version(paths, run)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))
        try:
            pipeline.write_ig_report(publish.staged(paths, run))
        except PublishError as e:
            print(f"retryable={{e.retryable}}", e, file=sys.stderr)
            sys.exit(3)
    """)
    proc = subprocess.run([sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True,
                          env=run_env(key_file(tmp_path_factory)), timeout=600)
    assert proc.returncode == 3, proc.stderr[-3000:]
    msg = proc.stderr.strip().splitlines()[-1]
    assert msg.startswith("retryable=False cannot write outputs to ") and "File too large" in msg
    assert str(out / "reports" / ".versions") in msg and "untouched" in msg
    assert published_state(out, period) == before
    _assert_readable(out, period)
