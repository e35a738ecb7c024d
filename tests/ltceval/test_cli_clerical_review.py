"""`ltceval clerical-review export|import` through the CLI entry point, on a real run of the
identifiable zone whose IG report is published as `ltceval run` publishes it (a version folder
behind reports/<period>): import publishes a new version with the review in its IG report."""
import json
import os
import re
import shutil

import pandas as pd
import pytest

from core.settings import Paths
from identifiable_zone import clerical_review as cr
from identifiable_zone import pipeline
from ltceval import publish
from ltceval.cli import main

KEY = "cli-clerical-key-" + "0123456789abcdef" * 2


@pytest.fixture(scope="module")
def published_run(small_landing, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_clerical")
    shutil.copytree(small_landing / "landing", out / "landing")
    shutil.copytree(small_landing / "ground_truth", out / "ground_truth")
    paths = Paths(out)
    mp = pytest.MonkeyPatch()
    mp.setenv("LTCEVAL_PSEUDO_KEY", KEY)
    try:
        period = pipeline.validate_all(paths, run_id="cli-run")["period"]
        pipeline.link_all(paths)
        pipeline.pseudonymise_and_publish(paths)
        run = publish.new_run(period)
        publish.open_version(paths, run)
        staged = publish.staged(paths, run)
        pipeline.write_ig_report(staged)
        (staged.reports / "gx").mkdir()  # the other gates' reports, as the later DAGs leave them
        (staged.reports / "gx" / "summary.json").write_text("{}")
        (staged.reports / "business_case.html").write_text("<html></html>")
        publish.publish_reports(paths, run)
    finally:
        mp.undo()
    return paths, run


def _identifier_values(paths):
    gp = pd.read_csv(paths.landing / "gp_patients.csv", dtype=str)
    return set(gp["NHSNumber"].dropna()) | {v for v in gp["Surname"].dropna().str.upper() if len(v) > 3}


def test_export_then_import_publishes_the_review_in_a_new_ig_report_version(published_run, tmp_path, capsys):
    paths, run = published_run
    first_version = os.readlink(publish.period_dir(paths, run.period))
    assert "No clerical review recorded" in (publish.period_dir(paths, run.period) / "ig_report.html").read_text()

    assert main(["clerical-review", "export", "--out", str(paths.out), "--per-stratum", "5", "--seed", "4"]) == 0
    printed = capsys.readouterr().out
    folder = cr.review_dir(paths, "cli-run")
    assert str(folder / cr.SAMPLE_FILE) in printed
    manifest = json.loads((folder / cr.MANIFEST_FILE).read_text())
    for s in manifest["strata"]:  # counts per stratum, nothing else
        assert re.search(rf"{re.escape(s['stratum'])}\s+{s['sample_pairs']} of\s+{s['population_pairs']} pairs", printed)
    tokens = set(re.findall(r"[A-Za-z0-9]+", printed))
    assert not tokens & _identifier_values(paths)

    sample = pd.read_csv(folder / cr.SAMPLE_FILE, dtype=str, keep_default_na=False)
    assert len(sample) > 0
    decisions = sample.assign(decision="match")
    decisions.loc[decisions.index[-1], "decision"] = "unsure"
    decisions_file = tmp_path / "decisions.csv"
    decisions.to_csv(decisions_file, index=False)
    assert main(["clerical-review", "import", "--out", str(paths.out), str(decisions_file)]) == 0
    printed = capsys.readouterr().out
    assert f"read {len(sample) - 1} decided pairs (1 unsure" in printed
    assert "precision of the probabilistic links: 100% (95% interval" in printed
    assert not set(re.findall(r"[A-Za-z0-9]+", printed)) & _identifier_values(paths)

    # a new version of the period, complete and checksummed; the one before kept
    link = publish.period_dir(paths, run.period)
    assert os.readlink(link) != first_version and (paths.reports_root / first_version).is_dir()
    publication = json.loads((link / "publication.json").read_text())
    assert set(publication["files"]) >= {"ig_report.json", "ig_report.html", "gx/summary.json", "business_case.html"}
    from core.files import sha256_file
    assert publication["files"]["ig_report.json"] == sha256_file(link / "ig_report.json")
    review = json.loads((link / "ig_report.json").read_text())["linkage"]["clerical_review"]
    assert review["recorded"] and review["export_id"] == manifest["export_id"]
    assert "Clerical review of the linkage" in (link / "ig_report.html").read_text()


def test_bad_decisions_and_options_exit_2_naming_file_line_and_field(published_run, tmp_path, capsys):
    paths, _ = published_run
    folder = cr.review_dir(paths, "cli-run")
    if not (folder / cr.MANIFEST_FILE).exists():
        assert main(["clerical-review", "export", "--out", str(paths.out)]) == 0
    sample = pd.read_csv(folder / cr.SAMPLE_FILE, dtype=str, keep_default_na=False)
    bad = tmp_path / "bad.csv"
    sample.assign(decision="yes").to_csv(bad, index=False)
    assert main(["clerical-review", "import", "--out", str(paths.out), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: line 2: field decision of {sample['pair_id'].iloc[0]} is not one of match, non-match, unsure" in err
    assert main(["clerical-review", "export", "--out", str(paths.out), "--per-stratum", "0"]) == 2
    assert "expected a positive number, got 0" in capsys.readouterr().err
    assert main(["clerical-review", "import", "--out", str(tmp_path / "nowhere"), str(bad)]) == 2
    assert "no identifiable-zone run" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()  # a wrong --out makes no zone folder
