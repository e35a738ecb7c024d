"""A hostile or broken extract (issue 15, defects 5, 6, 7 and 9): each ends in one line naming
the source, file, line and field as they apply (an ``LtcevalError``, which the command line
prints without a traceback), never quoting a value, and nothing is lost silently. Real files,
real Parquet, real GX; the bad-extract corpus (tests/data/bad/) holds the single-file cases."""
from __future__ import annotations

import os
from dataclasses import replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from core.errors import LtcevalError
from core.settings import REPO_ROOT
from identifiable_zone import sources
from identifiable_zone.file_validation import validate_file
from identifiable_zone.sources import load_sources_config, read_extract
from identifiable_zone.validate import validate_source

NHS = "9434765919"  # a valid NHS number (Modulus 11)
COLS = ["EC_Ident", "NHS_Number", "Patient_Forename", "Patient_Surname", "Date_Of_Birth", "Sex", "Postcode",
        "Arrival_Date", "Arrival_Time", "EC_Department_Type", "EC_AttendanceCategory", "EC_Arrival_Mode_SNOMED_CT",
        "EC_Chief_Complaint_SNOMED_CT", "EC_Diagnosis_01", "Discharge_Destination_SNOMED_CT", "Age_At_Arrival",
        "Der_Postcode_LSOA_2011_Code", "GP_Practice_Code", "Der_Provider_Code"]


def row(rid: str, nhs: str = NHS, forename: str = "ANN") -> dict:
    return {"EC_Ident": rid, "NHS_Number": nhs, "Patient_Forename": forename, "Patient_Surname": "LEE",
            "Date_Of_Birth": "1980-02-01", "Sex": "1", "Postcode": "HX1 2AB", "Arrival_Date": "2023-05-01",
            "Arrival_Time": "10:00", "EC_Department_Type": "01", "EC_AttendanceCategory": "1",
            "EC_Arrival_Mode_SNOMED_CT": "1048001000000106", "EC_Chief_Complaint_SNOMED_CT": "21522001",
            "EC_Diagnosis_01": "82271004", "Discharge_Destination_SNOMED_CT": "306689006", "Age_At_Arrival": "43",
            "Der_Postcode_LSOA_2011_Code": "E01000001", "GP_Practice_Code": "Y10000", "Der_Provider_Code": "RXG"}


def csv_text(rows: list[dict]) -> str:
    return ",".join(COLS) + "\n" + "".join(",".join(r[c] for c in COLS) + "\n" for r in rows)


@pytest.fixture(scope="module")
def cfg():
    return load_sources_config()


@pytest.fixture
def landing(tmp_path):
    d = tmp_path / "landing"
    d.mkdir()
    return d


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert isinstance(e.value, LtcevalError) and "\n" not in msg
    return msg


# -- defect 5: a long field switched the CSV shape check off ---------------------------------

LONG = '"' + "A" * 100_000 + "\n" + "A" * 100_000 + '"'  # one quoted field over 128 KiB, two lines


def test_long_field_does_not_switch_the_shape_check_off(landing, cfg, tmp_path):
    """A quoted field over the csv module's 128 KiB limit, then a short row: refused at the
    short row's own line (the long field spans two), whole or in segments."""
    rows = [row(f"E{i}") for i in range(6)]
    rows[0]["Patient_Forename"] = LONG
    text = csv_text(rows).split("\n")
    text[4] = text[4].rsplit(",", 1)[0]  # row 3 (line 5: the long field has two lines) a field short
    (landing / "ecds.csv").write_text("\n".join(text))
    spec = cfg["ecds"]
    with pytest.raises(sources.ExtractUnusable) as e:
        read_extract(landing, spec)
    assert one_line(e) == ("ecds (ecds.csv): rule csv_shape failed at line 5: 18 fields where the header has 19 "
                           "(a delimiter inside an unquoted value, a missing or extra field, or a cut line); no "
                           "row of the file was read")
    with pytest.raises(sources.ExtractUnusable, match=r"csv_shape failed at line 5"):
        validate_file(landing, spec, "ecds.csv", "2024-03-31", {}, 1.0, tmp_path / "seg", segment_bytes=4096,
                      workers=1)


def test_long_field_rows_keep_their_lines_and_nothing_is_lost(landing, cfg):
    """Rows after a long multi-line field keep their own line numbers; the long value itself is
    quarantined by its column's rule with a reason (not a date here), never shown."""
    rows = [row(f"E{i}") for i in range(6)]
    rows[0]["Arrival_Date"] = LONG
    rows[4]["Arrival_Date"] = "2023-02-30"  # line 7 (not 6: the long field spans two lines)
    (landing / "ecds.csv").write_text(csv_text(rows))
    spec = cfg["ecds"]
    res = validate_source(read_extract(landing, spec), spec, threshold=1.0, latest_date="2024-03-31")
    s = res.summary
    assert s["rows_in"] == 6 == s["rows_accepted"] + s["rows_quarantined"]
    assert {(int(r.line), r.rule, r.field) for r in res.quarantine.itertuples()} == {
        (2, "date_parses", "Arrival_Date"), (7, "date_parses", "Arrival_Date")}
    assert "AAAA" not in str(s)


def test_lone_carriage_returns_are_line_ends_for_both_readers(landing, cfg):
    """A file whose lines end in a lone CR (old Mac) with a quoted field: counted as pandas
    reads it, not refused and not numbered by guess."""
    rows = [row(f"E{i}") for i in range(4)]
    rows[1]["Patient_Surname"] = '"LEE, JR"'
    rows[2]["Arrival_Date"] = "2023-02-30"
    (landing / "ecds.csv").write_text(csv_text(rows).replace("\n", "\r"))
    spec = cfg["ecds"]
    res = validate_source(read_extract(landing, spec), spec, threshold=1.0, latest_date="2024-03-31")
    assert res.summary["rows_in"] == 4
    assert res.quarantine["line"].tolist() == [4]


# -- defect 6: Parquet types, and an identifier column mostly lost ---------------------------

def test_parquet_values_are_read_as_their_own_type(landing, cfg):
    """Integers as their digits (a nullable int64 NHS number with one null is not floats),
    dates as ISO, a timestamp as its date, dictionary text as text."""
    n = 4
    cols = {c: pa.array([row(f"E{i}")[c] for i in range(n)], type=pa.string()) for c in COLS}
    cols["NHS_Number"] = pa.array([9434765919, None, 9434765919, 9434765919], type=pa.int64())
    cols["Age_At_Arrival"] = pa.array([43, 7, None, 101], type=pa.int32())
    cols["Date_Of_Birth"] = pa.array([None, 3652, 0, 18000], type=pa.date32())
    cols["Arrival_Date"] = pa.array([1_682_899_200_000_000] * n, type=pa.timestamp("us"))
    cols["Sex"] = pa.array(["1", "2", "1", None]).dictionary_encode()
    pq.write_table(pa.table(cols), landing / "ecds.parquet")
    spec = replace(cfg["ecds"], file="ecds.parquet")
    read = read_extract(landing, spec)
    f = read.frame
    assert f["NHS_Number"].tolist() == [NHS, None, NHS, NHS]
    assert f["Age_At_Arrival"].tolist() == ["43", "7", None, "101"]
    assert f["Date_Of_Birth"].tolist() == [None, "1980-01-01", "1970-01-01", "2019-04-14"]
    assert f["Arrival_Date"].tolist() == ["2023-05-01"] * n
    assert f["Sex"].tolist() == ["1", "2", "1", None]
    res = validate_source(read, spec, threshold=1.0, latest_date="2024-03-31")
    assert res.summary["flags_by_rule"] == [] and res.summary["rows_accepted"] == n


def test_parquet_column_that_is_not_one_value_a_row_is_refused(landing, cfg):
    cols = {c: pa.array([row("E1")[c]], type=pa.string()) for c in COLS}
    cols["Patient_Forename"] = pa.array([["ANN", "MARIE"]])
    pq.write_table(pa.table(cols), landing / "ecds.parquet")
    with pytest.raises(sources.ExtractUnusable) as e:
        read_extract(landing, replace(cfg["ecds"], file="ecds.parquet"))
    msg = one_line(e)
    assert msg.startswith("ecds (ecds.parquet): rule file_readable failed: column Patient_Forename holds list")
    assert "ANN" not in msg


@pytest.mark.parametrize("bad", ["9.43E+09", "9434765919.0"])
def test_identifier_mostly_blanked_stops_the_extract_whole_or_in_segments(landing, cfg, tmp_path, bad):
    """NHS numbers a spreadsheet wrote in scientific notation, or as decimals: blanking them
    row by row would accept an extract that links nobody. Stopped, naming file, field, rule
    and first line, whole or validated in segments; never the value."""
    rows = [row(f"E{i}", nhs=bad if i % 4 else NHS) for i in range(80)]  # 60 of 80 bad
    (landing / "ecds.csv").write_text(csv_text(rows))
    spec = cfg["ecds"]
    expected = (r"^ecds \(ecds\.csv\): rule identifier_kept failed on NHS_Number: 60 of 80 rows \(75%\) lost their "
                r"value to rule nhs_number_format \(first at ecds\.csv line 3\)")
    with pytest.raises(sources.ExtractUnusable, match=expected) as e:
        validate_source(read_extract(landing, spec), spec, threshold=1.0, latest_date="2024-03-31")
    assert bad not in one_line(e)
    with pytest.raises(sources.ExtractUnusable, match=expected):
        validate_file(landing, spec, "ecds.csv", "2024-03-31", {}, 1.0, tmp_path / "seg", segment_bytes=4096,
                      workers=1)
    # a few bad ones are still blanked and reported, the extract accepted
    rows = [row(f"E{i}", nhs=bad if i % 10 == 0 else NHS) for i in range(80)]
    (landing / "ecds.csv").write_text(csv_text(rows))
    res = validate_source(read_extract(landing, spec), spec, threshold=1.0, latest_date="2024-03-31")
    assert res.summary["flags_by_rule"] == [{"rule": "nhs_number_format", "field": "NHS_Number", "rows": 8}]


# -- defect 7: paths out of the landing folder ------------------------------------------------

def _config_with(tmp_path, **ecds) -> os.PathLike:
    raw = yaml.safe_load((REPO_ROOT / "config" / "sources.yml").read_text(encoding="utf-8"))
    raw["sources"]["ecds"].update(ecds)
    path = tmp_path / "sources.yml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.mark.parametrize("pattern, why", [
    ("../elsewhere/*.csv", r"must not leave the landing folder \('\.\.' in \.\./elsewhere/\*\.csv\)"),
    ("sub/../../x.csv", r"must not leave the landing folder"),
    ("/etc/ecds.csv", r"must be a path relative to the landing folder, not an absolute path"),
])
def test_file_pattern_leaving_the_landing_folder_is_refused(tmp_path, landing, cfg, pattern, why):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "ecds.csv").write_text(csv_text([row("E1")]))
    with pytest.raises(LtcevalError, match=rf"^config: ecds\.file {why}") as e:
        load_sources_config(_config_with(tmp_path, file=pattern))
    one_line(e)
    assert isinstance(e.value, ValueError)  # as the config's other errors
    with pytest.raises(sources.ExtractUnusable, match=rf"^ecds\.file {why}") as e:  # a spec made in code
        read_extract(landing, replace(cfg["ecds"], file=pattern))
    one_line(e)


def test_link_out_of_the_landing_folder_is_refused_inside_is_read(tmp_path, landing, cfg):
    outside = tmp_path / "outside.csv"
    outside.write_text(csv_text([row("E1")]))
    (landing / "ecds.csv").symlink_to(outside)
    with pytest.raises(sources.ExtractUnusable) as e:
        read_extract(landing, cfg["ecds"])
    assert one_line(e) == ("ecds (ecds.csv): rule file_in_landing failed: it is, or is reached through, a link to "
                           "a file outside the landing folder; copy the file into the landing folder")
    # a folder linked from outside: the same
    (landing / "ecds.csv").unlink()
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "ecds.csv").write_text(csv_text([row("E1")]))
    (landing / "site").symlink_to(tmp_path / "ext")
    with pytest.raises(sources.ExtractUnusable, match=r"^ecds \(site/ecds\.csv\): rule file_in_landing failed"):
        read_extract(landing, replace(cfg["ecds"], file="site/*.csv"))
    # a link that stays inside the landing folder is read
    (landing / "site").unlink()
    (landing / "2024").mkdir()
    (landing / "2024" / "ecds.csv").write_text(csv_text([row("E1"), row("E2")]))
    (landing / "ecds.csv").symlink_to(landing / "2024" / "ecds.csv")
    assert len(read_extract(landing, cfg["ecds"]).frame) == 2


# -- defect 9: tracebacks instead of errors ---------------------------------------------------

def test_folder_or_pipe_matching_the_pattern_is_refused(landing, cfg):
    (landing / "ecds.csv").mkdir()
    with pytest.raises(sources.ExtractUnusable) as e:
        read_extract(landing, cfg["ecds"])
    assert one_line(e) == ("ecds (ecds.csv): rule file_is_file failed: it matches the file pattern ecds.* but is "
                           "a folder")
    (landing / "ecds.csv").rmdir()
    os.mkfifo(landing / "ecds.csv")  # reading it would wait for ever
    with pytest.raises(sources.ExtractUnusable, match=r"^ecds \(ecds\.csv\): rule file_is_file failed: .* is not a "
                                                      r"regular file$"):
        read_extract(landing, cfg["ecds"])


def test_rename_giving_two_columns_one_name_is_refused(tmp_path, landing, cfg):
    with pytest.raises(LtcevalError, match=r"^config: ecds\.rename: NHSNo and NHS_No are both renamed to NHS_Number; "
                                           r"one column per name$") as e:
        load_sources_config(_config_with(tmp_path, rename={"NHSNo": "NHS_Number", "NHS_No": "NHS_Number"}))
    one_line(e)
    # renamed onto a column the file also has: which would be read? Refused, CSV and Parquet
    text = csv_text([row("E1")]).split("\n")
    text[0] += ",NHSNo"
    text[1] += ",9434765919"
    (landing / "ecds.csv").write_text("\n".join(text))
    spec = replace(cfg["ecds"], rename={"NHSNo": "NHS_Number"})
    expected = ("rule columns_unique failed: columns NHS_Number and NHSNo are both read as NHS_Number (rename in "
                "the sources config)")
    with pytest.raises(sources.ExtractUnusable) as e:
        read_extract(landing, spec)
    assert one_line(e) == f"ecds (ecds.csv): {expected}"
    (landing / "ecds.csv").unlink()
    cols = {c: pa.array([row("E1")[c]]) for c in COLS} | {"NHSNo": pa.array([NHS])}
    pq.write_table(pa.table(cols), landing / "ecds.parquet")
    with pytest.raises(sources.ExtractUnusable) as e:
        read_extract(landing, spec)
    assert one_line(e) == f"ecds (ecds.parquet): {expected}"


def test_header_naming_a_column_twice_is_refused(landing, cfg):
    """Pandas read the second copy as NHS_Number.1 (an extra column) and silently used the first."""
    text = csv_text([row("E1")]).split("\n")
    text[0] += ",NHS_Number"
    text[1] += ",9434765919"
    (landing / "ecds.csv").write_text("\n".join(text))
    with pytest.raises(sources.ExtractUnusable) as e:
        read_extract(landing, cfg["ecds"])
    assert one_line(e) == "ecds (ecds.csv): rule columns_unique failed: column NHS_Number appears twice in the header"
