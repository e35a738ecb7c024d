"""A large file validated in segments gives what validating it whole gives (real GX, DuckDB).

Rows planted at the end of a file repeat rows near its start, so only the rules across
segments (exact duplicates, record ids, the spine's NHS numbers) can catch them.
"""
import csv
import io
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from core.settings import (VALIDATION_SEGMENT_MIB_ENV, VALIDATION_WORKERS_ENV, Paths, validation_segment_bytes,
                           validation_workers)
from identifiable_zone.pipeline import validate_all
from identifiable_zone.sources import csv_segments, load_sources_config

SEGMENT_MIB = "0.03"  # about 31 KiB: the GP files of 800 people fall into several segments
KEEP_LINES = 2001  # the header and 2,000 rows of each large file


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _line(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="").writerow(cells)
    return out.getvalue()


def _append_lines(path: Path, lines: list[str]) -> int:
    """Append data lines; return the line number of the first one (header = 1)."""
    text = path.read_text(encoding="utf-8")
    first = text.count("\n") + 1
    path.write_text(text + "".join(ln + "\n" for ln in lines), encoding="utf-8")
    return first


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    from synthetic.generate import generate
    from synthetic.params import SynthParams

    out = tmp_path_factory.mktemp("segments")
    generate(SynthParams(persons=800, seed=3), out)
    land = out / "landing"
    for big in ("gp_appointments.csv", "opa.csv", "ecds.csv"):
        # each segment costs its own GX run: the first rows (about 8 segments) show what the
        # whole file would, at a third of the test time
        lines = (land / big).read_text(encoding="utf-8").splitlines(keepends=True)
        (land / big).write_text("".join(lines[:KEEP_LINES]), encoding="utf-8")
    pat = _rows(land / "gp_patients.csv")
    header = pat[0]
    rid, nhs = header.index("PatientRecordId"), header.index("NHSNumber")
    same_id = list(pat[2])
    same_id[header.index("Postcode")] = "ZZ9 9ZZ"  # not an exact copy: a second record with line 3's id
    same_nhs = list(pat[3])
    same_nhs[rid] = same_nhs[rid] + "X"  # a new record id, line 4's (valid) NHS number
    assert same_nhs[nhs]
    planted_pat = _append_lines(land / "gp_patients.csv", [_line(pat[1]), _line(same_id), _line(same_nhs)])
    appt = _rows(land / "gp_appointments.csv")
    twice = list(appt[5])
    twice[appt[0].index("PracticeCode")] = "Y99999"  # same id, other content
    planted_appt = _append_lines(land / "gp_appointments.csv", [_line(appt[1]), _line(twice)])
    return land, planted_pat, planted_appt


def _validate(landing: Path, out: Path, monkeypatch, segment_mib: str | None) -> Path:
    if segment_mib is None:
        monkeypatch.delenv(VALIDATION_SEGMENT_MIB_ENV, raising=False)
    else:
        monkeypatch.setenv(VALIDATION_SEGMENT_MIB_ENV, segment_mib)
    (out / "landing").parent.mkdir(parents=True, exist_ok=True)
    (out / "landing").symlink_to(landing)
    validate_all(Paths(out), run_id="segments")
    return out / "identifiable"


def _table(zone: Path, sub: str, table: str) -> pd.DataFrame:
    t = pd.read_parquet(zone / sub / f"{table}.parquet")
    return t.astype(object).where(t.notna(), None)


@pytest.fixture(scope="module")
def zones(landing, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    try:
        whole = _validate(landing[0], tmp_path_factory.mktemp("whole"), mp, None)
        segmented = _validate(landing[0], tmp_path_factory.mktemp("segmented"), mp, SEGMENT_MIB)
    finally:
        mp.undo()
    return whole, segmented


def test_the_gp_files_are_read_in_several_segments(landing):
    cfg = load_sources_config()
    size = validation_segment_bytes({VALIDATION_SEGMENT_MIB_ENV: SEGMENT_MIB})
    for table in ("gp_patients", "gp_appointments"):
        segments = list(csv_segments(landing[0] / f"{table}.csv", cfg[table], size))
        assert len(segments) >= 3, table
        # line numbers run on across segments, as in the file
        lines = [ln for s in segments for ln in s.row_line]
        assert lines == list(range(2, len(lines) + 2))
    assert csv_segments(landing[0] / "gp_patients.csv", cfg["gp_patients"], validation_segment_bytes({})) is None


def test_segments_give_the_whole_file_result(zones):
    whole, segmented = zones
    cfg = load_sources_config()
    for table in cfg.sources:
        for sub in ("accepted", "quarantine", "dq_flags"):
            a, b = _table(whole, sub, table), _table(segmented, sub, table)
            assert list(a.columns) == list(b.columns), (sub, table)
            pd.testing.assert_frame_equal(a, b, obj=f"{sub}/{table}")
    sa = json.loads((whole / "validation_summary.json").read_text())["tables"]
    sb = json.loads((segmented / "validation_summary.json").read_text())["tables"]
    for table, s in sa.items():
        for k in s:
            if k.endswith(("_by_rule", "_examples")):  # same entries; order may follow the segments
                key = lambda x: json.dumps(x, sort_keys=True)  # noqa: E731
                assert sorted(s[k], key=key) == sorted(sb[table][k], key=key), (table, k)
            else:
                assert s[k] == sb[table][k], (table, k)


def test_rows_repeating_an_earlier_segment_are_caught(zones, landing):
    _, segmented = zones
    _, planted_pat, planted_appt = landing
    q = _table(segmented, "quarantine", "gp_patients")
    at = {(int(r.line), r.rule) for r in q.itertuples()}
    assert (planted_pat, "exact_duplicate_row") in at
    assert (3, "record_id_unique") in at and (planted_pat + 1, "record_id_unique") in at
    summary = json.loads((segmented / "validation_summary.json").read_text())["tables"]["gp_patients"]
    nhs = [x for x in summary["reported_examples"] if x["rule"] == "nhs_number_unique"]
    assert {x["line"] for x in nhs} >= {4} and any(x["rows"] >= 2 for x in summary["reported_by_rule"]
                                                    if x["rule"] == "nhs_number_unique")
    qa = _table(segmented, "quarantine", "gp_appointments")
    at = {(int(r.line), r.rule) for r in qa.itertuples()}
    assert (planted_appt, "exact_duplicate_row") in at
    assert (6, "record_id_unique") in at and (planted_appt + 1, "record_id_unique") in at


def test_a_file_with_a_quoted_line_break_is_read_whole(landing, tmp_path, monkeypatch):
    """Segments need one record a line; such a file is read whole, with the same rules."""
    src = landing[0]
    land = tmp_path / "landing_copy"
    # hard links: a symbolic link out of the landing folder is refused
    shutil.copytree(src, land, copy_function=os.link)
    (land / "gp_appointments.csv").unlink()
    lines = (src / "gp_appointments.csv").read_text(encoding="utf-8").split("\n")
    cells = next(csv.reader([lines[-4]]))  # the last original row, before the two planted ones
    cells[-1] = cells[-1] + "\nsecond line"
    lines[-4] = _line(cells)
    (land / "gp_appointments.csv").write_text("\n".join(lines), encoding="utf-8")
    zone = _validate(land, tmp_path / "run", monkeypatch, SEGMENT_MIB)
    s = json.loads((zone / "validation_summary.json").read_text())["tables"]["gp_appointments"]
    n = len(lines) - 2  # the header, and the empty string after the last line end
    assert s["rows_in"] == n == s["rows_accepted"] + s["rows_quarantined"]
    # the two-line value was read as one (NationalCategory: not a listed category, so blanked)
    flags = _table(zone, "dq_flags", "gp_appointments")
    assert (len(lines) - 4 + 1, "code_allowed", "NationalCategory") in {(int(r.line), r.rule, r.field)
                                                                       for r in flags.itertuples()}
    # the planted copy of the first row now starts a line later: the record above spans two
    q = _table(zone, "quarantine", "gp_appointments")
    assert (landing[2] + 1, "exact_duplicate_row") in {(int(r.line), r.rule) for r in q.itertuples()}


def test_the_segment_size_must_be_a_positive_number():
    with pytest.raises(ValueError, match=VALIDATION_SEGMENT_MIB_ENV):
        validation_segment_bytes({VALIDATION_SEGMENT_MIB_ENV: "lots"})
    with pytest.raises(ValueError, match="above 0"):
        validation_segment_bytes({VALIDATION_SEGMENT_MIB_ENV: "0"})
    assert validation_segment_bytes({VALIDATION_SEGMENT_MIB_ENV: "2"}) == 2 << 20


def test_each_segment_gives_a_progress_line(landing, tmp_path, monkeypatch, caplog):
    import logging
    import re

    from core import progress

    with caplog.at_level(logging.INFO, logger=progress.LOGGER):
        zone = _validate(landing[0], tmp_path, monkeypatch, SEGMENT_MIB)
    lines = [r.getMessage() for r in caplog.records if r.name == progress.LOGGER
             and r.getMessage().startswith("validate: gp_appointments (gp_appointments.csv) segment ")]
    found = [re.fullmatch(r"validate: gp_appointments \(gp_appointments\.csv\) segment (\d+) of about (\d+), "
                          r"([\d,]+) rows, \d+ of \d+ MiB", m) for m in lines]
    assert len(found) >= 3 and all(found)
    assert [int(m.group(1)) for m in found] == list(range(1, len(found) + 1))
    # "about": the file's size over the segment size; a segment runs on to its line's end, so
    # the count can be one fewer
    assert len(found) <= int(found[-1].group(2)) <= len(found) + 1
    rows = pd.read_parquet(zone / "accepted" / "gp_appointments.parquet", columns=[]).shape[0]
    quarantined = pd.read_parquet(zone / "quarantine" / "gp_appointments.parquet", columns=[]).shape[0]
    assert int(found[-1].group(3).replace(",", "")) == rows + quarantined


def test_segments_in_worker_processes_give_the_one_at_a_time_result(zones, landing, tmp_path):
    from identifiable_zone.cross_file_rules import table_files
    from identifiable_zone.file_validation import validate_file
    from identifiable_zone.pipeline import _accepted, _parent_columns
    from identifiable_zone.validate import parent_dates

    cfg = load_sources_config()
    spec = cfg["gp_appointments"]
    paths = Paths(zones[1].parent)
    parents = {r.table: _accepted(paths, r.table, _parent_columns(cfg)[r.table]) for r in spec.parent_date_refs}
    lookups = parent_dates(spec, parents)
    assert lookups  # the life rules read the GP patients' dates of birth and death
    size = validation_segment_bytes({VALIDATION_SEGMENT_MIB_ENV: SEGMENT_MIB})
    metas, outs = [], []
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}"
        metas.append(validate_file(landing[0], spec, "gp_appointments.csv", "2026-12-01", lookups, 0.2, out,
                                   segment_bytes=size, workers=workers))
        outs.append(out)
    assert metas[0] == metas[1]
    assert metas[0]["summary"]["rows_in"] > 1000
    for name in ("accepted", "quarantine", "dq_flags", "rowkeys"):
        a, b = (pd.concat([pd.read_parquet(f).assign(start=start) for f, start in table_files(o, name)],
                          ignore_index=True) for o in outs)
        pd.testing.assert_frame_equal(a, b, obj=name)
    assert len(pd.read_parquet(outs[0] / "quarantine.parquet")) > 0  # the planted repeats, at least


def _gp_appointment_lookups(zones):
    from identifiable_zone.pipeline import _accepted, _parent_columns
    from identifiable_zone.validate import parent_dates

    cfg = load_sources_config()
    spec = cfg["gp_appointments"]
    paths = Paths(zones[1].parent)
    parents = {r.table: _accepted(paths, r.table, _parent_columns(cfg)[r.table]) for r in spec.parent_date_refs}
    return spec, parent_dates(spec, parents)


def _file_tables(out: Path) -> dict[str, pd.DataFrame]:
    """A file's validation folder as its tables: accepted without the rows its quarantine lists
    (a segmented file's pieces still hold the copies found across segments) and row keys, both
    without row numbers; quarantine and flags."""
    from identifiable_zone.cross_file_rules import table_files

    quarantine = pd.read_parquet(out / "quarantine.parquet")
    accepted = pd.concat([pd.read_parquet(f).assign(__row=lambda t, s=start: t["__row"] + s)
                          for f, start in table_files(out, "accepted")], ignore_index=True)
    accepted = accepted[~accepted["__row"].isin(quarantine["row"])].drop(columns="__row").reset_index(drop=True)
    rowkeys = pd.concat([pd.read_parquet(f) for f, _ in table_files(out, "rowkeys")], ignore_index=True)
    return {"accepted": accepted, "rowkeys": rowkeys.drop(columns="row"), "quarantine": quarantine,
            "dq_flags": pd.read_parquet(out / "dq_flags.parquet")}


def test_a_file_whose_first_segment_is_in_another_date_format_gets_the_whole_files_main_format(
        zones, landing, tmp_path, caplog):
    """The segments are validated with their first segment's main date formats; when most of
    the file's rows are in another, every segment is validated again with the file's. Here the
    first segment's booking dates are day-first, the rest ISO: the day-first ones are then the
    'other' format, as reading the file whole finds."""
    from identifiable_zone.file_validation import SegmentPool, validate_file

    spec, lookups = _gp_appointment_lookups(zones)
    land = tmp_path / "landing"
    land.mkdir()
    rows = _rows(landing[0] / "gp_appointments.csv")
    booked = rows[0].index("BookedDate")
    for r in rows[1:400]:  # the first segment (about 31 KiB) and a little more
        y, m, d = r[booked].split("-")
        r[booked] = f"{d}/{m}/{y}"
    (land / "gp_appointments.csv").write_text("".join(_line(r) + "\n" for r in rows), encoding="utf-8")
    size = validation_segment_bytes({VALIDATION_SEGMENT_MIB_ENV: SEGMENT_MIB})
    caplog.set_level("INFO", logger="identifiable_zone.file_validation")
    with SegmentPool(2) as pool:
        segmented = validate_file(land, spec, "gp_appointments.csv", "2026-12-01", lookups, 0.2, tmp_path / "seg",
                                  segment_bytes=size, workers=2, pool=pool)
    assert "validating the segments again" in caplog.text
    whole = validate_file(land, spec, "gp_appointments.csv", "2026-12-01", lookups, 0.2, tmp_path / "whole",
                          segment_bytes=64 << 20)
    reported = {(x["rule"], x["field"]): x["rows"] for x in whole["summary"]["reported_by_rule"]}
    assert reported[("date_format_consistent", "BookedDate")] == 399  # the day-first dates: the other format
    a, b = _file_tables(tmp_path / "seg"), _file_tables(tmp_path / "whole")
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)
    assert segmented["summary"]["quarantine_by_rule"] == whole["summary"]["quarantine_by_rule"]
    assert segmented["summary"]["flags_by_rule"] == whole["summary"]["flags_by_rule"]
    assert segmented["summary"]["reported_by_rule"] == whole["summary"]["reported_by_rule"]


def test_one_pool_of_workers_serves_several_files(zones, landing, tmp_path):
    """The run's pool validates one file's segments, then another's, its workers stopped before
    each file's parts are combined (idle workers would hold their memory beside the combining
    DuckDB): the results are those of one worker."""
    from identifiable_zone.file_validation import SegmentPool, validate_file

    spec, lookups = _gp_appointment_lookups(zones)
    size = validation_segment_bytes({VALIDATION_SEGMENT_MIB_ENV: SEGMENT_MIB})
    land = tmp_path / "landing"
    land.mkdir()
    data = (landing[0] / "gp_appointments.csv").read_bytes()
    (land / "gp_appointments.csv").write_bytes(data)
    lines = data.split(b"\n")
    (land / "gp_appointments.2.csv").write_bytes(b"\n".join(lines[:1] + lines[len(lines) // 2:]))
    with SegmentPool(2) as pool:
        pooled = []
        for i, rel in enumerate(("gp_appointments.csv", "gp_appointments.2.csv")):
            pooled.append(validate_file(land, spec, rel, "2026-12-01", lookups, 0.2, tmp_path / f"pool{i}",
                                        segment_bytes=size, workers=2, pool=pool))
            assert pool._executor is None  # no worker left once the file is done
    alone = [validate_file(land, spec, rel, "2026-12-01", lookups, 0.2, tmp_path / f"alone{i}",
                           segment_bytes=size, workers=1)
             for i, rel in enumerate(("gp_appointments.csv", "gp_appointments.2.csv"))]
    assert pooled == alone
    for i in range(2):
        a, b = _file_tables(tmp_path / f"pool{i}"), _file_tables(tmp_path / f"alone{i}")
        for name in a:
            pd.testing.assert_frame_equal(a[name], b[name], obj=f"{name} of file {i}")


@pytest.mark.parametrize("segmented", [True, False])
def test_a_file_that_is_not_what_was_checksummed_before_validation_is_refused(zones, landing, tmp_path, segmented):
    """The pipeline takes a file's checksum before validating it (the cache key) and hands it
    over; a file that no longer matches it (changed in between, or while being read) is refused."""
    from identifiable_zone.sources import ExtractUnusable
    from identifiable_zone.file_validation import validate_file
    from identifiable_zone.pipeline import _accepted, _parent_columns
    from identifiable_zone.validate import parent_dates

    cfg = load_sources_config()
    spec = cfg["gp_appointments"]
    paths = Paths(zones[1].parent)
    parents = {r.table: _accepted(paths, r.table, _parent_columns(cfg)[r.table]) for r in spec.parent_date_refs}
    size = validation_segment_bytes({VALIDATION_SEGMENT_MIB_ENV: SEGMENT_MIB if segmented else "64"})
    with pytest.raises(ExtractUnusable, match=r"gp_appointments \(gp_appointments.csv\): the file changed while "
                                              r"it was read; run again"):
        validate_file(landing[0], spec, "gp_appointments.csv", "2026-12-01", parent_dates(spec, parents), 0.2,
                      tmp_path / "out", segment_bytes=size, workers=1, sha256="0" * 64)


def test_the_validation_workers_must_be_a_positive_whole_number():
    with pytest.raises(ValueError, match=VALIDATION_WORKERS_ENV):
        validation_workers({VALIDATION_WORKERS_ENV: "two"})
    with pytest.raises(ValueError, match="at least 1"):
        validation_workers({VALIDATION_WORKERS_ENV: "0"})
    assert validation_workers({VALIDATION_WORKERS_ENV: "3"}) == 3
    assert 1 <= validation_workers({}) <= 2


def test_a_line_that_is_not_utf8_in_a_later_segment_is_reported_as_reading_whole_reports_it(landing, tmp_path,
                                                                                               monkeypatch):
    """A segment is parsed from its bytes when they are UTF-8; one that is not is decoded line
    by line, and the line is reported where reading the file whole reports it."""
    src = landing[0]
    data = (src / "gp_appointments.csv").read_bytes().split(b"\n")
    at = len(data) * 2 // 3  # a line in a later segment
    cells = next(csv.reader([data[at].decode("utf-8")]))
    cells[-1] = "CAF\xc9"
    data[at] = _line(cells).encode("cp1252")
    summaries = []
    for segment_mib in (None, SEGMENT_MIB):
        land = tmp_path / f"landing_{segment_mib}"
        # hard links: a symbolic link out of the landing folder is refused
        shutil.copytree(src, land, copy_function=os.link)
        (land / "gp_appointments.csv").unlink()
        (land / "gp_appointments.csv").write_bytes(b"\n".join(data))
        zone = _validate(land, tmp_path / f"run_{segment_mib}", monkeypatch, segment_mib)
        summaries.append(json.loads((zone / "validation_summary.json").read_text())["tables"]["gp_appointments"])
        # decoded and judged on that line (not a listed NationalCategory: blanked, row kept)
        flags = _table(zone, "dq_flags", "gp_appointments")
        assert (at + 1, "code_allowed", "NationalCategory") in {(int(r.line), r.rule, r.field)
                                                                for r in flags.itertuples()}
    whole, segmented = summaries
    assert whole["encoding_issue_lines"] == segmented["encoding_issue_lines"] == [
        {"file": "gp_appointments.csv", "line": at + 1}]
    assert whole["encoding_issues"] == segmented["encoding_issues"] == 1
