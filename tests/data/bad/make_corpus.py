"""Build the bad-extract corpus in this folder (tests/data/bad/) and its README.md.

    uv run --frozen python tests/data/bad/make_corpus.py

Run once; the files are checked in and the tests read them as they are (they never run
this script). Each file is a handful of rows of one landing extract in the contract's column
layout (config/sources.yml), taken from a small synthetic population (synthetic/, fixed
seed) and then corrupted by hand-written edits below, one fault per file (a few rows each).
Deterministic: the same code and generator give the same bytes. If the generator changes,
rerunning may pick other base rows; then check the line numbers in
tests/identifiable_zone/test_bad_extract_corpus.py still hold.

Identifiers are synthetic; NHS numbers are replaced by valid numbers of the 999 range that
NHS England reserves for testing, so no real person's number can appear in the repository.
"""
from __future__ import annotations

import csv
import io
import sys
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository root, when run as a script

SEED = 20240331
PERSONS = 400
PERIOD_END = "2024-03-31"  # the synthetic data period ends in March 2024 (tests pass it as latest date)


# ---------------------------------------------------------------------------------------------
# base rows

def _mod11_ok(n: str) -> bool:
    d = [int(c) for c in n]
    check = 11 - sum(w * x for w, x in zip(range(10, 1, -1), d[:9])) % 11
    check = 0 if check == 11 else check
    return check != 10 and check == d[9]


def _test_numbers():
    """Valid NHS numbers of the 999 test range, in order."""
    k = 0
    while True:
        first9 = f"999{k:06d}"
        k += 1
        d = [int(c) for c in first9]
        check = 11 - sum(w * x for w, x in zip(range(10, 1, -1), d)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            yield first9 + str(check)


def _iso(d: str, days: int) -> str:
    return (date.fromisoformat(d) + timedelta(days=days)).isoformat()


def base_rows() -> dict[str, pd.DataFrame]:
    """Five clean rows per source (fewer where the population has fewer), related where the
    rules relate them: GP conditions and appointments of the five GP patients (one of whom
    died), IAPT referrals of the five IAPT MPI records."""
    from synthetic.generate import generate
    from synthetic.params import SynthParams

    with tempfile.TemporaryDirectory() as tmp:
        generate(SynthParams(persons=PERSONS, seed=SEED), Path(tmp))
        land = Path(tmp) / "landing"
        t = {p.stem: pd.read_csv(p, dtype=str, keep_default_na=False) for p in land.rglob("*.csv")}

    def valid(df, col):
        return df[col].map(lambda v: len(v) == 10 and v.isdigit() and _mod11_ok(v))

    out = {}
    gp, cond, appt = t["gp_patients"], t["gp_conditions"], t["gp_appointments"]
    gp = gp[valid(gp, "NHSNumber") & ~gp["NHSNumber"].duplicated(keep=False) & (gp["DateOfBirth"] < "1990")]
    has_cond = gp["PatientRecordId"].isin(cond["PatientRecordId"])
    has_appt = gp["PatientRecordId"].isin(appt["PatientRecordId"])
    alive = gp[(gp["DateOfDeath"] == "") & (gp["RegistrationEndDate"] == "") & has_cond & has_appt]
    died = gp[(gp["DateOfDeath"] != "") & (gp["DateOfDeath"] < "2023-06-30") & has_cond & has_appt]
    out["gp_patients"] = pd.concat([alive.head(4), died.head(1)]).reset_index(drop=True)
    ids = out["gp_patients"]["PatientRecordId"].tolist()
    out["gp_conditions"] = pd.concat([cond[cond["PatientRecordId"] == i].head(1) for i in ids]).reset_index(drop=True)
    rows = []
    for i, death in zip(ids, out["gp_patients"]["DateOfDeath"]):
        a = appt[(appt["PatientRecordId"] == i) & ((appt["AppointmentDate"] < death) if death else True)]
        rows.append(a.head(1))
    out["gp_appointments"] = pd.concat(rows).reset_index(drop=True)

    mpi, ref = t["iapt_ids001_mpi"], t["iapt_ids101_referral"]
    mpi = mpi[valid(mpi, "NHSNumber") & mpi["LocalPatientId"].isin(ref["LocalPatientId"])]
    out["iapt_ids001_mpi"] = mpi.head(5).reset_index(drop=True)
    out["iapt_ids101_referral"] = pd.concat(
        [ref[ref["LocalPatientId"] == i].head(1) for i in out["iapt_ids001_mpi"]["LocalPatientId"]]
    ).reset_index(drop=True)
    for name in ("iapt_ids201_care_contact", "iapt_ids202_care_activity", "iapt_ids602_ltc",
                 "iapt_ids606_coded_scores", "lsoa_imd"):
        out[name] = t[name].head(5).reset_index(drop=True)
    for name in ("ecds", "apc", "opa"):
        df = t[name]
        df = df[valid(df, "NHS_Number") & (df["Date_Of_Birth"] < "1990")]
        out[name] = df[~df["NHS_Number"].duplicated()].head(5).reset_index(drop=True)

    numbers, mapping = _test_numbers(), {}
    for name, col in (("gp_patients", "NHSNumber"), ("iapt_ids001_mpi", "NHSNumber"), ("ecds", "NHS_Number"),
                      ("apc", "NHS_Number"), ("opa", "NHS_Number")):
        for v in out[name][col]:
            if v not in mapping:
                mapping[v] = next(numbers)
        out[name][col] = out[name][col].map(mapping)
    out["_spare_numbers"] = pd.DataFrame({"n": [next(numbers) for _ in range(5)]})
    return out


# ---------------------------------------------------------------------------------------------
# writing

def csv_text(df: pd.DataFrame, delimiter: str = ",", quote_all: bool = False) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n",
                   quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    w.writerow(df.columns)
    w.writerows(df.astype(str).values.tolist())
    return buf.getvalue()


def utf8(df: pd.DataFrame, **kw) -> bytes:
    return csv_text(df, **kw).encode("utf-8")


def set_(df: pd.DataFrame, row: int, col: str, value: str) -> pd.DataFrame:
    """Data row ``row`` (1-based, line row + 1) of ``col`` set to ``value``."""
    df.loc[row - 1, col] = value
    return df


def cp1252_line(text: str, line: int) -> bytes:
    """The text as UTF-8 except line ``line`` (1-based), encoded as cp1252."""
    lines = text.split("\n")
    return b"\n".join(ln.encode("cp1252" if i == line else "utf-8") for i, ln in enumerate(lines, start=1))


def bad_mod11(n: str) -> str:
    """The number with its check digit changed so that Modulus 11 fails."""
    for d in "0123456789":
        if d != n[9] and not _mod11_ok(n[:9] + d):
            return n[:9] + d
    raise AssertionError(n)


def cut(text: str, marker: str) -> bytes:
    """The text up to (not including) the last occurrence of ``marker``: a file cut short."""
    i = text.rindex(marker)
    return text[:i].encode("utf-8")


# ---------------------------------------------------------------------------------------------
# the cases: file name, source, fault, expected outcome (for the README), builder

@dataclass
class Case:
    file: str
    source: str
    fault: str
    expected: str
    build: object


def cases(b: dict) -> list[Case]:
    B = {k: v.copy() for k, v in b.items()}  # noqa: N806
    c = lambda name: B[name].copy()  # noqa: E731
    spare = b["_spare_numbers"]["n"].tolist()
    gp = b["gp_patients"]
    mpi = b["iapt_ids001_mpi"]
    out = []

    def add(file, source, fault, expected, build):
        out.append(Case(file, source, fault, expected, build))

    # -- gp_patients -------------------------------------------------------------------------
    add("gp_patients.clean.csv", "gp_patients", "none: the parent rows of the GP conditions and "
        "appointments cases (row 5 died)", "all 5 rows accepted", lambda: utf8(c("gp_patients")))

    def gp_nhs():
        df = c("gp_patients")
        set_(df, 2, "NHSNumber", bad_mod11(df.loc[1, "NHSNumber"]))
        set_(df, 4, "NHSNumber", df.loc[3, "NHSNumber"][:9])
        return utf8(df)
    add("gp_patients.invalid_nhs_number.csv", "gp_patients",
        "row 2: NHS number fails Modulus 11; row 4: nine digits",
        "line 3 nhs_number_modulus11 (reported, kept); line 5 nhs_number_format (value blanked)", gp_nhs)

    def gp_dups():
        df = c("gp_patients")
        again = df.iloc[[1]].copy()                              # row 6: exact copy of row 2
        second = df.iloc[[0]].copy()                             # row 7: a second record, same NHS number
        second["PatientRecordId"] = "G000000007"
        clash = df.iloc[[2]].copy()                              # row 8: record id of row 3, other content
        clash["NHSNumber"] = spare[0]
        return utf8(pd.concat([df, again, second, clash], ignore_index=True))
    add("gp_patients.duplicates.csv", "gp_patients",
        "row 6 exact copy of row 2; row 7 another record with row 1's NHS number; row 8 reuses row 3's "
        "record id with other content",
        "line 7 exact_duplicate_row; lines 4 and 9 record_id_unique (quarantined); lines 2 and 8 "
        "nhs_number_unique (reported, kept)", gp_dups)

    def gp_dates():
        df = c("gp_patients")
        set_(df, 2, "DateOfDeath", _iso(df.loc[1, "DateOfBirth"], -30))        # died before birth
        set_(df, 4, "DateOfDeath", _iso(df.loc[3, "RegistrationStartDate"], -365))  # registered after death
        set_(df, 5, "RegistrationEndDate", _iso(df.loc[4, "RegistrationStartDate"], -10))
        return utf8(df)
    add("gp_patients.impossible_dates.csv", "gp_patients",
        "row 2 died before birth; row 4 registered a year after death; row 5 registration ends "
        "before it starts",
        "line 3 date_after_birth on DateOfDeath and date_not_after_death on RegistrationStartDate; "
        "line 5 date_not_after_death on RegistrationStartDate; line 6 date_order on RegistrationEndDate "
        "(all quarantined)", gp_dates)

    add("gp_patients.header_only.csv", "gp_patients", "header only (the spine)",
        "ExtractUnusable: rule table_not_empty", lambda: utf8(c("gp_patients").head(0)))

    def gp_formats():
        df = c("gp_patients")
        set_(df, 2, "DateOfBirth", "23/05/1941")      # day first, unambiguous
        set_(df, 3, "DateOfBirth", "04/07/1938")      # day first, 4 July or 7 April?
        set_(df, 4, "RegistrationStartDate", df.loc[3, "RegistrationStartDate"].replace("-", ""))
        set_(df, 5, "RegistrationEndDate", "12/31/2019")  # month first: no such date day first
        return utf8(df)
    add("gp_patients.mixed_date_formats.csv", "gp_patients",
        "ISO dates mixed with DD/MM/YYYY (rows 2, 3; row 3 ambiguous), YYYYMMDD (row 4) and a US "
        "MM/DD/YYYY date (row 5)",
        "lines 3, 4 date_format_consistent on DateOfBirth, line 5 on RegistrationStartDate (reported); "
        "line 4 date_unambiguous on DateOfBirth (value blanked); line 6 date_parses on "
        "RegistrationEndDate (quarantined)", gp_formats)

    def gp_future():
        df = c("gp_patients")
        set_(df, 3, "RegistrationStartDate", "2024-06-01")
        set_(df, 4, "DateOfBirth", "2031-01-01")
        return utf8(df)
    add("gp_patients.future_dates.csv", "gp_patients",
        "row 3 registered after the reporting period; row 4 born in the future",
        "line 4 date_not_future on RegistrationStartDate (quarantined); line 5 date_not_future on "
        "DateOfBirth (value blanked)", gp_future)

    # -- gp_conditions -----------------------------------------------------------------------
    add("gp_conditions.missing_column.csv", "gp_conditions", "no DiagnosisDate column",
        "ExtractUnusable: rule columns_present (DiagnosisDate)",
        lambda: utf8(c("gp_conditions").drop(columns="DiagnosisDate")))

    def cond_birth():
        df = c("gp_conditions")
        dob = gp.set_index("PatientRecordId").loc[df.loc[1, "PatientRecordId"], "DateOfBirth"]
        set_(df, 2, "DiagnosisDate", _iso(dob, -365))
        return utf8(df)
    add("gp_conditions.before_birth.csv", "gp_conditions",
        "row 2 diagnosed a year before the patient's birth (gp_patients.clean.csv)",
        "line 3 date_after_birth on DiagnosisDate (quarantined)", cond_birth)

    add("gp_conditions.truncated.csv", "gp_conditions", "file cut in the middle of the last row",
        "ExtractUnusable: rule file_complete at line 6",
        lambda: cut(csv_text(c("gp_conditions")), "," + c("gp_conditions").iloc[-1]["SNOMEDCode"]))

    def cond_formats():
        df = c("gp_conditions")
        set_(df, 2, "DiagnosisDate", "12/31/2020")   # US month-first
        set_(df, 3, "DiagnosisDate", "05/06/2020")   # 5 June or 6 May?
        return utf8(df)
    add("gp_conditions.mixed_date_formats.csv", "gp_conditions",
        "row 2 a US MM/DD/YYYY date; row 3 an ambiguous DD/MM/YYYY date among ISO dates",
        "line 3 date_parses; line 4 date_unambiguous and date_format_consistent (reported) on "
        "DiagnosisDate; lines 3-4 quarantined", cond_formats)

    # -- gp_appointments ---------------------------------------------------------------------
    def appt_life():
        df = c("gp_appointments")
        g = gp.set_index("PatientRecordId")
        set_(df, 2, "BookedDate", _iso(g.loc[df.loc[1, "PatientRecordId"], "DateOfBirth"], -20))
        set_(df, 2, "AppointmentDate", _iso(g.loc[df.loc[1, "PatientRecordId"], "DateOfBirth"], -10))
        set_(df, 5, "AppointmentDate", _iso(g.loc[df.loc[4, "PatientRecordId"], "DateOfDeath"], 20))
        return utf8(df)
    add("gp_appointments.before_birth_after_death.csv", "gp_appointments",
        "row 2 before the patient's birth; row 5 twenty days after the patient's death "
        "(gp_patients.clean.csv)",
        "line 3 date_after_birth, line 6 date_not_after_death on AppointmentDate (quarantined)", appt_life)

    add("gp_appointments.wrong_delimiter.csv", "gp_appointments", "semicolon-delimited",
        "ExtractUnusable: rule delimiter (line 1)", lambda: utf8(c("gp_appointments"), delimiter=";"))

    def appt_extra():
        df = c("gp_appointments")
        df["FreeTextNote"] = "seen"
        df["StaffName"] = "DR WHO"
        return utf8(df)
    add("gp_appointments.extra_columns.csv", "gp_appointments",
        "two columns not in the contract (FreeTextNote, StaffName)",
        "all rows accepted; extra_columns reported and not read further", appt_extra)

    def appt_future():
        df = c("gp_appointments")
        set_(df, 3, "BookedDate", "2024-04-01")
        set_(df, 3, "AppointmentDate", "2024-04-15")
        set_(df, 4, "BookedDate", "2024-04-02")
        return utf8(df)
    add("gp_appointments.future_reporting_period.csv", "gp_appointments",
        "row 3 booked and held after the reporting period; row 4 booked after it",
        "line 4 date_not_future on BookedDate and AppointmentDate; line 5 date_not_future on BookedDate "
        "(quarantined)", appt_future)

    # -- iapt_ids001_mpi ---------------------------------------------------------------------
    add("iapt_ids001_mpi.clean.csv", "iapt_ids001_mpi", "none: the parent rows of the IDS101 cases",
        "all 5 rows accepted", lambda: utf8(c("iapt_ids001_mpi")))

    def mpi_latin():
        df = c("iapt_ids001_mpi")
        set_(df, 3, "PersonGivenName", "ZOË")
        return cp1252_line(csv_text(df), 4)
    add("iapt_ids001_mpi.non_utf8.csv", "iapt_ids001_mpi", "row 3 (line 4) written in cp1252 (Ë as one byte)",
        "all rows accepted, the line decoded as cp1252 and reported (encoding_issue_lines: line 4)",
        mpi_latin)

    def mpi_nhs():
        df = c("iapt_ids001_mpi")
        set_(df, 2, "NHSNumber", bad_mod11(df.loc[1, "NHSNumber"]))
        set_(df, 3, "NHSNumber", "NOT KNOWN")
        set_(df, 5, "LocalPatientId", df.loc[3, "LocalPatientId"])
        return utf8(df)
    add("iapt_ids001_mpi.invalid_nhs_number.csv", "iapt_ids001_mpi",
        "row 2 fails Modulus 11; row 3 not a number; row 5 reuses row 4's LocalPatientId",
        "line 3 nhs_number_modulus11 (reported); line 4 nhs_number_format (value blanked); lines 5, 6 "
        "record_id_unique (quarantined)", mpi_nhs)

    def mpi_future():
        df = c("iapt_ids001_mpi")
        set_(df, 2, "PersonBirthDate", "2099-01-01")
        set_(df, 4, "PersonBirthDate", "31/02/1980")
        return utf8(df)
    add("iapt_ids001_mpi.future_birth_date.csv", "iapt_ids001_mpi",
        "row 2 born after today (no reporting period set); row 4 no such date",
        "line 3 date_not_future, line 5 date_parses on PersonBirthDate (values blanked)", mpi_future)

    # -- iapt_ids101_referral ----------------------------------------------------------------
    def ref_birth():
        df = c("iapt_ids101_referral")
        dob = mpi.set_index("LocalPatientId").loc[df.loc[1, "LocalPatientId"], "PersonBirthDate"]
        set_(df, 2, "ReferralRequestReceivedDate", _iso(dob, -365))
        return utf8(df)
    add("iapt_ids101_referral.before_birth.csv", "iapt_ids101_referral",
        "row 2 referred a year before the person's birth (iapt_ids001_mpi.clean.csv)",
        "line 3 date_after_birth on ReferralRequestReceivedDate (quarantined)", ref_birth)

    def ref_order():
        df = c("iapt_ids101_referral")
        set_(df, 3, "ServDischDate", _iso(df.loc[2, "ReferralRequestReceivedDate"], -5))
        set_(df, 3, "ENDCODE", "50")
        return utf8(df)
    add("iapt_ids101_referral.discharge_before_referral.csv", "iapt_ids101_referral",
        "row 3 discharged five days before the referral was received",
        "line 4 date_order on ServDischDate (quarantined)", ref_order)

    def ref_future():
        df = c("iapt_ids101_referral")
        set_(df, 4, "ReferralRequestReceivedDate", "2024-05-01")
        set_(df, 4, "ServDischDate", "")
        set_(df, 4, "ENDCODE", "")
        return utf8(df)
    add("iapt_ids101_referral.future_reporting_period.csv", "iapt_ids101_referral",
        "row 4 received after the reporting period",
        "line 5 date_not_future on ReferralRequestReceivedDate (quarantined)", ref_future)

    add("iapt_ids101_referral.missing_column.csv", "iapt_ids101_referral",
        "IAPT v2.0 column name SourceOfReferralMH (renamed by config) and no ENDCODE column",
        "ExtractUnusable: rule columns_present (ENDCODE)",
        lambda: utf8(c("iapt_ids101_referral").rename(columns={"SourceOfReferralIAPT": "SourceOfReferralMH"})
                     .drop(columns="ENDCODE")))

    # -- iapt_ids201_care_contact ------------------------------------------------------------
    add("iapt_ids201_care_contact.truncated_quoted.csv", "iapt_ids201_care_contact",
        "all fields quoted; file cut inside the last row's CareContDate",
        "ExtractUnusable: rule file_complete at line 6",
        lambda: cut(csv_text(c("iapt_ids201_care_contact"), quote_all=True),
                    c("iapt_ids201_care_contact").iloc[-1]["CareContDate"][4:] + '"'))

    def cc_formats():
        df = c("iapt_ids201_care_contact")
        set_(df, 2, "CareContDate", "15/06/2021")
        set_(df, 4, "CareContDate", "06/07/2021")
        return utf8(df)
    add("iapt_ids201_care_contact.mixed_date_formats.csv", "iapt_ids201_care_contact",
        "ISO dates with DD/MM/YYYY in rows 2 and 4 (row 4 ambiguous)",
        "lines 3, 5 date_format_consistent (reported); line 5 date_unambiguous on CareContDate "
        "(quarantined)", cc_formats)

    def cc_dups():
        df = c("iapt_ids201_care_contact")
        return utf8(pd.concat([df, df.iloc[[0]]], ignore_index=True))
    add("iapt_ids201_care_contact.duplicates.csv", "iapt_ids201_care_contact",
        "row 6 an exact copy of row 1", "line 7 exact_duplicate_row (quarantined; row 1 kept)", cc_dups)

    def cc_short():
        text = csv_text(c("iapt_ids201_care_contact")).split("\n")
        fields = text[3].split(",")
        text[3] = ",".join(fields[:3] + fields[4:])  # AttendOrDNACode dropped
        return "\n".join(text).encode("utf-8")
    add("iapt_ids201_care_contact.short_row.csv", "iapt_ids201_care_contact",
        "row 3 (line 4) has one field fewer than the header",
        "ExtractUnusable: rule csv_shape at line 4", cc_short)

    # -- iapt_ids202_care_activity -----------------------------------------------------------
    add("iapt_ids202_care_activity.header_only.csv", "iapt_ids202_care_activity", "header only",
        "accepted: an empty extract (0 rows), logged", lambda: utf8(c("iapt_ids202_care_activity").head(0)))
    add("iapt_ids202_care_activity.wrong_delimiter.csv", "iapt_ids202_care_activity", "tab-delimited",
        "ExtractUnusable: rule delimiter (line 1)",
        lambda: utf8(c("iapt_ids202_care_activity"), delimiter="\t"))

    def act_dups():
        df = c("iapt_ids202_care_activity")
        clash = df.iloc[[1]].copy()
        clash["CodeProcAndProcStatus"] = "443730003"
        return utf8(pd.concat([df, clash, df.iloc[[4]]], ignore_index=True))
    add("iapt_ids202_care_activity.duplicates.csv", "iapt_ids202_care_activity",
        "row 6 reuses row 2's CareActId with another code; row 7 an exact copy of row 5",
        "lines 3, 7 record_id_unique; line 8 exact_duplicate_row (quarantined)", act_dups)

    # -- iapt_ids602_ltc ---------------------------------------------------------------------
    add("iapt_ids602_ltc.missing_column.csv", "iapt_ids602_ltc", "no LongTermCondition column",
        "ExtractUnusable: rule columns_present (LongTermCondition)",
        lambda: utf8(c("iapt_ids602_ltc").drop(columns="LongTermCondition")))

    def ltc_extra():
        df = c("iapt_ids602_ltc")
        df["Comment"] = "checked"
        return utf8(df)
    add("iapt_ids602_ltc.extra_columns.csv", "iapt_ids602_ltc", "a column not in the contract (Comment)",
        "all rows accepted; extra_columns reported", ltc_extra)

    def ltc_latin():
        df = c("iapt_ids602_ltc")
        set_(df, 2, "LongTermCondition", "LOCAL–MUS")   # en dash typed in a spreadsheet
        return cp1252_line(csv_text(df), 3)
    add("iapt_ids602_ltc.non_utf8.csv", "iapt_ids602_ltc", "row 2 (line 3) written in cp1252 (an en dash)",
        "all rows accepted; encoding_issue_lines: line 3", ltc_latin)

    def ltc_trailing():
        lines = csv_text(c("iapt_ids602_ltc")).split("\n")
        return ("\n".join([lines[0]] + [ln + "," if ln else ln for ln in lines[1:]])).encode("utf-8")
    add("iapt_ids602_ltc.trailing_delimiter.csv", "iapt_ids602_ltc",
        "every data row ends with an extra delimiter (one field more than the header)",
        "ExtractUnusable: rule csv_shape at line 2 (before: columns silently shifted)", ltc_trailing)

    # -- iapt_ids606_coded_scores ------------------------------------------------------------
    def scores_neg():
        df = c("iapt_ids606_coded_scores")
        set_(df, 2, "PersScore", "-3")
        set_(df, 4, "PersScore", "n/a")
        return utf8(df)
    add("iapt_ids606_coded_scores.negative_score.csv", "iapt_ids606_coded_scores",
        "row 2 a negative score; row 4 not a number",
        "line 3 numeric_min, line 5 numeric on PersScore (quarantined)", scores_neg)

    def scores_future():
        df = c("iapt_ids606_coded_scores")
        set_(df, 3, "AssToolCompDate", "2025-01-10")
        return utf8(df)
    add("iapt_ids606_coded_scores.future_reporting_period.csv", "iapt_ids606_coded_scores",
        "row 3 completed after the reporting period",
        "line 4 date_not_future on AssToolCompDate (quarantined)", scores_future)
    add("iapt_ids606_coded_scores.wrong_delimiter.csv", "iapt_ids606_coded_scores", "pipe-delimited",
        "ExtractUnusable: rule delimiter (line 1)",
        lambda: utf8(c("iapt_ids606_coded_scores"), delimiter="|"))

    # -- ecds --------------------------------------------------------------------------------
    def ecds_nhs():
        df = c("ecds")
        set_(df, 2, "NHS_Number", bad_mod11(df.loc[1, "NHS_Number"]))
        set_(df, 3, "NHS_Number", "123 456 789X")
        return utf8(df)
    add("ecds.invalid_nhs_number.csv", "ecds", "row 2 fails Modulus 11; row 3 has a letter",
        "line 3 nhs_number_modulus11 (reported); line 4 nhs_number_format (value blanked)", ecds_nhs)

    def ecds_birth():
        df = c("ecds")
        set_(df, 3, "Arrival_Date", _iso(df.loc[2, "Date_Of_Birth"], -40))
        return utf8(df)
    add("ecds.before_birth.csv", "ecds", "row 3 arrived 40 days before the recorded date of birth",
        "line 4 date_after_birth on Arrival_Date (quarantined)", ecds_birth)

    def ecds_latin():
        df = c("ecds")
        set_(df, 2, "Patient_Surname", "O’BRIEN")
        return cp1252_line(csv_text(df), 3)
    add("ecds.non_utf8.csv", "ecds", "row 2 (line 3) written in cp1252 (a curly apostrophe)",
        "all rows accepted; encoding_issue_lines: line 3", ecds_latin)

    add("ecds.truncated.csv", "ecds", "file cut in the middle of the last row (no line end)",
        "ExtractUnusable: rule file_complete at line 6",
        lambda: cut(csv_text(c("ecds")), "," + c("ecds").iloc[-1]["Arrival_Date"]))

    def ecds_formats():
        df = c("ecds")
        set_(df, 2, "Arrival_Date", df.loc[1, "Arrival_Date"].replace("-", ""))
        set_(df, 4, "Arrival_Date", "03/02/2023")
        set_(df, 5, "Date_Of_Birth", "1980-02-30")
        return utf8(df)
    add("ecds.mixed_date_formats.csv", "ecds",
        "Arrival_Date: YYYYMMDD in row 2, ambiguous DD/MM/YYYY in row 4; row 5 an impossible birth date",
        "lines 3, 5 date_format_consistent (reported); line 5 date_unambiguous on Arrival_Date "
        "(quarantined); line 6 date_parses on Date_Of_Birth (value blanked)", ecds_formats)

    # -- apc ---------------------------------------------------------------------------------
    def apc_los():
        df = c("apc")
        set_(df, 2, "Discharge_Date", _iso(df.loc[1, "Admission_Date"], -3))
        set_(df, 2, "Der_Spell_LoS", "-3")
        set_(df, 4, "Discharge_Date", df.loc[3, "Admission_Date"])
        set_(df, 4, "Der_Spell_LoS", "-1")
        return utf8(df)
    add("apc.negative_los.csv", "apc",
        "row 2 discharged three days before admission (LoS -3); row 4 LoS -1",
        "line 3 date_order on Discharge_Date and numeric_min on Der_Spell_LoS; line 5 numeric_min on "
        "Der_Spell_LoS (quarantined)", apc_los)

    def apc_birth():
        df = c("apc")
        adm = _iso(df.loc[2, "Date_Of_Birth"], -100)
        set_(df, 3, "Admission_Date", adm)
        set_(df, 3, "Discharge_Date", _iso(adm, 1))
        set_(df, 3, "Der_Spell_LoS", "1")
        return utf8(df)
    add("apc.before_birth.csv", "apc", "row 3 admitted and discharged before the recorded date of birth",
        "line 4 date_after_birth on Admission_Date and Discharge_Date (quarantined)", apc_birth)

    def apc_future():
        df = c("apc")
        set_(df, 2, "Admission_Date", "2024-03-29")
        set_(df, 2, "Discharge_Date", "2024-04-03")
        set_(df, 2, "Der_Spell_LoS", "5")
        return utf8(df)
    add("apc.future_reporting_period.csv", "apc", "row 2 discharged after the reporting period",
        "line 3 date_not_future on Discharge_Date (quarantined)", apc_future)

    def apc_dups():
        df = c("apc")
        clash = df.iloc[[0]].copy()
        clash["Discharge_Date"] = _iso(clash.iloc[0]["Discharge_Date"], 2)
        clash["Der_Spell_LoS"] = str(int(clash.iloc[0]["Der_Spell_LoS"]) + 2)
        return utf8(pd.concat([df, df.iloc[[2]], clash], ignore_index=True))
    add("apc.duplicates.csv", "apc", "row 6 an exact copy of row 3; row 7 reuses row 1's APCS_Ident",
        "line 7 exact_duplicate_row; lines 2, 8 record_id_unique (quarantined)", apc_dups)

    # -- opa ---------------------------------------------------------------------------------
    def opa_nhs():
        df = c("opa")
        for r in (2, 4):
            set_(df, r, "NHS_Number", bad_mod11(df.loc[r - 1, "NHS_Number"]))
        return utf8(df)
    add("opa.invalid_nhs_number.csv", "opa", "rows 2 and 4 fail Modulus 11",
        "lines 3, 5 nhs_number_modulus11 (reported, kept)", opa_nhs)

    def opa_birth():
        df = c("opa")
        set_(df, 2, "APPTDATE", _iso(df.loc[1, "Date_Of_Birth"], -1))
        return utf8(df)
    add("opa.before_birth.csv", "opa", "row 2 the day before the recorded date of birth",
        "line 3 date_after_birth on APPTDATE (quarantined)", opa_birth)

    def opa_formats():
        df = c("opa")
        set_(df, 2, "APPTDATE", "28/02/2022")
        set_(df, 3, "APPTDATE", "01/03/2022")
        set_(df, 5, "Date_Of_Birth", df.loc[4, "Date_Of_Birth"].replace("-", ""))
        return utf8(df)
    add("opa.mixed_date_formats.csv", "opa",
        "APPTDATE: DD/MM/YYYY in rows 2 and 3 (row 3 ambiguous); Date_Of_Birth: YYYYMMDD in row 5",
        "lines 3, 4 date_format_consistent on APPTDATE, line 6 on Date_Of_Birth (reported); line 4 "
        "date_unambiguous on APPTDATE (quarantined)", opa_formats)

    add("opa.truncated_quoted.csv", "opa", "all fields quoted; file cut inside the last row's surname",
        "ExtractUnusable: rule file_complete at line 6",
        lambda: cut(csv_text(c("opa"), quote_all=True), c("opa").iloc[-1]["Patient_Surname"][2:] + '"'))
    add("opa.header_only.csv", "opa", "header only", "accepted: an empty extract (0 rows), logged",
        lambda: utf8(c("opa").head(0)))

    # -- lsoa_imd (reference) ----------------------------------------------------------------
    def imd_bad():
        df = c("lsoa_imd")
        set_(df, 2, "IMD_Decile", "11")
        set_(df, 4, "IMD_Decile", "five")
        return utf8(df)
    add("lsoa_imd.bad_decile.csv", "lsoa_imd", "row 2 decile 11; row 4 a word",
        "line 3 code_allowed; line 5 code_allowed and numeric on IMD_Decile (quarantined)", imd_bad)
    return out


README_HEAD = """# Bad landing extracts

One fault per file, a handful of rows each, for every source the identifiable zone reads
(config/sources.yml). `tests/identifiable_zone/test_bad_extract_corpus.py` feeds each file
through the real reader and validation (`identifiable_zone.sources.read_extract`,
`identifiable_zone.validate.validate_source`: real files, real Great Expectations) and checks
the outcome below, that every message names the file, the line and the rule (and field), that
nothing is lost, and that no identifier value appears in messages, logs or summaries.

Built by `make_corpus.py` (run once, deterministic: a synthetic population of {persons} people,
seed {seed}, then edits; NHS numbers are valid numbers of the 999 test range). Regenerate only
on purpose and re-check the test's line numbers.

Conventions:
- **line**: the line of the CSV file, header = line 1, so data row *n* is line *n* + 1. Every
  message, log line and quarantine/flag row names the file and the line, never a value.
- File names are `<table>.<case>.csv` (`.parquet` for a Parquet case); the test points the source's `file` at one of them.
- The tests pass `latest_date={period_end}` (the synthetic reporting period end; in a run it
  is `reporting_period_end` of the sources config, else the run date), except where a case
  says "after today", and `threshold=1.0` so that every row's fate is visible (with the
  default 0.20, 2 bad rows of 5 make the extract unusable, a message naming the worst rule
  and its first line).
- Outcomes: **quarantined** (row removed, in `identifiable/quarantine/`), **value blanked**
  (row kept, in `identifiable/dq_flags/`), **reported** (row and value kept, counted in the
  validation summary `reported_by_rule` and logged with the first line), or
  **ExtractUnusable** (file-level fault: the whole extract is refused with one message naming
  the file, the rule and, where there is one, the line; no row of it is accepted or
  quarantined). Nothing is lost: rows in = accepted + quarantined, or the extract is refused.
- `gp_patients.clean.csv` and `iapt_ids001_mpi.clean.csv` are the parent rows the
  cross-table cases read (dates of birth and death of GP patients; birth dates of IAPT MPI
  records), passed as `parents` as the pipeline does.

Where the after-death check happens: only `gp_patients` carries a date of death, so
`date_not_after_death` runs on its own RegistrationStartDate and, through the parent record,
on GP appointments. IAPT records, A&E attendances, admissions and outpatient appointments
carry no date of death and reach a GP patient only through linkage; activity after death is
not checked in the identifiable zone (in the analytical zone exposure stops at the censor
date, `int_persons_joined_to_imd.censor_date`, but activity dated after it is not yet tested
for).

| file | source | fault | expected |
|---|---|---|---|
"""


def main(folder: Path = HERE) -> list[Path]:
    b = base_rows()
    written = []
    all_cases = cases(b)
    for case in all_cases:
        p = folder / case.file
        p.write_bytes(case.build())
        written.append(p)
    rows = [f"| `{c.file}` | {c.source} | {c.fault} | {c.expected} |" for c in all_cases]
    (folder / "README.md").write_text(
        README_HEAD.format(persons=PERSONS, seed=SEED, period_end=PERIOD_END) + "\n".join(rows) + "\n"
        + LATER_README_ROWS, encoding="utf-8")
    return written + later_cases(folder)


# ---------------------------------------------------------------------------------------------
# cases added later (issue 15), built from the checked-in files above rather than from a new
# synthetic population (the generator has changed since; regenerating would move every line)

LONG = 200 * 1024  # over the csv module's default field limit (128 KiB)


def later_cases(folder: Path = HERE) -> list[Path]:
    """Write the later cases (``LATER_README_ROWS``) into ``folder``, from the files of
    ``main`` there."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def lines(name):
        return (folder / name).read_text(encoding="utf-8").split("\n")

    written = []

    def write(name, data: bytes):
        (folder / name).write_bytes(data)
        written.append(folder / name)

    long_value = '"' + "5" * (LONG // 2) + "\n" + "5" * (LONG // 2) + '"'  # one field, two lines
    cc = lines("iapt_ids201_care_contact.duplicates.csv")[:6]  # header and five distinct rows
    row = cc[1].split(",")
    row[3] = long_value  # AttendOrDNACode of row 1: not a code
    cc[1] = ",".join(row)
    cc[4] = cc[4][:-1] + "X"  # IAPTLTCServiceInd of row 4 (line 6, after the long field's two lines)
    write("iapt_ids201_care_contact.long_field.csv", "\n".join(cc + [""]).encode())
    short = lines("iapt_ids201_care_contact.short_row.csv")  # line 4 has a field fewer
    row = short[1].split(",")
    row[4] = long_value  # APPTYPE of row 1 (no rule): the row is fine, the file is not
    write("iapt_ids201_care_contact.long_field_short_row.csv",
          "\n".join(short[:1] + [",".join(row)] + short[2:]).encode())

    gp = pd.read_csv(folder / "gp_patients.clean.csv", dtype=str, keep_default_na=False)
    nhs = pd.array([int(v) for v in gp["NHSNumber"]], dtype="Int64")
    nhs[2] = pd.NA  # one missing NHS number: through pandas the column became floats
    table = pa.table({c: (pa.array(nhs, type=pa.int64()) if c == "NHSNumber" else
                          pa.array(pd.to_datetime(gp[c]).dt.date, type=pa.date32()) if c == "DateOfBirth" else
                          pa.array([v or None for v in gp[c]], type=pa.string())) for c in gp.columns})
    pq.write_table(table, folder / "gp_patients.nullable_int_nhs_number.parquet")
    written.append(folder / "gp_patients.nullable_int_nhs_number.parquet")

    ecds = lines("ecds.before_birth.csv")
    f = ecds[3].split(",")
    f[7] = "2021-07-25"  # row 3's arrival as in ecds.invalid_nhs_number.csv: not before birth here
    ecds[3] = ",".join(f)
    for i in (1, 2, 4, 5):  # a spreadsheet's scientific notation: 9.99E+09
        f = ecds[i].split(",")
        f[1] = f"{int(f[1]):.2E}"
        ecds[i] = ",".join(f)
    write("ecds.nhs_number_scientific.csv", "\n".join(ecds).encode())
    return written


LATER_README_ROWS = """\
| `iapt_ids201_care_contact.long_field.csv` | iapt_ids201_care_contact | row 1's AttendOrDNACode is a quoted field of 200 KiB holding a line break (over the csv module's field limit); row 4's IAPTLTCServiceInd not a code | line 2 code_allowed on AttendOrDNACode (quarantined); line 6 code_allowed on IAPTLTCServiceInd (value blanked): the rows after the long field keep their lines |
| `iapt_ids201_care_contact.long_field_short_row.csv` | iapt_ids201_care_contact | row 1's APPTYPE a quoted field of 200 KiB holding a line break; row 3 (line 5) one field short | ExtractUnusable: rule csv_shape at line 5 (a long field does not switch the check off) |
| `gp_patients.nullable_int_nhs_number.parquet` | gp_patients | Parquet: NHSNumber int64 with one null (row 3), DateOfBirth a date | all 5 rows accepted, NHS numbers as their digits (not floats), row 3's missing |
| `ecds.nhs_number_scientific.csv` | ecds | NHS numbers of rows 1, 2, 4, 5 in scientific notation (9.99E+09, as a spreadsheet writes them) | ExtractUnusable: rule identifier_kept on NHS_Number (4 of 5 rows blanked by nhs_number_format; first at line 2) |
"""


if __name__ == "__main__":
    if sys.argv[1:] == ["--later"]:  # only the later cases, from the checked-in files
        for p in later_cases():
            print(p.relative_to(HERE))
        sys.exit(0)
    for p in main():
        print(p.relative_to(HERE))
