"""Bad landing extracts: each ends in a clear message naming file, line and rule/field, and
nothing is lost (rows in = accepted + quarantined). Real files, real GX."""
import pytest

from identifiable_zone.sources import ExtractUnusable, load_sources_config, read_extract
from identifiable_zone.validate import validate_source

COLS = ["EC_Ident", "NHS_Number", "Patient_Forename", "Patient_Surname", "Date_Of_Birth", "Sex", "Postcode",
        "Arrival_Date", "Arrival_Time", "EC_Department_Type", "EC_AttendanceCategory", "EC_Arrival_Mode_SNOMED_CT",
        "EC_Chief_Complaint_SNOMED_CT", "EC_Diagnosis_01", "Discharge_Destination_SNOMED_CT", "Age_At_Arrival",
        "Der_Postcode_LSOA_2011_Code", "GP_Practice_Code", "Der_Provider_Code"]


def row(rid, arrival="2023-05-01", dob="1980-02-01", sex="1", forename="ANN", age="43"):
    vals = {"EC_Ident": rid, "NHS_Number": "9434765919", "Patient_Forename": forename, "Patient_Surname": "LEE",
            "Date_Of_Birth": dob, "Sex": sex, "Postcode": "HX1 2AB", "Arrival_Date": arrival,
            "Arrival_Time": "10:00", "EC_Department_Type": "01", "EC_AttendanceCategory": "1",
            "EC_Arrival_Mode_SNOMED_CT": "1048001000000106", "EC_Chief_Complaint_SNOMED_CT": "21522001",
            "EC_Diagnosis_01": "82271004", "Discharge_Destination_SNOMED_CT": "306689006", "Age_At_Arrival": age,
            "Der_Postcode_LSOA_2011_Code": "E01000001", "GP_Practice_Code": "Y10000", "Der_Provider_Code": "RXG"}
    return ",".join(vals[c] for c in COLS) + "\n"


HEADER = ",".join(COLS) + "\n"


@pytest.fixture(scope="module")
def cfg():
    return load_sources_config()


def landing(tmp_path, body: bytes, name="ecds.csv"):
    d = tmp_path / "landing"
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(body)
    return d


def check(res, n_in):
    assert res.summary["rows_in"] == n_in == len(res.accepted) + res.summary["rows_quarantined"]


def test_missing_column_names_file_rule_and_column(tmp_path, cfg):
    header = HEADER.replace("Arrival_Date,", "")
    body = header + row("E1").replace(",2023-05-01,", ",")
    with pytest.raises(ExtractUnusable, match=r"ecds \(ecds\.csv\): rule columns_present failed: 1 required "
                                              r"column\(s\) missing: Arrival_Date"):
        validate_source(read_extract(landing(tmp_path, body.encode()), cfg["ecds"]), cfg["ecds"])


def test_unknown_code_and_unparseable_date_name_file_line_rule_field(tmp_path, cfg):
    rows = [row(f"E{i}") for i in range(30)]
    rows[4] = row("E4", arrival="2023-02-30")        # impossible date -> quarantined (line 6)
    rows[9] = row("E9", arrival="yesterday")         # not a date -> quarantined (line 11)
    rows[12] = row("E12", sex="Q")                   # unknown code -> value blanked, row kept (line 14)
    rows[15] = row("E15", age="forty")               # not a number -> value blanked, row kept (line 17)
    spec = cfg["ecds"]
    res = validate_source(read_extract(landing(tmp_path, (HEADER + "".join(rows)).encode()), spec), spec)
    check(res, 30)
    q = res.quarantine.set_index("record_id")
    assert set(q.index) == {"E4", "E9"}
    assert q.loc["E4", ["file", "line", "rule", "field"]].tolist() == ["ecds.csv", 6, "date_parses", "Arrival_Date"]
    assert q.loc["E9", "line"] == 11
    f = res.flags.set_index("record_id")
    assert f.loc["E12", ["line", "rule", "field"]].tolist() == [14, "code_allowed", "Sex"]
    assert f.loc["E15", ["line", "rule", "field"]].tolist() == [17, "numeric", "Age_At_Arrival"]
    ex = res.summary["quarantine_examples"]
    assert {"file": "ecds.csv", "line": 6, "rule": "date_parses", "field": "Arrival_Date"} in ex
    assert "yesterday" not in str(res.summary)  # never a value


def test_unknown_code_with_quarantine_action(tmp_path, cfg):
    spec = cfg["gp_appointments"]
    head = "AppointmentId,PatientRecordId,PracticeCode,BookedDate,AppointmentDate,AppointmentStatus,HCPType,ApptMode,NationalCategory\n"
    rows = [f"A{i},G1,Y1,2023-01-01,2023-01-05,{'Maybe' if i == 3 else 'Attended'},GP,Telephone,Clinical Triage\n"
            for i in range(10)]
    res = validate_source(read_extract(landing(tmp_path, (head + "".join(rows)).encode(), "gp_appointments.csv"),
                                       spec), spec)
    check(res, 10)
    assert res.quarantine[["record_id", "line", "rule", "field"]].values.tolist() == [
        ["A3", 5, "code_allowed", "AppointmentStatus"]]


def test_wrong_delimiter_is_named(tmp_path, cfg):
    body = (HEADER + row("E1") + row("E2")).replace(",", ";")
    with pytest.raises(ExtractUnusable, match=r"ecds \(ecds\.csv\): rule delimiter failed: line 1 .*;-delimited"):
        read_extract(landing(tmp_path, body.encode()), cfg["ecds"])


def test_non_utf8_bytes_are_decoded_and_reported_by_line(tmp_path, cfg):
    body = HEADER.encode() + row("E1").encode() + row("E2", forename="JOS\xc9").encode("cp1252") + row("E3").encode()
    spec = cfg["ecds"]
    read = read_extract(landing(tmp_path, body), spec)
    res = validate_source(read, spec)
    check(res, 3)
    assert res.summary["encoding_issue_lines"] == [{"file": "ecds.csv", "line": 3}]
    assert res.accepted.set_index("EC_Ident").loc["E2", "Patient_Forename"] == "JOSÉ"


def test_header_only_and_zero_byte_files(tmp_path, cfg):
    spec = cfg["ecds"]
    res = validate_source(read_extract(landing(tmp_path, HEADER.encode()), spec), spec)
    check(res, 0)  # an extract with no rows is valid (no attendances) and says so
    gp = cfg["gp_patients"]
    gp_head = ",".join(gp.columns) + "\n"
    with pytest.raises(ExtractUnusable, match=r"gp_patients \(gp_patients\.csv\): rule table_not_empty failed"):
        validate_source(read_extract(landing(tmp_path, gp_head.encode(), "gp_patients.csv"), gp), gp)
    (tmp_path / "landing" / "ecds.csv").write_bytes(b"")
    with pytest.raises(ExtractUnusable, match=r"ecds \(ecds\.csv\): rule file_not_empty failed: the file is empty "
                                              r"\(0 bytes"):
        read_extract(tmp_path / "landing", spec)


def test_exact_duplicate_rows_keep_one_copy_duplicate_ids_quarantine_all(tmp_path, cfg):
    rows = [row(f"E{i}") for i in range(10)]
    rows += [row("E2"), row("E2")]                     # two more exact copies of E2 (lines 12, 13)
    rows += [row("E5", forename="BEA")]                # same id as line 7, different content (line 14)
    spec = cfg["ecds"]
    res = validate_source(read_extract(landing(tmp_path, (HEADER + "".join(rows)).encode()), spec), spec,
                          threshold=0.5)
    check(res, 13)
    q = res.quarantine
    dup = q[q["rule"] == "exact_duplicate_row"]
    assert dup["record_id"].tolist() == ["E2", "E2"] and dup["line"].tolist() == [12, 13]
    assert "E2" in set(res.accepted["EC_Ident"])       # one copy kept
    conflict = q[q["rule"] == "record_id_unique"]
    assert conflict["record_id"].tolist() == ["E5", "E5"] and conflict["line"].tolist() == [7, 14]
    assert "E5" not in set(res.accepted["EC_Ident"])
    assert res.summary["rows_quarantined"] == 4


def test_future_dates_after_reporting_period(tmp_path, cfg):
    rows = [row(f"E{i}") for i in range(20)]
    rows[3] = row("E3", arrival="2024-04-02")          # after the period: quarantined (line 5)
    rows[7] = row("E7", dob="2030-01-01")              # birth in the future: value blanked (line 9)
    rows[8] = row("E8", arrival="2024-03-31")          # last day of the period: fine
    spec = cfg["ecds"]
    res = validate_source(read_extract(landing(tmp_path, (HEADER + "".join(rows)).encode()), spec), spec,
                          latest_date="2024-03-31")
    check(res, 20)
    assert res.quarantine[["record_id", "line", "rule", "field"]].values.tolist() == [
        ["E3", 5, "date_not_future", "Arrival_Date"]]
    f = res.flags.set_index("record_id")
    assert f.loc["E7", ["line", "rule", "field"]].tolist() == [9, "date_not_future", "Date_Of_Birth"]
    assert res.accepted.set_index("EC_Ident").loc["E7", "Date_Of_Birth"] is None
    assert res.summary["latest_date_allowed"] == "2024-03-31"
    # without a reporting period the run date is the limit
    rows[3] = row("E3", arrival="2999-01-01")
    res = validate_source(read_extract(landing(tmp_path, (HEADER + "".join(rows)).encode()), spec), spec)
    assert res.quarantine["record_id"].tolist() == ["E3"]


def test_extra_columns_are_reported_not_silently_dropped(tmp_path, cfg):
    header = HEADER.rstrip("\n") + ",FreeTextNotes,Extra2\n"
    rows = [row(f"E{i}").rstrip("\n") + ",note,x\n" for i in range(5)]
    spec = cfg["ecds"]
    read = read_extract(landing(tmp_path, (header + "".join(rows)).encode()), spec)
    res = validate_source(read, spec)
    check(res, 5)
    assert res.summary["extra_columns"] == ["FreeTextNotes", "Extra2"]
    assert "FreeTextNotes" not in res.accepted.columns


def test_threshold_message_names_first_line(tmp_path, cfg):
    rows = [row(f"E{i}") for i in range(6)] + [row(f"B{i}", arrival="n/a") for i in range(4)]
    spec = cfg["ecds"]
    with pytest.raises(ExtractUnusable, match=r"4 of 10 rows .*date_parses on Arrival_Date: 4 rows "
                                              r"\(first at ecds\.csv line 8\)"):
        validate_source(read_extract(landing(tmp_path, (HEADER + "".join(rows)).encode()), spec), spec)
