"""Monthly operation: a new month of extracts is validated on its own, and the panel and the
estimates are updated; months already seen are not reprocessed unless their file changed.

Landing holds the activity extracts as monthly deliveries (`ltceval synth --monthly-from`):
the months up to February 2024 first, then March 2024 is added. Real `ltceval run`s.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ltceval_runs import PERSONS, REPO, SEED, key_file, ltceval, read_csv, run_env

pytestmark = pytest.mark.slow

CONFIG = REPO / "config" / "sources.yml"


def _run(out: Path, env) -> str:
    proc = ltceval("run", "--config", str(CONFIG), "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _manifest(out: Path) -> dict:
    return json.loads((out / "identifiable" / "input_manifest.json").read_text())


def _panel_months(out: Path) -> tuple[str, str]:
    with duckdb.connect(str(out / "analytical" / "warehouse.duckdb"), read_only=True) as con:
        lo, hi = con.execute("select min(calendar_month), max(calendar_month) from mart_person_month_panel").fetchone()
    return str(lo)[:7], str(hi)[:7]


def _validate_task_log(out: Path) -> str:
    """The identifiable-zone DAG's task log of the last run (dag.test() logs the tasks to the
    runner's log of the DAG)."""
    return (out / "logs" / "dag-identifiable_zone.log").read_text(errors="replace")


def test_new_month_updates_panel_and_estimates_without_reprocessing_old_months(tmp_path_factory):
    out = tmp_path_factory.mktemp("monthly") / "out"
    env = run_env(key_file(tmp_path_factory))
    synth = ltceval("synth", "--persons", str(PERSONS), "--seed", str(SEED), "--out", str(out),
                    "--monthly-from", "2024-01", env=env)
    assert synth.returncode == 0, synth.stderr
    landing = out / "landing"
    march = sorted(landing.glob("*.2024-03.csv"))
    assert len(march) >= 6, [p.name for p in march]
    held = out.parent / "held-back"
    held.mkdir()
    for p in march:
        shutil.move(p, held / p.name)

    # months up to February 2024
    _run(out, env)
    first = _manifest(out)
    assert first["period"] == "2024-02" and first["files_cached"] == 0
    assert first["files_validated"] == len(first["files"])
    assert _panel_months(out)[1] == "2024-02"
    assert os.readlink(out / "reports" / "latest") == "2024-02"

    # March arrives
    for p in march:
        shutil.move(held / p.name, landing / p.name)
    stdout = _run(out, env)
    assert f"{out / 'reports' / '2024-03' / 'business_case.html'}" in stdout
    second = _manifest(out)
    assert second["period"] == "2024-03"
    validated = sorted(f["file"] for f in second["files"] if f["validation"] == "validated")
    assert validated == sorted(p.name for p in march)  # only the new month's files were read
    assert second["files_cached"] == len(first["files"])
    assert f"{len(march)} validated, {len(first['files'])} unchanged (cached)" in _validate_task_log(out)
    # unchanged files kept their checksums
    sha1 = {f["file"]: f["sha256"] for f in first["files"]}
    assert all(sha1[f["file"]] == f["sha256"] for f in second["files"] if f["file"] in sha1)

    # the panel gains the month; the estimates change; both periods stay published
    assert _panel_months(out)[1] == "2024-03"
    assert os.readlink(out / "reports" / "latest") == "2024-03"
    feb, mar = (read_csv(out, p, "outcomes_naive_vs_did") for p in ("2024-02", "2024-03"))
    assert list(feb.columns) == list(mar.columns)
    assert not feb.equals(mar)
    num = feb.select_dtypes("number").columns
    assert not ((feb[num] - mar[num]).abs().fillna(0) < 1e-12).all().all()
    for p in ("2024-02", "2024-03"):
        assert f"<b>{p}</b>" in (out / "reports" / p / "business_case.html").read_text(encoding="utf-8")

    # an old month's file changes (a corrected delivery): that file, and only it, is validated again
    from identifiable_zone import pipeline
    from core.settings import Paths

    jan = landing / "ecds.2024-01.csv"
    df = pd.read_csv(jan, dtype=str, keep_default_na=False)
    df = df.iloc[:-1]  # one attendance withdrawn
    df.to_csv(jan, index=False)
    summary = pipeline.validate_all(Paths(out), run_id="corrected-january",
                                    config_path=str(CONFIG))
    assert summary["files"] == {"validated": 1, "cached": len(second["files"]) - 1}
    third = _manifest(out)
    assert [f["file"] for f in third["files"] if f["validation"] == "validated"] == ["ecds.2024-01.csv"]
    assert summary["tables"]["ecds"]["rows_in"] == second_rows(second, "ecds") - 1


def second_rows(manifest: dict, table: str) -> int:
    return sum(f["rows"] for f in manifest["files"] if f["table"] == table)
