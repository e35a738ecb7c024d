"""What leaves the identifiable zone: every column under a rule (issue 15, defect 2).

A column is carried out of the zone only as a keyed pseudonym (record ids), a date, a value of
a code list, a number within a bounded range or a text matching a pattern. The sources config
is refused at load time otherwise; an extract's values that break those rules are blanked (or
their rows quarantined) with the rule counted, and never appear outside the zone. Real config
files, real extracts, real GX and DuckDB.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from idz_helpers import copy_landing, run_zone
from identifiable_zone.sources import load_sources_config
from identifiable_zone.validate import validate_source
from identifiable_zone.sources import read_extract

REPO = Path(__file__).resolve().parents[2]
CONFIGS = [REPO / "config" / "sources.yml", REPO / "config" / "sources_pseudonymised_upstream.yml"]
NHS_NUMBER = "9434765919"  # valid Modulus 11 (the NHS's own example number)
FREE_TEXT = "MRS JOAN HARGREAVES-WHITTINGTON"


def _edited(tmp_path, source: Path, edit) -> Path:
    raw = yaml.safe_load(source.read_text())
    edit(raw["sources"])
    path = tmp_path / source.name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _drop_code_list(sources):
    del sources["gp_patients"]["codes"]["EthnicCategory"]


def _drop_maximum(sources):
    sources["ecds"]["numeric"]["Age_At_Arrival"] = {"action": "nullify", "min": 0}  # the rule before the fix


def _new_column_without_rule(sources):
    sources["opa"]["columns"].append("FreeTextComment")


def _record_id_list_dropped(sources):
    del sources["iapt_ids201_care_contact"]["record_ids"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("edit, named", [
    (_drop_code_list, "gp_patients.EthnicCategory"),
    (_drop_maximum, "ecds.numeric.Age_At_Arrival"),
    (_new_column_without_rule, "opa.FreeTextComment"),
    (_record_id_list_dropped, "iapt_ids201_care_contact.ServiceRequestId"),
])
def test_a_column_carried_out_unchecked_refuses_the_config(tmp_path, config, edit, named):
    """One line naming source and field; the shipped configs themselves load."""
    load_sources_config(config)
    with pytest.raises(ValueError) as e:
        load_sources_config(_edited(tmp_path, config, edit))
    msg = str(e.value)
    assert named in msg and "\n" not in msg, msg


def test_every_shipped_column_leaves_under_one_rule():
    """Each column of each source is withheld, pseudonymised or checked: none is left over."""
    for config in CONFIGS:
        cfg = load_sources_config(config)
        for spec in cfg.sources.values():
            for col in spec.columns:
                kinds = [col in spec.person_columns or col in spec.parent, col in spec.pseudonymised_columns,
                         col in spec.dates or col in spec.codes or col in spec.patterns
                         or (col in spec.numeric_min and col in spec.numeric_max)]
                assert any(kinds), (config.name, spec.table, col)


def _ecds_rows(tmp_path, ages, complaint="21522001"):
    from test_bad_inputs import COLS, HEADER, row

    lines = [row(f"E{i}", age=a).replace(",21522001,", f",{complaint},") for i, a in enumerate(ages)]
    d = tmp_path / "landing"
    d.mkdir()
    (d / "ecds.csv").write_text(HEADER + "".join(lines))
    return d, COLS


def test_an_nhs_number_in_an_age_or_a_code_column_is_blanked_with_its_rule(tmp_path):
    """numeric_max on the age, nhs_number_like where a SNOMED pattern would admit ten digits;
    the rows stay (the attendance counts), the values go, each counted by rule and field."""
    cfg = load_sources_config()
    d, _ = _ecds_rows(tmp_path, ["43", NHS_NUMBER, "131", "0"], complaint=NHS_NUMBER)
    res = validate_source(read_extract(d, cfg["ecds"]), cfg["ecds"], latest_date="2024-01-01")
    assert len(res.accepted) == 4
    assert res.accepted["Age_At_Arrival"].tolist() == ["43", None, None, "0"]
    assert res.accepted["EC_Chief_Complaint_SNOMED_CT"].isna().all()
    flags = {(f["rule"], f["field"]): f["rows"] for f in res.summary["flags_by_rule"]}
    assert flags[("numeric_max", "Age_At_Arrival")] == 2
    assert flags[("nhs_number_like", "EC_Chief_Complaint_SNOMED_CT")] == 4
    assert NHS_NUMBER not in json.dumps(res.summary) and NHS_NUMBER not in res.flags.to_csv()


@pytest.fixture(scope="module")
def hostile_run(small_landing, tmp_path_factory):
    """The small population with an NHS number typed into some ages and free text into some
    ethnic categories (GP registrations and the IAPT MPI), through the whole zone."""
    out = copy_landing(small_landing, tmp_path_factory.mktemp("columns"))
    planted = {}
    for table, col, value in (("ecds", "Age_At_Arrival", NHS_NUMBER), ("gp_patients", "EthnicCategory", FREE_TEXT),
                              ("iapt_ids001_mpi", "EthnicCategory", FREE_TEXT)):
        path = out / "landing" / f"{table}.csv"
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        rows = df.index[::7]
        df.loc[rows, col] = value
        df.to_csv(path, index=False)
        planted[(table, col)] = len(rows)
    paths, results = run_zone(out)
    return paths, results, planted


def _outside_the_zone(paths) -> str:
    """Every published table (as text), report and return value outside identifiable/."""
    texts = [pd.read_parquet(p).astype(str).to_csv(index=False) for p in paths.pseudonymised.glob("*.parquet")]
    texts += [p.read_text(errors="replace") for p in paths.reports.rglob("*") if p.is_file()]
    return "\n".join(texts)


def test_hostile_values_never_leave_the_zone_and_are_counted(hostile_run):
    paths, results, planted = hostile_run
    outside = _outside_the_zone(paths) + json.dumps(results, default=str)
    assert NHS_NUMBER not in outside
    assert FREE_TEXT not in outside and "HARGREAVES" not in outside
    val = json.loads((paths.identifiable / "validation_summary.json").read_text())
    flags = {(t, f["rule"], f["field"]): f["rows"] for t, s in val["tables"].items() for f in s["flags_by_rule"]}
    assert flags[("ecds", "numeric_max", "Age_At_Arrival")] == planted[("ecds", "Age_At_Arrival")]
    for table in ("gp_patients", "iapt_ids001_mpi"):
        assert flags[(table, "code_allowed", "EthnicCategory")] == planted[(table, "EthnicCategory")]
    # the ethnic categories published, and the IG report's subgroup labels, are codes of the list
    person = pd.read_parquet(paths.pseudonymised / "person.parquet")
    allowed = set(load_sources_config()["gp_patients"].codes["EthnicCategory"].values)
    assert set(person["ethnic_category"].dropna()) <= allowed
    ig = json.loads((paths.reports / "ig_report.json").read_text())
    labels = {r["ethnic_category"] for r in ig["linkage"]["rates_by_subgroup"]["ethnic_category"]}
    assert labels <= allowed | {"not recorded", "not in source"}


def test_person_dates_leave_the_zone_at_month_grain(hostile_run):
    """Registration start and end and date of death are published as the 15th of their month:
    the month of the day-level date, never the day (a registration at birth gave the date of
    birth, a death to the day identifies)."""
    from identifiable_zone.pseudonymise import PERSON_DATES_DAY

    paths, _, _ = hostile_run
    person = pd.read_parquet(paths.pseudonymised / "person.parquet")
    spine = pd.read_parquet(paths.identifiable / "accepted" / "gp_patients.parquet")
    for published, accepted in (("registration_start", "RegistrationStartDate"),
                                ("registration_end", "RegistrationEndDate"), ("date_of_death", "DateOfDeath")):
        days = pd.to_datetime(person[published].dropna())
        assert len(days) > 0 and (days.dt.day == PERSON_DATES_DAY).all(), published
        months = set(pd.to_datetime(spine[accepted].dropna()).dt.to_period("M"))
        assert set(days.dt.to_period("M")) <= months, published
    assert (pd.to_datetime(spine["RegistrationStartDate"].dropna()).dt.day != PERSON_DATES_DAY).any()


def test_the_ig_report_gives_the_share_of_people_unique_on_published_attributes(hostile_run):
    """The quasi-identifier measure, computed independently in pandas from the published person
    table; the published report shows the share (two decimals) and rounded counts."""
    from identifiable_zone.ig_report import QUASI_IDENTIFIERS

    paths, _, _ = hostile_run
    person = pd.read_parquet(paths.pseudonymised / "person.parquet")
    sizes = person[list(QUASI_IDENTIFIERS)].astype(str).value_counts(dropna=False)  # a missing value is a value
    unique = int((sizes == 1).sum())
    raw = json.loads(next((paths.identifiable / "ig_reports").glob("*.json")).read_text())["quasi_identifiers"]
    assert raw == {"attributes": list(QUASI_IDENTIFIERS), "persons": len(person), "unique_persons": unique,
                   "share_unique": round(unique / len(person), 2)}
    published = json.loads((paths.reports / "ig_report.json").read_text())["quasi_identifiers"]
    assert published["share_unique"] == raw["share_unique"] and published["persons"] % 5 == 0
