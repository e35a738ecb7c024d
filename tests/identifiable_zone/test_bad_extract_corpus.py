"""The bad-extract corpus (tests/data/bad/, see its README.md) through the real reader and
validation: real files, real Great Expectations, no mocks.

For every file: the outcome is exactly the expected (line, rule, field) per fate; every
message and log line names the file, the line and the rule (and field); nothing is lost
(rows in = accepted + quarantined, the row count read independently of the reader); and no
identifier or date value from the file appears in messages, logs, summaries or the
quarantine, flag and report tables."""
from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import pytest

from identifiable_zone.sources import ExtractUnusable, load_sources_config, read_extract
from identifiable_zone.validate import validate_source

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
PERIOD_END = "2024-03-31"  # end of the synthetic reporting period (the config's reporting_period_end)
SOURCES = ["gp_patients", "gp_conditions", "gp_appointments", "iapt_ids001_mpi", "iapt_ids101_referral",
           "iapt_ids201_care_contact", "iapt_ids202_care_activity", "iapt_ids602_ltc",
           "iapt_ids606_coded_scores", "ecds", "apc", "opa"]
FAULTS = {"truncated", "wrong_delimiter", "header_only", "extra_columns", "missing_columns",
          "mixed_date_formats", "invalid_nhs_number", "duplicates", "non_utf8", "negative_los",
          "before_birth", "after_death", "future_period"}
PARENT_FILES = {"gp_patients": "gp_patients.clean.csv", "iapt_ids001_mpi": "iapt_ids001_mpi.clean.csv"}
DUP = "(whole row)"


@dataclass
class Case:
    source: str
    faults: set = field(default_factory=set)
    rows_in: int | None = None                 # None: the file's data rows (5 in most files)
    quarantined: set = field(default_factory=set)  # (line, rule, field)
    blanked: set = field(default_factory=set)      # (line, rule, field): value blanked, row kept
    reported: set = field(default_factory=set)     # (line, rule, field): row and value kept
    unusable: tuple | None = None              # (rule, line or None, extra text the message names)
    encoding_lines: tuple = ()
    extra_columns: tuple = ()
    latest: str | None = PERIOD_END            # None: the run date
    parents: tuple = ()                        # parent tables read from their clean corpus file


CASES = {
    # gp_patients (the spine)
    "gp_patients.clean.csv": Case("gp_patients"),
    "gp_patients.invalid_nhs_number.csv": Case(
        "gp_patients", {"invalid_nhs_number"}, blanked={(5, "nhs_number_format", "NHSNumber")},
        reported={(3, "nhs_number_modulus11", "NHSNumber")}),
    "gp_patients.duplicates.csv": Case(
        "gp_patients", {"duplicates"}, rows_in=8,
        quarantined={(7, "exact_duplicate_row", DUP), (4, "record_id_unique", "PatientRecordId"),
                     (9, "record_id_unique", "PatientRecordId")},
        reported={(2, "nhs_number_unique", "NHSNumber"), (8, "nhs_number_unique", "NHSNumber")}),
    "gp_patients.impossible_dates.csv": Case(
        "gp_patients", {"before_birth", "after_death"},
        quarantined={(3, "date_after_birth", "DateOfDeath"), (3, "date_not_after_death", "RegistrationStartDate"),
                     (5, "date_not_after_death", "RegistrationStartDate"),
                     (6, "date_order", "RegistrationEndDate")}),
    "gp_patients.header_only.csv": Case("gp_patients", {"header_only"}, rows_in=0,
                                        unusable=("table_not_empty", None, "0 rows")),
    "gp_patients.mixed_date_formats.csv": Case(
        "gp_patients", {"mixed_date_formats"},
        quarantined={(6, "date_parses", "RegistrationEndDate")},
        blanked={(4, "date_unambiguous", "DateOfBirth")},
        reported={(3, "date_format_consistent", "DateOfBirth"), (4, "date_format_consistent", "DateOfBirth"),
                  (5, "date_format_consistent", "RegistrationStartDate")}),
    "gp_patients.future_dates.csv": Case(
        "gp_patients", {"future_period"}, quarantined={(4, "date_not_future", "RegistrationStartDate")},
        blanked={(5, "date_not_future", "DateOfBirth")}),
    # gp_conditions
    "gp_conditions.missing_column.csv": Case("gp_conditions", {"missing_columns"},
                                             unusable=("columns_present", None, "DiagnosisDate")),
    "gp_conditions.before_birth.csv": Case(
        "gp_conditions", {"before_birth"}, parents=("gp_patients",),
        quarantined={(3, "date_after_birth", "DiagnosisDate")}),
    "gp_conditions.truncated.csv": Case("gp_conditions", {"truncated"}, unusable=("file_complete", 6, "truncated")),
    "gp_conditions.mixed_date_formats.csv": Case(
        "gp_conditions", {"mixed_date_formats"}, parents=("gp_patients",),
        quarantined={(3, "date_parses", "DiagnosisDate"), (4, "date_unambiguous", "DiagnosisDate")},
        reported={(4, "date_format_consistent", "DiagnosisDate")}),
    # gp_appointments
    "gp_appointments.before_birth_after_death.csv": Case(
        "gp_appointments", {"before_birth", "after_death"}, parents=("gp_patients",),
        quarantined={(3, "date_after_birth", "AppointmentDate"), (6, "date_not_after_death", "AppointmentDate")}),
    "gp_appointments.wrong_delimiter.csv": Case("gp_appointments", {"wrong_delimiter"},
                                                unusable=("delimiter", 1, ";-delimited")),
    "gp_appointments.extra_columns.csv": Case("gp_appointments", {"extra_columns"}, parents=("gp_patients",),
                                              extra_columns=("FreeTextNote", "StaffName")),
    "gp_appointments.future_reporting_period.csv": Case(
        "gp_appointments", {"future_period"}, parents=("gp_patients",),
        quarantined={(4, "date_not_future", "BookedDate"), (4, "date_not_future", "AppointmentDate"),
                     (5, "date_not_future", "BookedDate")}),
    # iapt_ids001_mpi
    "iapt_ids001_mpi.clean.csv": Case("iapt_ids001_mpi"),
    "iapt_ids001_mpi.non_utf8.csv": Case("iapt_ids001_mpi", {"non_utf8"}, encoding_lines=(4,)),
    "iapt_ids001_mpi.invalid_nhs_number.csv": Case(
        "iapt_ids001_mpi", {"invalid_nhs_number", "duplicates"},
        reported={(3, "nhs_number_modulus11", "NHSNumber")}, blanked={(4, "nhs_number_format", "NHSNumber")},
        quarantined={(5, "record_id_unique", "LocalPatientId"), (6, "record_id_unique", "LocalPatientId")}),
    "iapt_ids001_mpi.future_birth_date.csv": Case(
        "iapt_ids001_mpi", {"future_period"}, latest=None,
        blanked={(3, "date_not_future", "PersonBirthDate"), (5, "date_parses", "PersonBirthDate")}),
    # iapt_ids101_referral
    "iapt_ids101_referral.before_birth.csv": Case(
        "iapt_ids101_referral", {"before_birth"}, parents=("iapt_ids001_mpi",),
        quarantined={(3, "date_after_birth", "ReferralRequestReceivedDate")}),
    "iapt_ids101_referral.discharge_before_referral.csv": Case(
        "iapt_ids101_referral", set(), parents=("iapt_ids001_mpi",),
        quarantined={(4, "date_order", "ServDischDate")}),
    "iapt_ids101_referral.future_reporting_period.csv": Case(
        "iapt_ids101_referral", {"future_period"}, parents=("iapt_ids001_mpi",),
        quarantined={(5, "date_not_future", "ReferralRequestReceivedDate")}),
    "iapt_ids101_referral.missing_column.csv": Case("iapt_ids101_referral", {"missing_columns"},
                                                    unusable=("columns_present", None, "ENDCODE")),
    # iapt_ids201_care_contact
    "iapt_ids201_care_contact.truncated_quoted.csv": Case("iapt_ids201_care_contact", {"truncated"},
                                                          unusable=("file_complete", 6, "truncated")),
    "iapt_ids201_care_contact.mixed_date_formats.csv": Case(
        "iapt_ids201_care_contact", {"mixed_date_formats"},
        quarantined={(5, "date_unambiguous", "CareContDate")},
        reported={(3, "date_format_consistent", "CareContDate"), (5, "date_format_consistent", "CareContDate")}),
    "iapt_ids201_care_contact.duplicates.csv": Case("iapt_ids201_care_contact", {"duplicates"}, rows_in=6,
                                                    quarantined={(7, "exact_duplicate_row", DUP)}),
    "iapt_ids201_care_contact.short_row.csv": Case("iapt_ids201_care_contact", set(),
                                                   unusable=("csv_shape", 4, "6 fields where the header has 7")),
    # iapt_ids202_care_activity
    "iapt_ids202_care_activity.header_only.csv": Case("iapt_ids202_care_activity", {"header_only"}, rows_in=0),
    "iapt_ids202_care_activity.wrong_delimiter.csv": Case("iapt_ids202_care_activity", {"wrong_delimiter"},
                                                          unusable=("delimiter", 1, "tab-delimited")),
    "iapt_ids202_care_activity.duplicates.csv": Case(
        "iapt_ids202_care_activity", {"duplicates"}, rows_in=7,
        quarantined={(3, "record_id_unique", "CareActId"), (7, "record_id_unique", "CareActId"),
                     (8, "exact_duplicate_row", DUP)}),
    # iapt_ids602_ltc
    "iapt_ids602_ltc.missing_column.csv": Case("iapt_ids602_ltc", {"missing_columns"},
                                               unusable=("columns_present", None, "LongTermCondition")),
    "iapt_ids602_ltc.extra_columns.csv": Case("iapt_ids602_ltc", {"extra_columns"}, extra_columns=("Comment",)),
    # the decoded value (an en dash in the local code) is not a code of the pattern: quarantined
    "iapt_ids602_ltc.non_utf8.csv": Case("iapt_ids602_ltc", {"non_utf8"}, encoding_lines=(3,),
                                         quarantined={(3, "pattern", "LongTermCondition")}),
    "iapt_ids602_ltc.trailing_delimiter.csv": Case("iapt_ids602_ltc", {"extra_columns"},
                                                   unusable=("csv_shape", 2, "4 fields where the header has 3")),
    # iapt_ids606_coded_scores
    "iapt_ids606_coded_scores.negative_score.csv": Case(
        "iapt_ids606_coded_scores", set(),
        quarantined={(3, "numeric_min", "PersScore"), (5, "numeric", "PersScore")}),
    "iapt_ids606_coded_scores.future_reporting_period.csv": Case(
        "iapt_ids606_coded_scores", {"future_period"}, quarantined={(4, "date_not_future", "AssToolCompDate")}),
    "iapt_ids606_coded_scores.wrong_delimiter.csv": Case("iapt_ids606_coded_scores", {"wrong_delimiter"},
                                                         unusable=("delimiter", 1, "|-delimited")),
    # ecds
    "ecds.invalid_nhs_number.csv": Case("ecds", {"invalid_nhs_number"},
                                        reported={(3, "nhs_number_modulus11", "NHS_Number")},
                                        blanked={(4, "nhs_number_format", "NHS_Number")}),
    "ecds.before_birth.csv": Case("ecds", {"before_birth"}, quarantined={(4, "date_after_birth", "Arrival_Date")}),
    "ecds.non_utf8.csv": Case("ecds", {"non_utf8"}, encoding_lines=(3,)),
    "ecds.truncated.csv": Case("ecds", {"truncated"}, unusable=("file_complete", 6, "7 of the header's 19 fields")),
    "ecds.mixed_date_formats.csv": Case(
        "ecds", {"mixed_date_formats"}, quarantined={(5, "date_unambiguous", "Arrival_Date")},
        blanked={(6, "date_parses", "Date_Of_Birth")},
        reported={(3, "date_format_consistent", "Arrival_Date"), (5, "date_format_consistent", "Arrival_Date")}),
    # apc
    "apc.negative_los.csv": Case(
        "apc", {"negative_los"},
        quarantined={(3, "date_order", "Discharge_Date"), (3, "numeric_min", "Der_Spell_LoS"),
                     (5, "numeric_min", "Der_Spell_LoS")}),
    "apc.before_birth.csv": Case("apc", {"before_birth"},
                                 quarantined={(4, "date_after_birth", "Admission_Date"),
                                              (4, "date_after_birth", "Discharge_Date")}),
    "apc.future_reporting_period.csv": Case("apc", {"future_period"},
                                            quarantined={(3, "date_not_future", "Discharge_Date")}),
    "apc.duplicates.csv": Case("apc", {"duplicates"}, rows_in=7,
                               quarantined={(7, "exact_duplicate_row", DUP), (2, "record_id_unique", "APCS_Ident"),
                                            (8, "record_id_unique", "APCS_Ident")}),
    # opa
    "opa.invalid_nhs_number.csv": Case("opa", {"invalid_nhs_number"},
                                       reported={(3, "nhs_number_modulus11", "NHS_Number"),
                                                 (5, "nhs_number_modulus11", "NHS_Number")}),
    "opa.before_birth.csv": Case("opa", {"before_birth"}, quarantined={(3, "date_after_birth", "APPTDATE")}),
    "opa.mixed_date_formats.csv": Case(
        "opa", {"mixed_date_formats"}, quarantined={(4, "date_unambiguous", "APPTDATE")},
        reported={(3, "date_format_consistent", "APPTDATE"), (4, "date_format_consistent", "APPTDATE"),
                  (6, "date_format_consistent", "Date_Of_Birth")}),
    "opa.truncated_quoted.csv": Case("opa", {"truncated"}, unusable=("file_complete", 6, "quoted field")),
    "opa.header_only.csv": Case("opa", {"header_only"}, rows_in=0),
    # later cases (issue 15): long fields, Parquet types, identifiers lost (make_corpus.later_cases)
    "iapt_ids201_care_contact.long_field.csv": Case(
        "iapt_ids201_care_contact", set(), quarantined={(2, "code_allowed", "AttendOrDNACode")},
        blanked={(6, "code_allowed", "IAPTLTCServiceInd")}),
    "iapt_ids201_care_contact.long_field_short_row.csv": Case(
        "iapt_ids201_care_contact", set(), unusable=("csv_shape", 5, "6 fields where the header has 7")),
    "gp_patients.nullable_int_nhs_number.parquet": Case("gp_patients", set()),
    "ecds.nhs_number_scientific.csv": Case(
        "ecds", {"invalid_nhs_number"}, unusable=("identifier_kept", 2, "on NHS_Number: 4 of 5 rows")),
    # reference data
    "lsoa_imd.bad_decile.csv": Case("lsoa_imd", set(),
                                    quarantined={(3, "code_allowed", "IMD_Decile"), (5, "code_allowed", "IMD_Decile"),
                                                 (3, "numeric_max", "IMD_Decile"), (5, "numeric", "IMD_Decile")}),
}


@pytest.fixture(scope="module")
def cfg():
    return load_sources_config()


def spec_for(cfg, name: str):
    case = CASES[name]
    return replace(cfg[case.source], file=name)


@lru_cache(maxsize=None)
def _parent_rows(table: str):
    cfg = load_sources_config()
    spec = replace(cfg[table], file=PARENT_FILES[table])
    res = validate_source(read_extract(BAD, spec), spec, threshold=1.0, latest_date=PERIOD_END)
    assert res.summary["rows_quarantined"] == 0
    return res.accepted


def parents_for(case: Case) -> dict:
    return {t: _parent_rows(t) for t in case.parents}


def _decode(data: bytes) -> str:
    """UTF-8, a line that is not UTF-8 as cp1252: independent of the reader under test."""
    return "".join(ln.decode("utf-8") if _is_utf8(ln) else ln.decode("cp1252")
                   for ln in data.splitlines(keepends=True))


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def raw_records(name: str, spec) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line, fields) of each data record of a corpus file, read with the csv
    module and the delimiter its header uses."""
    if name.endswith(".parquet"):  # rows as pyarrow reads them, numbered from 1
        import pyarrow.parquet as pq

        rows = pq.read_table(BAD / name).to_pylist()
        header = [spec.rename.get(c, c) for c in rows[0]] if rows else []
        return header, [(i, ["" if v is None else str(v) for v in r.values()]) for i, r in enumerate(rows, start=1)]
    text = _decode((BAD / name).read_bytes())
    head = text.split("\n", 1)[0]
    delim = next((d for d in (spec.delimiter, ",", ";", "\t", "|") if d in head), spec.delimiter)
    reader = csv.reader(io.StringIO(text), delimiter=delim)
    records, prev = [], 0
    limit = csv.field_size_limit(1 << 30)  # the corpus has fields over the default 128 KiB
    try:
        for row in reader:
            if row and any(v.strip() for v in row):
                records.append((prev + 1, row))
            prev = reader.line_num
    finally:  # as it was: the reader under test must cope with the default limit itself
        csv.field_size_limit(limit)
    header = [spec.rename.get(c.strip(), c.strip()) for c in records[0][1]]
    return header, records[1:]


def values_never_shown(name: str, spec) -> set[str]:
    """Identifier values (NHS number, names, date of birth, postcode) and every date value of
    the file: none may appear in a message, a log line or a summary."""
    header, records = raw_records(name, spec)
    cols = {c for role, c in spec.identifiers.items() if role != "sex"} | set(spec.dates)
    out = set()
    for _, row in records:
        for c, v in zip(header, row):
            if c in cols and len(v.strip()) >= 3:
                out.add(v.strip())
    return out


def run_case(cfg, name: str, caplog, threshold: float = 1.0):
    case = CASES[name]
    spec = spec_for(cfg, name)
    parents = parents_for(case)
    caplog.clear()
    caplog.set_level(logging.INFO, logger="identifiable_zone")
    read = read_extract(BAD, spec)
    res = validate_source(read, spec, threshold=threshold, latest_date=case.latest, parents=parents)
    return spec, read, res


def zone_log(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("identifiable_zone"))


def as_set(t) -> set:
    return {(int(r.line), r.rule, r.field) for r in t.itertuples()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_file(cfg, name, caplog):
    case = CASES[name]
    spec = spec_for(cfg, name)
    header, records = raw_records(name, spec)
    rows_in = len(records)
    if case.rows_in is not None:
        assert rows_in == case.rows_in
    secret = values_never_shown(name, spec)

    if case.unusable:
        rule, line, extra = case.unusable
        caplog.clear()
        caplog.set_level(logging.INFO, logger="identifiable_zone")
        with pytest.raises(ExtractUnusable) as e:
            read = read_extract(BAD, spec)
            validate_source(read, spec, threshold=1.0, latest_date=case.latest, parents=parents_for(case))
        msg = str(e.value)
        assert msg.startswith(f"{case.source} ({name}): ")  # the file
        assert f"rule {rule} failed" in msg  # the rule
        if line is not None:
            assert f"line {line}" in msg  # the line
        assert extra in msg
        shown = msg + "\n" + zone_log(caplog)
        assert not [v for v in secret if v in shown], "a value from the file is shown"
        return

    spec, read, res = run_case(cfg, name, caplog)
    s = res.summary
    # nothing lost: every row of the file is accepted or quarantined, once
    assert s["rows_in"] == rows_in == len(read.frame)
    assert s["rows_accepted"] + s["rows_quarantined"] == rows_in == len(res.accepted) + res.quarantine["row"].nunique()
    line_to_id = {line: dict(zip(header, row))[spec.record_id] for line, row in records}
    kept_ids = sorted(res.accepted[spec.record_id].tolist())
    q_lines = set(res.quarantine["line"].astype(int))
    assert kept_ids == sorted(line_to_id[ln] for ln in line_to_id if ln not in q_lines)
    assert {line_to_id[int(r.line)] for r in res.quarantine.itertuples()} == set(res.quarantine["record_id"])

    # exactly the expected failures, each naming file, line, rule and field
    assert as_set(res.quarantine) == case.quarantined
    assert as_set(res.flags) == case.blanked
    assert as_set(res.reported) == case.reported
    for t in (res.quarantine, res.flags, res.reported):
        assert set(t["file"]) <= {name}
    rows_q = {ln for ln, _, _ in case.quarantined}
    assert s["rows_quarantined"] == len(rows_q)
    for ln, _, fld in case.blanked:
        if ln not in rows_q:
            acc = res.accepted.set_index(spec.record_id)
            assert acc.loc[line_to_id[ln], fld] is None  # value blanked, row kept

    log = zone_log(caplog)
    for ln, rule, fld in case.quarantined:
        assert f"{name} line {ln}: rule {rule} failed on {fld}: row quarantined" in log
    for ln, rule, fld in case.blanked:
        assert f"{name} line {ln}: rule {rule} failed on {fld}: value blanked, row kept" in log
    for rule, fld in {(r, f) for _, r, f in case.reported}:
        first = min(ln for ln, r, f in case.reported if (r, f) == (rule, fld))
        assert f"rule {rule} on {fld} (first at {name} line {first}): kept, reported only" in log
    assert s["encoding_issue_lines"] == [{"file": name, "line": ln} for ln in case.encoding_lines]
    if case.encoding_lines:
        assert f"not UTF-8 decoded with fallback (first: {name} line {case.encoding_lines[0]})" in log
    assert tuple(s["extra_columns"]) == case.extra_columns
    for c in case.extra_columns:
        assert c in log and name in log
        assert c not in res.accepted.columns
    if rows_in == 0:
        assert f"{case.source} ({name}): header only, 0 rows" in log
    assert s["rules_not_run"] == []

    # no value of the file in messages, logs, the summary or the quarantine/flag/report tables
    summary = dict(s)
    summary.pop("latest_date_allowed")  # the configured period end, not a value of the file
    shown = "\n".join([log, json.dumps(summary, default=str), res.quarantine.to_csv(),
                       res.flags.to_csv(), res.reported.to_csv()])
    assert not [v for v in secret if v in shown], "a value from the file is shown"


def test_decoded_values_survive(cfg, caplog):
    """Non-UTF-8 lines are decoded as cp1252, not dropped or mangled."""
    for name, col, line, value in (("ecds.non_utf8.csv", "Patient_Surname", 3, "O’BRIEN"),
                                   ("iapt_ids001_mpi.non_utf8.csv", "PersonGivenName", 4, "ZOË"),
                                   ("iapt_ids602_ltc.non_utf8.csv", "LongTermCondition", 3, "LOCAL–MUS")):
        spec, read, res = run_case(cfg, name, caplog)
        assert read.frame.loc[read.row_line.index(line), col] == value


def test_cross_table_rules_without_parent_rows_are_listed_not_run(cfg, caplog):
    """Without the gp_patients rows the appointment life rules cannot run: they say so
    (the pipeline passes the parents' accepted rows)."""
    name = "gp_appointments.before_birth_after_death.csv"
    spec = spec_for(cfg, name)
    caplog.set_level(logging.INFO, logger="identifiable_zone")
    res = validate_source(read_extract(BAD, spec), spec, threshold=1.0, latest_date=PERIOD_END)
    assert len(res.quarantine) == 0
    assert {(x["rule"], x["field"]) for x in res.summary["rules_not_run"]} == {
        ("date_after_birth", "AppointmentDate"), ("date_not_after_death", "AppointmentDate")}
    assert "rule date_not_after_death on AppointmentDate not run: the rows of gp_patients" in zone_log(caplog)


def test_default_threshold_refuses_the_extract_naming_the_first_line(cfg, caplog):
    """With the default 20% threshold, 2 bad rows of 5 make the extract unusable."""
    name = "apc.negative_los.csv"
    spec = spec_for(cfg, name)
    with pytest.raises(ExtractUnusable, match=r"apc \(apc\.negative_los\.csv\): 2 of 5 rows \(40\.0%\) fail row-level "
                                              r"rules, over the 20% threshold; worst rule numeric_min on "
                                              r"Der_Spell_LoS: 2 rows \(first at apc\.negative_los\.csv line 3\)"):
        validate_source(read_extract(BAD, spec), spec, latest_date=PERIOD_END)


def test_corpus_covers_every_source_and_fault():
    files = {p.name for p in BAD.glob("*.csv")} | {p.name for p in BAD.glob("*.parquet")}
    assert files == set(CASES), "every corpus file has exactly one expected outcome"
    for src in SOURCES:
        assert sum(c.source == src for c in CASES.values()) >= 3, src
    assert FAULTS <= set().union(*(c.faults for c in CASES.values()))
    readme = (BAD / "README.md").read_text(encoding="utf-8")
    for name in CASES:
        assert f"`{name}`" in readme, name
    assert set(load_sources_config().sources) == set(SOURCES) | {"lsoa_imd"}
