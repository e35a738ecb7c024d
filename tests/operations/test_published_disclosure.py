"""Published means, rates and shares of a real run (`ltceval run`, 3,000 synthetic people: the
operations baseline) do not give away a count that is published only rounded or suppressed.

Each mean or rate over people (balance means, NAIVE rates, the linear DiD's group means, the
mean number of therapy contacts and the therapy cost priced from it, the mean follow-up) is
read as an attacker would: the counts n its published count stands for (R-2..R+2), and which of
them fit some k / n at the precision it is printed with (tests/disclosure_checks.py). A mean
that fits only one gives that count away. Shares must be shares of the published (rounded)
counts, so they add nothing to them: an IG-report percentage whose numerator is not published
must be 100 x (a multiple of 5) / the published denominator.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from disclosure_checks import Tables, gx_disclosure_problems, pinned_count

from core.disclosure import significant
from ltceval_runs import baseline, current_period

pytestmark = pytest.mark.slow


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _count(text: str):
    return "*" if text.strip() == "*" else int(float(text))


def _mean_problems(where: str, text: str, count_text: str, unit: float = 1.0) -> list[str]:
    if _count(count_text) == "*":
        return [] if text.strip() == "*" else [f"{where}: a statistic of 1-7 people is published"]
    n = pinned_count(text, _count(count_text), unit)
    return [] if n is None else [f"{where}: printed as {text}, it fits only n = {n} of the people counted {count_text}"]


def _share_of_rounded_problems(where: str, pct, records) -> list[str]:
    """A percentage whose numerator is not published: 100 x (0 or a multiple of 5) / records."""
    if pct in ("*", None) or records in ("*", 0):
        return []
    fits = any(significant(100 * k / records) == float(pct) for k in range(0, int(records) + 1, 5))
    return [] if fits else [f"{where}: {pct}% is not a share of rounded counts of {records}"]


def published_disclosure_problems(root: Path) -> list[str]:
    """Every published mean, rate or share of the report folder ``root`` that gives a count away."""
    problems: list[str] = []
    tables = root / "tables"
    page = Tables((root / "business_case.html").read_text(encoding="utf-8"))
    cohort = {r["quantity"]: r["estimate"] for r in _csv(tables / "costing_summary.csv")}["cohort_treated_persons_rounded"]

    # balance: covariate means of the treated people and of the controls, CSV and HTML
    balance = _csv(tables / "balance.csv")
    header, rows = page.table("Covariate")
    assert len(rows) == len(balance)
    for r, h in zip(balance, rows):
        if r["covariate"] == "propensity_logit":
            continue  # not a mean of whole numbers (its values are model scores)
        for col, n, label in (("mean_treated", "n_treated", "Mean treated"), ("mean_control", "n_control", "Mean control")):
            problems += _mean_problems(f"balance.csv {r['covariate']} {r['stage']} {col}", r[col], r[n])
            problems += _mean_problems(f"HTML balance {r['covariate']} {r['stage']} {label}",
                                       h[header.index(label)], r[n])

    # NAIVE rates per person-year: event counts over the naive cohort's people, CSV and HTML
    outcomes = _csv(tables / "outcomes_naive_vs_did.csv")
    eligible = next(r["n_persons"] for r in _csv(tables / "attrition.csv") if "eligible for matching" in r["step"])
    header, rows = page.table("Outcome")
    for r, h in zip(outcomes, rows):
        n = r.get("naive_n_treated", eligible)  # every eligible treated person
        for col in ("naive_pre_per_person_year", "naive_post_per_person_year", "naive_change_per_person_year"):
            problems += _mean_problems(f"outcomes.csv {r['outcome']} {col}", r[col], n)
        pre, post = re.match(r"(\S+) → (\S+)", h[1]).groups()
        problems += _mean_problems(f"HTML outcomes {r['outcome']} NAIVE before", pre, n)
        problems += _mean_problems(f"HTML outcomes {r['outcome']} NAIVE after", post, n)

    # the linear DiD on costed use: mean cost per person-year of treated people and controls
    for r in _csv(tables / "cost_linear_did.csv"):
        for col, n in (("treated_pre_per_person_year", "n_treated"), ("treated_post_per_person_year", "n_treated"),
                       ("control_pre_per_person_year", "n_controls"), ("control_post_per_person_year", "n_controls")):
            problems += _mean_problems(f"cost_linear_did.csv {col}", r[col], r[n])

    # therapy per contact: the mean number of contacts of the treated people, and the cost priced from it
    per_contact = [r for r in _csv(tables / "sensitivity.csv") if r["label"].startswith("Per contact")]
    assert per_contact, "the per-contact scenario is in the run"
    contacts, price = re.match(r"Per contact \(([\d.]+) contacts x £([\d,]+)\)", per_contact[0]["label"]).groups()
    price = float(price.replace(",", ""))
    problems += _mean_problems("sensitivity.csv mean contacts", contacts, cohort)
    problems += _mean_problems("sensitivity.csv therapy cost per contact", per_contact[0]["therapy_cost_per_person"],
                               cohort, unit=price)
    header, rows = page.table("Choice")
    html_cost = next(h for h in rows if h[1].startswith("Per contact"))[header.index("Therapy cost")]
    problems += _mean_problems("HTML sensitivity therapy cost per contact", html_cost, cohort, unit=price)
    # follow-up: person-months of the treated people over 12 x their number
    followup = re.search(r"mean observed follow-up ([\d.]+) years", (root / "business_case.html").read_text())
    problems += _mean_problems("HTML mean follow-up", followup.group(1), cohort, unit=1 / 12)

    # shares: IAPT outcomes from the published counts
    for r in _csv(tables / "iapt_outcomes.csv"):
        n, d = _count(r["n"]), _count(r["denominator"])
        expected = "*" if "*" in (n, d) else significant(100 * n / d)
        if (r["percent"] if expected == "*" else float(r["percent"])) != expected:
            problems.append(f"iapt_outcomes.csv {r['measure']}: not the percentage of the published counts to 3 figures")

    # IG report: linkage percentages (JSON and HTML) from rounded counts
    ig = json.loads((root / "ig_report.json").read_text())
    for src, r in ig["linkage"]["rates_by_source"].items():
        for rule in ig["linkage"]["rules"]:
            pct, k, n = r[f"{rule}_pct"], r[rule], r["records"]
            if pct not in ("*", None) and "*" not in (k, n) and pct != significant(100 * k / n):
                problems.append(f"IG {src} {rule}_pct: not the share of the published counts")
    for dim, rows in ig["linkage"]["rates_by_subgroup"].items():
        for x in rows:
            problems += _share_of_rounded_problems(f"IG {dim} {x['source']} linked_pct", x["linked_pct"], x["records"])
    for header, rows in Tables((root / "ig_report.html").read_text(encoding="utf-8")).tables:
        if "records" not in header:
            continue
        for row in rows:
            cells = dict(zip(header, row))
            records = _count(cells["records"]) if cells["records"] not in ("None",) else 0
            for col in (c for c in header if c.endswith("_pct")):
                pct = None if cells[col] == "None" else cells[col]
                problems += _share_of_rounded_problems(f"IG HTML {cells.get('source')} {col}", pct, records)

    # GX summary: the matched share of eligible treated people
    ms = json.loads((root / "gx" / "summary.json").read_text())["matched_share"]
    for c in ("n_eligible_treated", "n_matched_treated"):
        if ms[c] not in ("*", 0) and ms[c] % 5:
            problems.append(f"gx/summary.json {c} is an exact count")
    if not ms["share"] == significant(ms["n_matched_treated"] / ms["n_eligible_treated"]):
        problems.append("gx/summary.json share is not the share of the published counts")
    return problems


def test_published_means_rates_and_shares_give_no_count_away(tmp_path_factory):
    out = baseline(tmp_path_factory)
    problems = published_disclosure_problems(out / "reports" / current_period(out))
    assert not problems, f"{len(problems)} published figures give a count away:\n" + "\n".join(problems[:40])


def test_published_gx_outputs_hold_no_exact_count_and_no_value(tmp_path_factory):
    """What GX saw reaches the published folder only as the rounded summary: no element or
    unexpected count that core.disclosure would not publish, no percentage finer than the
    rounded counts, no unexpected or observed values, and no Data Docs page (which print both);
    the full results and Data Docs stay in the analytical zone, for analysts with access."""
    out = baseline(tmp_path_factory)
    root = out / "reports" / current_period(out)
    problems = gx_disclosure_problems(root)
    assert not problems, f"{len(problems)} published GX figures or values:\n" + "\n".join(problems[:40])
    suites = json.loads((root / "gx" / "summary.json").read_text())["suites"]
    assert {"mart_matched_cohort", "mart_evaluation_panel", "mart_balance"} <= set(suites)
    rows = suites["mart_matched_cohort"]["expectations"]
    assert rows and all({"expectation_type", "column", "success"} <= set(r) for r in rows)
    assert any(r["element_count"] not in (None, 0, "*") for r in rows)  # rounded counts, not none at all
    full = out / "analytical" / "gx"
    assert (full / "data_docs" / "index.html").is_file() and (full / "mart_matched_cohort.json").is_file()
