"""The identifier scan with a hostile extract (issue 15): identifier-looking values (NHS numbers,
names, dates of birth, postcodes, record ids) planted in every free or coded column of the
synthetic extracts, through the real identifiable zone (GX, splink, DuckDB) and the real
analytical warehouse build (dbt, the matching, dbt); nothing identifying may appear outside the identifiable zone: published
tables, the warehouse, reports, dbt's logs and target folder, dbt's own output, return values.
"""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from core.settings import Paths
from identifiable_zone import pipeline
from identifiable_zone.sources import load_sources_config
from identifier_scan import tables_as_csv
from ltceval.warehouse_build import build_warehouse
from synthetic.identifiers import nhs_number_is_valid

pytestmark = pytest.mark.slow

PERSONS = 2500
KEY = "hostile-extract-test-key-" + "0123456789abcdef" * 2
EVERY = 40  # one row in EVERY per planted column (offsets differ): no extract crosses the quarantine threshold
IDENTIFIER_ROLES = ("nhs_number", "forename", "surname", "postcode")


def _free_or_coded(spec) -> list[str]:
    """Columns that carry a value of the record (coded, numeric, free): not its identifiers,
    demographics, dates, record ids or parent keys."""
    skip = spec.person_columns | set(spec.parent) | set(spec.dates) | set(spec.pseudonymised_columns)
    return [c for c in spec.columns if c not in skip]


def _plant(out) -> dict:
    """Plant identifier-looking values taken from the extracts into every free or coded column
    of every extract; return them by kind, and the columns planted."""
    cfg = load_sources_config()
    landing = out / "landing"
    gp = pd.read_csv(landing / "gp_patients.csv", dtype=str, keep_default_na=False)
    ecds = pd.read_csv(landing / "ecds.csv", dtype=str, keep_default_na=False)
    valid = gp["NHSNumber"][nhs_number_is_valid(gp["NHSNumber"].tolist())]
    dob = pd.to_datetime(gp["DateOfBirth"], errors="coerce").dropna()
    surnames = gp["Surname"][gp["Surname"].str.fullmatch(r"[A-Z]{6,}")]
    planted = {
        "nhs_number": list(valid.iloc[:60]),
        "name": list(surnames.iloc[:60]) + [f"{f} {s}" for f, s in zip(gp["Forename"].iloc[:20], gp["Surname"].iloc[:20])],
        # as a site would type them in free text (ISO dates alone could equal a published event date)
        "date_of_birth": [d.strftime("%d/%m/%Y") for d in dob.iloc[:30]] + [f"DOB {d:%Y-%m-%d}" for d in dob.iloc[30:60]],
        "postcode": list(gp["Postcode"][gp["Postcode"].str.contains(" ")].iloc[:60]),
        "record_id": list(ecds["EC_Ident"].iloc[:30]) + list(gp["PatientRecordId"].iloc[:30]),
    }
    values = [v for kind in planted.values() for v in kind]
    columns, k = [], 0
    for spec in cfg.sources.values():
        path = landing / (f"reference/{spec.table}.csv" if spec.reference else f"{spec.table}.csv")
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        for j, col in enumerate(_free_or_coded(spec)):
            rows = df.index[(j * 7) % EVERY::EVERY]
            df.loc[rows, col] = [values[(k + i) % len(values)] for i in range(len(rows))]
            k += len(rows)
            columns.append((spec.table, col))
        df.to_csv(path, index=False)
    return {"values": planted, "columns": columns}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    from synthetic.generate import generate
    from synthetic.params import SynthParams

    out = tmp_path_factory.mktemp("hostile")
    generate(SynthParams(persons=PERSONS, seed=11), out)
    identifiers = set()  # every identifier of the extracts as they were generated
    cfg = load_sources_config()
    for spec in cfg.sources.values():
        if spec.identifiers:
            df = pd.read_csv(out / "landing" / f"{spec.table}.csv", dtype=str, keep_default_na=False)
            for role in IDENTIFIER_ROLES:
                identifiers |= set(df[spec.identifiers[role]]) - {""}
    planted = _plant(out)
    paths = Paths(out)
    mp = pytest.MonkeyPatch()
    for k in ("LTCEVAL_PSEUDO_KEY_FILE", "LTCEVAL_LINKAGE_MODEL"):
        mp.delenv(k, raising=False)
    mp.setenv("LTCEVAL_PSEUDO_KEY", KEY)
    try:
        results = {"validate": pipeline.validate_all(paths, run_id="hostile"), "link": pipeline.link_all(paths),
                   "publish": pipeline.pseudonymise_and_publish(paths), "report": pipeline.write_ig_report(paths)}
    finally:
        mp.undo()
    dbt = build_warehouse(paths)  # raises when dbt or the matching fails
    # the evaluation's outputs too (estimates, MDRR, E-values and parallel-trends sensitivity,
    # costing, report and its tables): everything a run writes outside the zone is scanned
    from evaluation import pipeline as evaluation
    with pytest.MonkeyPatch.context() as m:
        # 2,500 people fail the balance gate: the full report (every estimate table) is scanned
        m.setenv("LTCEVAL_UNBLIND_REASON", "hostile-extract test: every table of the full report is scanned")
        results["evaluation"] = evaluation.run_all(paths)
    return paths, results, dbt, planted, identifiers


def _texts_of(obj) -> list[str]:
    """Every value inside a saved result, whole (a DataFrame's repr would elide rows)."""
    import dataclasses

    if isinstance(obj, (pd.DataFrame, pd.Series)):
        return [obj.astype(str).to_csv()]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [t for f in dataclasses.fields(obj) for t in _texts_of(getattr(obj, f.name))]
    if isinstance(obj, dict):
        return [t for k, v in obj.items() for t in [str(k), *_texts_of(v)]]
    if isinstance(obj, (list, tuple, set)):
        return [t for v in obj for t in _texts_of(v)]
    return [str(obj)]


def _outside_the_zone(paths: Paths, results: dict, dbt) -> str:
    texts = [json.dumps(results, default=str), json.dumps(dbt, default=str)]
    texts += tables_as_csv(paths.pseudonymised, paths.warehouse)
    for folder in (paths.reports, paths.out / "dbt", paths.out / "analytical" / "evaluation"):
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix == ".pkl":  # the evaluation's saved results
                texts.extend(_texts_of(pd.read_pickle(path)))
            elif path.is_file() and path.suffix not in (".duckdb", ".wal", ".msgpack"):
                texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


def test_the_hostile_extract_was_planted_and_caught(hostile):
    """Every free or coded column was planted, and the rules caught the values (counted by rule
    and field in the validation summary, never quoted)."""
    paths, results, dbt, planted, _ = hostile
    assert len(planted["columns"]) >= 50
    val = json.loads((paths.identifiable / "validation_summary.json").read_text())
    caught = {(t, x["field"]) for t, s in val["tables"].items()
              for x in s["flags_by_rule"] + s["quarantine_by_rule"]}
    assert set(planted["columns"]) <= caught, set(planted["columns"]) - caught
    assert dbt["matching"]["matched_rows"] > 0 and all(dbt["dbt_output"])


def test_nothing_identifying_leaves_the_identifiable_zone(hostile):
    paths, results, dbt, planted, identifiers = hostile
    blob = _outside_the_zone(paths, results, dbt)
    assert "mart_evaluation_panel" in blob  # the warehouse was read
    # and the evaluation's outputs: the MDRR table, the saved robustness and estimates
    assert (paths.reports / "tables" / "minimum_detectable_rate_ratio.csv").is_file()
    assert "evalue_estimate" in blob  # robustness_<outcome>.json
    # no hex digests (pseudonyms, checksums) in the word scans: their letter runs spell words
    text = re.sub(r"(?<![0-9A-Za-z])(?=[a-fA-F]*\d)[0-9a-fA-F]{12,}(?![0-9A-Za-z])", "<hex>", blob)
    tokens = set(re.findall(r"[A-Za-z0-9]+", text))
    nhs = {n for n in identifiers | set(planted["values"]["nhs_number"]) if re.fullmatch(r"\d{10}", n)}
    assert not (nhs & tokens), "an NHS number left the identifiable zone"
    assert not (set(planted["values"]["record_id"]) & tokens), "a source record id left the identifiable zone"
    for name in planted["values"]["name"]:  # upper case as planted (prose in logs is not)
        # a substring test first (a regex search is 50 times slower on text this long); the
        # regex then decides, only where the name is present, whether it stands as a word
        assert name not in text or not re.search(rf"(?<![A-Za-z]){re.escape(name)}(?![A-Za-z])", text), \
            "a planted name left the zone"
    for value in planted["values"]["date_of_birth"] + planted["values"]["postcode"]:
        assert value not in text, "a planted date of birth or postcode left the identifiable zone"
    postcodes = {v for v in identifiers if re.fullmatch(r"[A-Z]{1,2}\d{1,2} \d[A-Z]{2}", v)}
    assert not (set(re.findall(r"[A-Z]{1,2}\d{1,2} \d[A-Z]{2}", text)) & postcodes)
