"""GX validation on small hand-written extracts (real GX, pandas datasource)."""
import pandas as pd
import pytest

from identifiable_zone.sources import ExtractUnusable, load_sources_config, read_extract
from identifiable_zone.validate import validate_source

HEADER = ("PatientRecordId,NHSNumber,Forename,Surname,DateOfBirth,Sex,Postcode,LSOA11,EthnicCategory,"
          "PracticeCode,RegistrationStartDate,RegistrationEndDate,DateOfDeath\n")


def _row(rid, nhs="9434765919", dob="1980-02-01", sex="M", start="2019-01-01", forename="ANN"):
    return f"{rid},{nhs},{forename},LEE,{dob},{sex},HX1 2AB,E01000001,A,Y10000,{start},,\n"


@pytest.fixture(scope="module")
def cfg():
    return load_sources_config()


def _write(tmp_path, body: bytes):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "gp_patients.csv").write_bytes(body)
    return landing


def test_quarantine_invariant_and_rules(tmp_path, cfg):
    rows = [_row(f"G{i}") for i in range(20)]
    rows += [
        _row("G1", forename="BEA"),       # conflicting duplicate record id (both G1 rows quarantined)
        _row("", start="2019-01-01"),     # missing record id
        _row("G30", start="2019-02-30"),  # impossible registration date -> quarantine
        _row("G31", dob="31/12/1980"),    # other date format: accepted, normalised
        _row("G32", dob="1980-13-01"),    # bad date of birth -> value blanked, row kept
        _row("G33", nhs="12345"),         # NHS number format -> value blanked, row kept
        _row("G34", sex="Q"),             # sex code not allowed -> value blanked, row kept
    ]
    landing = _write(tmp_path, (HEADER + "".join(rows)).encode("utf-8"))
    spec = cfg["gp_patients"]
    res = validate_source(read_extract(landing, spec), spec, threshold=0.5)
    n_in = len(rows)
    assert res.summary["rows_in"] == n_in
    assert n_in == len(res.accepted) + res.summary["rows_quarantined"]
    assert res.summary["rows_quarantined"] == 4  # two G1 rows, the blank id, G30
    q = res.quarantine
    assert set(zip(q["rule"], q["field"])) == {("record_id_unique", "PatientRecordId"),
                                               ("record_id_present", "PatientRecordId"),
                                               ("date_parses", "RegistrationStartDate")}
    assert "G1" not in set(res.accepted["PatientRecordId"]) and "G30" not in set(res.accepted["PatientRecordId"])
    acc = res.accepted.set_index("PatientRecordId")
    assert acc.loc["G31", "DateOfBirth"] == "1980-12-31"
    assert acc.loc["G32", "DateOfBirth"] is None
    assert acc.loc["G33", "NHSNumber"] is None
    assert acc.loc["G34", "Sex"] is None
    flagged = set(zip(res.flags["record_id"], res.flags["rule"]))
    assert {("G32", "date_parses"), ("G33", "nhs_number_format"), ("G34", "code_allowed")} <= flagged


def test_encoding_error_reported_with_file_and_line_not_crash(tmp_path, cfg):
    body = HEADER.encode() + _row("G1").encode() + _row("G2", forename="JOS\xc9").encode("cp1252")
    landing = _write(tmp_path, body)
    spec = cfg["gp_patients"]
    read = read_extract(landing, spec)
    assert read.encoding_issues == [{"file": "gp_patients.csv", "line": 3, "fallback": "cp1252"}]
    res = validate_source(read, spec)
    assert res.summary["encoding_issues"] == 1
    assert res.accepted.set_index("PatientRecordId").loc["G2", "Forename"] == "JOSÉ"


def test_threshold_makes_extract_unusable_naming_file_rule_count(tmp_path, cfg):
    rows = [_row(f"G{i}") for i in range(8)] + [_row(f"B{i}", start="not a date") for i in range(3)]
    landing = _write(tmp_path, (HEADER + "".join(rows)).encode())
    spec = cfg["gp_patients"]
    with pytest.raises(ExtractUnusable) as e:
        validate_source(read_extract(landing, spec), spec, threshold=0.20)
    msg = str(e.value)
    assert "gp_patients.csv" in msg and "date_parses" in msg and "RegistrationStartDate" in msg
    assert "3 of 11 rows" in msg
    assert "LEE" not in msg and "9434765919" not in msg
    # the same extract passes under a looser threshold
    res = validate_source(read_extract(landing, spec), spec, threshold=0.5)
    assert res.summary["rows_quarantined"] == 3


def test_missing_required_column_is_unusable(tmp_path, cfg):
    header = HEADER.replace("Postcode,", "")
    row = "G1,9434765919,ANN,LEE,1980-02-01,M,E01000001,A,Y10000,2019-01-01,,\n"
    landing = _write(tmp_path, (header + row).encode())
    spec = cfg["gp_patients"]
    with pytest.raises(ExtractUnusable, match=r"gp_patients\.csv.*columns_present.*1 required column.*Postcode"):
        validate_source(read_extract(landing, spec), spec)


def test_site_column_mapping_and_parquet(tmp_path, cfg):
    """A site's own column names are mapped via config; Parquet files read by suffix."""
    from dataclasses import replace

    spec = replace(cfg["gp_patients"], rename={"NHS_NO": "NHSNumber"}, file="gp_*.parquet")
    df = pd.read_csv(pd.io.common.StringIO(HEADER + _row("G1") + _row("G2")), dtype=str)
    df = df.rename(columns={"NHSNumber": "NHS_NO"})
    landing = tmp_path / "landing"
    landing.mkdir()
    df.iloc[:1].to_parquet(landing / "gp_2023.parquet")
    df.iloc[1:].to_parquet(landing / "gp_2024.parquet")
    read = read_extract(landing, spec)
    assert [f["file"] for f in read.files] == ["gp_2023.parquet", "gp_2024.parquet"]
    res = validate_source(read, spec)
    assert res.accepted["NHSNumber"].tolist() == ["9434765919", "9434765919"]


def test_validated_extracts_are_not_kept_by_great_expectations(tmp_path, cfg):
    """GX's execution engine caches every batch and metric of its datasource: a datasource
    shared across extracts held each one for the rest of the run. None outlives its extract."""
    import gc
    import weakref

    from identifiable_zone import validate

    landing = _write(tmp_path, (HEADER + "".join(_row(f"G{i}") for i in range(30))).encode("utf-8"))
    spec = cfg["gp_patients"]
    read = read_extract(landing, spec)
    alive = weakref.ref(read.frame)
    res = validate_source(read, spec)
    validate_source(read_extract(landing, spec), spec)
    assert len(res.accepted) == 30 and res.summary["rows_quarantined"] == 0
    assert list(validate._gx_context().data_sources.all()) == []
    del read
    gc.collect()
    assert alive() is None, "the landing frame is still referenced after validation"
