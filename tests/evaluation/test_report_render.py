"""The business-case renderer on real estimates of a small simulated panel: what reaches the
HTML is escaped, published (suppressed) and well-formed; the small-cohort notice; formatting."""
from dataclasses import replace
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest
from simpanel import UNIT_COSTS, simulate_panel
from spreadsheet_checks import HOSTILE, assert_csv_inert, assert_xlsx_inert

from evaluation.costing import estimate_costs
from evaluation.did import estimate_linear_did, estimate_outcome
from core.contract import COUNT_OUTCOMES
from evaluation.panel import add_cost_column, cohort_counts, prepare_panel
from evaluation.reporting.formatting import fmt_ci, gbp, num
from evaluation.reporting.render import ReportInputs, build_html, write_report


@pytest.fixture(scope="module")
def inputs():
    panel = prepare_panel(simulate_panel(n_sets=150, rate_ratio={"ae_attendances": 0.75}, seed=31))
    estimates = {o: estimate_outcome(panel, o) for o in COUNT_OUTCOMES}
    costing = estimate_costs({o: e.did for o, e in estimates.items()}, UNIT_COSTS)
    unit_cost = UNIT_COSTS.set_index("activity")["unit_cost_gbp"]
    cost_did = estimate_linear_did(add_cost_column(panel, {"ae_attendances": unit_cost["ae_attendance"]}),
                                   "cost_gbp")
    cohort = {**cohort_counts(panel), "comparison_design": "not_yet_referred",
              "controls_referred_in_followup": 3}
    return ReportInputs(estimates=estimates, costing=costing, cost_did=cost_did, cohort=cohort,
                        period={"first_index_month": "2022-01", "last_index_month": "2022-12",
                                "reporting_period": "2024-03"},
                        unit_costs=UNIT_COSTS,
                        sensitivity_notes=("A note with <script>alert(1)</script> & more",))


class _Tables(HTMLParser):
    """Cells per row of every table, and the tags left open at the end."""

    def __init__(self):
        super().__init__()
        self.rows, self.open = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in ("img", "meta"):
            self.open.append(tag)
        if tag == "tr":
            self.rows.append(0)
        elif tag in ("td", "th"):
            self.rows[-1] += 1

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, (tag, self.open[-5:])
        self.open.pop()


def test_data_are_escaped_and_markup_is_not(inputs):
    html = build_html(inputs)
    assert "<script>" not in html
    assert "<li>A note with &lt;script&gt;alert(1)&lt;/script&gt; &amp; more</li>" in html
    assert "<p class='headline'><b>Summary.</b> The <b>net saving is " in html
    assert "A&amp;E attendances" in html and "A&amp;amp;E" not in html


def test_html_is_well_formed_and_every_table_row_is_complete(inputs):
    html = build_html(inputs)
    parser = _Tables()
    parser.feed(html)
    assert parser.open == []
    assert html.count("<table") == html.count("</table>") >= 5
    outcome_table = html[html.index("<h2 id='outcomes'>"):]
    outcome_rows = outcome_table[:outcome_table.index("</table>")].count("<tr>")
    assert outcome_rows == 1 + len(COUNT_OUTCOMES)  # header and one row per outcome


def test_published_counts_and_comparison_text(inputs):
    html = build_html(inputs)
    n_treated = inputs.cohort["treated_persons"]
    rounded = 5 * round(n_treated / 5)
    assert f"about {rounded} people with an index date (referral to the service) between " \
           f"2022-01 and 2022-12" in html
    # 3 controls referred in follow-up is a count of 1-7: shown as *
    assert f"; * of {5 * round(inputs.cohort['control_persons'] / 5)} matched controls were " \
           "referred during their follow-up." in html
    assert "Data period: extracts up to the end of <b>2024-03</b>." in html
    assert "Sensitivity analyses not available." in html and "Balance table not available." in html


def test_a_cohort_of_seven_gets_only_the_notice(inputs, tmp_path):
    tiny = replace(inputs, cohort={**inputs.cohort, "treated_persons": 7})
    written = write_report(tiny, tmp_path)
    html = (tmp_path / "business_case.html").read_text(encoding="utf-8")
    assert "Fewer than 8 treated people were matched" in html
    assert "net saving is" not in html and "<table" not in html
    assert set(written) == {"html"} and not list((tmp_path / "tables").iterdir())


def test_written_tables_are_the_published_ones(inputs, tmp_path):
    written = write_report(inputs, tmp_path)
    outcomes = pd.read_csv(written["outcomes_naive_vs_did"])
    assert list(outcomes["outcome"]) == list(COUNT_OUTCOMES)
    assert (outcomes["n_treated"] % 5 == 0).all()
    costing = pd.read_csv(written["costing_summary"]).set_index("quantity")
    assert costing.loc["cohort_treated_persons_rounded", "estimate"] % 5 == 0


def test_template_and_stylesheet_ship_inside_the_package():
    templates = resources.files("evaluation.reporting") / "templates"
    assert (templates / "business_case.html.j2").is_file()
    assert "font-family" in (templates / "business_case.css").read_text(encoding="utf-8")


@pytest.mark.parametrize("value,expected", [
    (1234.4, "£1,234"), (-1234.6, "-£1,235"), (0.0, "£0"), (float("nan"), "not estimable"),
    (None, "not estimable")])
def test_gbp(value, expected):
    assert gbp(value) == expected


def test_num_and_fmt_ci():
    assert num(1234.5678, 3) == "1,234.568"
    assert num("*") == "*" and num(float("nan")) == ""
    assert fmt_ci(0.8, 1.25) == "0.80 to 1.25"
    assert fmt_ci(-1500, 20, money=True) == "-£1,500 to £20"


def test_hostile_text_from_the_data_is_inert_in_every_written_table(inputs, tmp_path):
    """A practice code (or any text from the data) that a spreadsheet would run as a formula is
    quoted in the CSV tables and in the workbook; numbers are still numbers."""
    subgroups = pd.DataFrame([{"subgroup": "practice_code", "value": code, "n_treated": 40 + i,
                               "net_saving_per_person": -120.5 - i, "lo95": -300.0, "hi95": 60.0,
                               "gross_saving_per_person": 500.0, "estimated": True}
                              for i, code in enumerate(HOSTILE)])
    written = write_report(replace(inputs, subgroups=subgroups), tmp_path)
    assert "xlsx" in written and "savings_by_subgroup" in written
    for name, path in written.items():
        if name not in ("html", "xlsx"):
            assert_csv_inert(Path(path))
    sheets = assert_xlsx_inert(Path(written["xlsx"]))
    rows = sheets["savings_by_subgroup"]
    values = [r[rows[0].index("value")] for r in rows[1:]]
    assert values == ["'" + v.replace("\r", "\n") for v in HOSTILE]  # XML turns a bare CR into LF
    savings = [r[rows[0].index("net_saving_per_person")] for r in rows[1:]]
    assert all(isinstance(v, (int, float)) and v < 0 for v in savings)  # numbers, not text


def test_practices_with_1_to_7_treated_people_are_not_named_anywhere(inputs, tmp_path):
    """Per-practice rows: a practice with 1-7 treated people is pooled with the others like it
    in the CSV, the workbook and the HTML; practices with more keep their row."""
    small = {"P90001": 3, "P90002": 5, "P90003": 1}
    rows = [{"subgroup": "ltc_group", "value": "diabetes", "n_treated": 4}]
    rows += [{"subgroup": "practice_code", "value": code, "n_treated": n} for code, n in small.items()]
    rows += [{"subgroup": "practice_code", "value": "P90004", "n_treated": 12}]
    subgroups = pd.DataFrame([{**r, "net_saving_per_person": float("nan"), "lo95": float("nan"),
                               "hi95": float("nan"), "gross_saving_per_person": float("nan"),
                               "estimated": False} for r in rows])
    written = write_report(replace(inputs, subgroups=subgroups), tmp_path)
    texts = [Path(written["html"]).read_text(encoding="utf-8"),
             Path(written["savings_by_subgroup"]).read_text(encoding="utf-8"),
             "\n".join(str(v) for r in assert_xlsx_inert(Path(written["xlsx"]))["savings_by_subgroup"] for v in r)]
    for text in texts:
        assert not any(code in text for code in small)
        assert "P90004" in text and "other practices" in text
    table = pd.read_csv(written["savings_by_subgroup"], dtype=str)
    practices = table[table["subgroup"] == "practice_code"]
    assert list(practices["n_treated"]) == ["10", "10"]  # 12 and the pooled 3 + 5 + 1, rounded
    assert table.loc[table["subgroup"] == "ltc_group", "n_treated"].tolist() == ["*"]  # not a site: kept, suppressed
