import hashlib
import shutil
import subprocess
import json
import math
import re

import pandas as pd
import pytest
from simpanel import simulate_panel, write_warehouse

from evaluation import pipeline
from evaluation.costing import CostingConfig, load_price_index
from core.disclosure import significant
from core.settings import Paths

CONFIG = CostingConfig(bootstrap_reps=99)  # default price year 2024/25; fewer replicates


def _therapy_cost_2024_25() -> float:
    """The test seed's 684 GBP course (price year "2017" = 2017/18) re-based to 2024/25."""
    idx = load_price_index().set_index("financial_year")["index_value"]
    return 684.0 * idx["2024/25"] / idx["2017/18"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ltceval-out")
    paths = Paths(out)
    paths.warehouse.parent.mkdir(parents=True)
    panel = simulate_panel(n_sets=250, rate_ratio={"ae_attendances": 0.75}, seed=21)
    write_warehouse(paths.warehouse, panel)
    before = hashlib.sha256(paths.warehouse.read_bytes()).hexdigest()
    summary = pipeline.run_all(paths, CONFIG)
    after = hashlib.sha256(paths.warehouse.read_bytes()).hexdigest()
    return paths, panel, summary, before, after


def test_pipeline_summaries_are_json_and_warehouse_untouched(run):
    paths, panel, summary, before, after = run
    json.dumps(summary)
    assert before == after
    assert [e["outcome"] for e in summary["estimates"]] == list(pipeline.OUTCOMES)
    assert summary["cost"]["therapy_cost_per_person"] == pytest.approx(_therapy_cost_2024_25(),
                                                                       abs=0.01)
    assert summary["cost"]["interval_method"] == "bootstrap"
    assert summary["cost"]["price_year"] == "2024/25"
    assert summary["sensitivity"]["scenarios"] >= 8


def test_report_written_self_contained_and_without_ids(run):
    paths, panel, summary, _, _ = run
    html_path = paths.reports / "business_case.html"
    assert summary["report"]["report"] == str(html_path)
    text = html_path.read_text(encoding="utf-8")
    assert "NAIVE" in text and "net saving" in text.lower()
    # 5 event studies, Love plot, attrition, naive vs DiD, waterfall, tornado
    assert text.count("data:image/png;base64,") >= 10
    for section in ("id='sensitivity'", "id='secondary'", "Price index used", "cluster bootstrap"):
        assert section in text
    # self-contained: every src is an inline data URI, no links out, no external CSS/JS
    srcs = re.findall(r"""src\s*=\s*['"]([^'"]*)""", text, flags=re.I)
    assert srcs and all(s.startswith("data:") for s in srcs)
    hrefs = re.findall(r"""href\s*=\s*['"]([^'"]*)""", text, flags=re.I)
    assert all(h.startswith("#") for h in hrefs)
    assert "<link" not in text.lower() and "http://" not in text and "https://" not in text
    assert "@import" not in text and "url(" not in text
    tables = list((paths.reports / "tables").glob("*.csv"))
    assert {"outcomes_naive_vs_did", "costing_summary", "event_study", "attrition",
            "balance", "sensitivity", "price_index", "business_case_template",
            "savings_by_subgroup"} <= {t.stem for t in tables}
    ids = set(panel["person_id"]) | set(panel["matched_set_id"])
    for f in [html_path, *tables]:
        content = f.read_text(encoding="utf-8")
        leaked = [i for i in ids if i in content]
        assert not leaked, f"{f.name} contains identifiers {leaked[:3]}"


def test_report_opens_with_the_diagnostics_and_its_gates_pass(run):
    paths, _, summary, _, _ = run
    assert summary["report"]["blinded"] is False and summary["report"]["failed_gates"] == []
    html = (paths.reports / "business_case.html").read_text(encoding="utf-8")
    assert html.index("<h1>") < html.index("id='diagnostics'") < html.index("class='kfs'")
    assert "Shown although" not in html and "Results withheld" not in html
    doc = json.loads((paths.reports / "diagnostics.json").read_text())
    status = {(r["diagnostic"].split(":")[0], r["outcome"]): r["status"] for r in doc["rows"]}
    assert status[("Balance", "")] == status[("Equipoise", "")] == "pass"
    assert status[("Expected absolute systematic error (negative controls)", "")] == "not available"
    assert (paths.reports / "tables" / "diagnostics.csv").exists()


def test_published_counts_are_suppressed(run):
    paths, panel, _, _, _ = run
    att = pd.read_csv(paths.reports / "tables" / "attrition.csv", dtype=str)
    assert list(att["n_persons"]) == ["1205", "1150", "*", "600"]
    out = pd.read_csv(paths.reports / "tables" / "outcomes_naive_vs_did.csv")
    n_controls = panel.drop_duplicates("person_id")["is_treated"].eq(0).sum()
    assert (out["n_controls"] % 5 == 0).all()
    assert abs(out["n_controls"].iloc[0] - n_controls) <= 2
    costing = pd.read_csv(paths.reports / "tables" / "costing_summary.csv").set_index("quantity")
    n = costing.loc["cohort_treated_persons_rounded", "estimate"]
    assert n % 5 == 0
    # the rounded cohort times the cost per course, to three significant figures as published
    assert costing.loc["cohort_therapy_cost", "estimate"] == significant(_therapy_cost_2024_25() * n)
    sub = pd.read_csv(paths.reports / "tables" / "savings_by_subgroup.csv", dtype=str)
    assert all(v == "*" or int(v) % 5 == 0 for v in sub["n_treated"])


def test_pipeline_degrades_gracefully_on_a_tiny_cohort(tmp_path):
    paths = Paths(tmp_path)
    paths.warehouse.parent.mkdir(parents=True)
    panel = simulate_panel(n_sets=5, rate_ratio=1.0, seed=2)
    panel["emergency_admissions"] = 0  # no events at all: not estimable, not an error
    panel["bed_days"] = 0
    write_warehouse(paths.warehouse, panel, with_marts=False)
    summary = pipeline.run_all(paths, CONFIG)
    json.dumps(summary, allow_nan=False)
    adm = next(e for e in summary["estimates"] if e["outcome"] == "emergency_admissions")
    assert adm["rate_ratio"] is None
    assert summary["cost"]["net_saving_per_treated_person"] is None
    text = (paths.reports / "business_case.html").read_text()
    assert "Fewer than 8 treated people" in text  # 5 treated: nothing but the notice is published
    assert not any(i in text for i in panel["person_id"])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs a headless chromium (Debian package "
                    "'chromium'; CI installs it)")
def test_report_opens_in_a_headless_browser_without_errors(run, tmp_path):
    """Load the report in real headless chromium: no console or page errors, the DOM has the
    headline and every plot, and the first screen is not blank."""
    from PIL import Image

    paths, *_ = run
    url = (paths.reports / "business_case.html").resolve().as_uri()
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--enable-logging=stderr", "--v=0", "--window-size=1280,900"]
    dom = subprocess.run([*base, f"--user-data-dir={tmp_path / 'p1'}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines()
               if "CONSOLE" in line or "Uncaught" in line or "ERR_FILE_NOT_FOUND" in line]
    assert not console, console
    html = dom.stdout
    assert "Net saving per treated person" in html and "Summary." in html
    source = (paths.reports / "business_case.html").read_text(encoding="utf-8")
    assert html.count("<img") == source.count("<img") >= 10
    shot = tmp_path / "first-screen.png"
    proc = subprocess.run([*base, f"--user-data-dir={tmp_path / 'p2'}",
                           f"--screenshot={shot}", url], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    img = Image.open(shot).convert("L")
    assert img.size == (1280, 900)
    lo, hi = img.getextrema()
    assert hi - lo > 100  # text and figures rendered, not a blank page


def test_report_shows_the_minimum_detectable_rate_ratio_of_the_cohort_beside_each_estimate(run):
    from core.contract import outcome_label
    from evaluation.panel import load_panel
    from evaluation.power import mdrr_column

    paths, _, _, _, _ = run
    expected = mdrr_column(load_panel(paths.warehouse), pipeline.OUTCOMES).set_index("outcome")
    table = pd.read_csv(paths.reports / "tables" / "minimum_detectable_rate_ratio.csv").set_index("outcome")
    assert list(table.index) == list(pipeline.OUTCOMES)
    for o in pipeline.OUTCOMES:
        m = expected.loc[o, "mdrr"]
        assert 0 < m < 1  # 250 sets: every outcome has a detectable reduction
        assert table.loc[o, "mdrr"] == pytest.approx(round(m, 2))
    text = (paths.reports / "business_case.html").read_text(encoding="utf-8")
    assert "Minimum detectable rate ratio (80% power)" in text
    # in the outcome table, on each outcome's row, beside its estimate
    section = text[text.index("id='outcomes'"):text.index("<h2", text.index("id='outcomes'"))]
    rows = re.findall(r"<tr><td>([^<]+)</td>(.*?)</tr>", section)
    cells = {label: body for label, body in rows}
    for o in pipeline.OUTCOMES:
        body = cells[outcome_label(o).replace("&", "&amp;")]
        assert f"<td>{expected.loc[o, 'mdrr']:.2f} (RR 0.85 needs" in body


def test_each_outcome_saves_evalues_and_the_honest_block(run):
    paths, _, summary, _, _ = run
    from evaluation.evalues import evalues_rr

    for est in summary["estimates"]:
        doc = json.loads((pipeline.work_dir(paths) / f"robustness_{est['outcome']}.json").read_text())
        saved = pipeline._load(paths, f"outcome_{est['outcome']}").did
        ev = evalues_rr(saved.rate_ratio, *saved.rate_ratio_ci)
        assert doc["evalues"]["evalue_estimate"] == pytest.approx(ev.evalue_estimate)
        assert est["evalue"] == pytest.approx(ev.evalue_estimate, abs=1e-4)
        honest = doc["honest"]
        assert set(honest) >= {"first_post", "post_average", "method", "mbar_grid", "m_grid"}
        avg = honest["post_average"]
        assert avg is not None, honest["notes"]
        # log-scale estimate and its rate ratio agree; the smoothness grid is always computable
        assert avg["ratio"] == pytest.approx(math.exp(avg["estimate"]))
        assert [r["m"] for r in avg["smoothness"]] == honest["m_grid"]
        if avg["n_pre_coefficients"] >= 2:
            assert [r["mbar"] for r in avg["relative_magnitudes"]] == honest["mbar_grid"]


def test_report_shows_evalues_and_parallel_trends_sensitivity(run):
    paths, _, _, _, _ = run
    text = (paths.reports / "business_case.html").read_text(encoding="utf-8")
    assert "id='robustness'" in text and "E-value" in text
    assert "Breakdown Mbar" in text and "event-study average after referral" in text
    assert "alt='parallel-trends sensitivity'" in text
