"""Publishing a run's version folder: complete or nothing, latest never moves back, one
previous version kept for roll-back (real folders and symlinks)."""
import os

import pytest

from core.errors import PublishError
from core.files import read_json
from core.settings import Paths
from ltceval import publish

REQUIRED = ("business_case.html",)


def _version(paths: Paths, period: str, tag: str, complete: bool = True) -> publish.Run:
    run = publish.new_run(period)
    vdir = publish.open_version(paths, run)
    if complete:
        (vdir / "business_case.html").write_text(f"<html>{tag}</html>")
    return run


def _live(paths: Paths, name: str) -> str:
    return (paths.reports_root / name / "business_case.html").read_text()


def test_run_keys_name_the_period_and_are_unique():
    a, b = publish.new_run("2024-03"), publish.new_run("2024-03")
    assert a.period == "2024-03" and a.run_key.startswith("2024-03_") and a.run_key != b.run_key
    with pytest.raises(PublishError):
        publish.new_run("March")


def test_an_incomplete_version_is_not_published_and_changes_nothing(tmp_path):
    paths = Paths(tmp_path)
    good = _version(paths, "2024-03", "good")
    publish.publish_reports(paths, good, required=REQUIRED)
    bad = _version(paths, "2024-03", "bad", complete=False)
    with pytest.raises(PublishError, match="incomplete .*missing business_case.html"):
        publish.publish_reports(paths, bad, required=REQUIRED)
    assert _live(paths, "2024-03") == _live(paths, "latest") == "<html>good</html>"
    assert publish.published_period(paths, "2024-03") == publish.version_dir(paths, good)


def test_latest_follows_the_newest_period_and_a_rerun_keeps_one_previous_version(tmp_path):
    paths = Paths(tmp_path)
    first = _version(paths, "2024-03", "march-1")
    publish.publish_reports(paths, first, required=REQUIRED)
    april = _version(paths, "2024-04", "april")
    publish.publish_reports(paths, april, required=REQUIRED)
    second = _version(paths, "2024-03", "march-2")  # a rerun of an earlier period
    publish.publish_reports(paths, second, required=REQUIRED)
    assert _live(paths, "latest") == "<html>april</html>"  # not moved back to March
    assert _live(paths, "2024-03") == "<html>march-2</html>"
    third = _version(paths, "2024-03", "march-3")
    publish.publish_reports(paths, third, required=REQUIRED)
    march = sorted(p.name for p in (paths.reports_root / ".versions").glob("2024-03_*"))
    assert march == sorted([second.run_key, third.run_key])  # the replaced one kept, older pruned
    assert os.readlink(paths.reports_root / "2024-03") == f".versions/{third.run_key}"
    assert {"period", "run_key", "files"} <= set(read_json(publish.version_dir(paths, third) / publish.PUBLICATION))


def test_a_new_run_clears_folders_that_failed_runs_left(tmp_path):
    paths = Paths(tmp_path)
    published = _version(paths, "2024-03", "ok")
    publish.publish_reports(paths, published, required=REQUIRED)
    failed = _version(paths, "2024-03", "failed", complete=False)
    _version(paths, "2024-03", "next")
    assert not publish.version_dir(paths, failed).exists()
    assert publish.version_dir(paths, published).exists()


def test_the_handoff_names_the_run_for_the_next_dags(tmp_path):
    paths = Paths(tmp_path)
    with pytest.raises(PublishError, match="run the identifiable_zone DAG first"):
        publish.current_run(paths)
    run = publish.new_run("2024-03")
    publish.write_handoff(paths, run)
    assert publish.current_run(paths) == run
    assert publish.staged(paths, run).reports == publish.version_dir(paths, run)
