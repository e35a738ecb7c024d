"""Great Expectations suites per raw source, quarantine of failing rows, whole-extract checks.

Each source gets a suite built in code from its config entry (identifiable_zone.sources):
schema present, record id present and unique (exact duplicate rows: the extra copies only),
dates parse and are not in the future (after the config's ``reporting_period_end``, else
after the run date), coded fields in their allowed sets, numbers numeric, NHS number format. The suite runs on a pandas frame through the GX
ephemeral context (pandas datasource). GX's ``unexpected_index_list`` (result format
COMPLETE) gives the failing rows; each rule's action decides their fate:

- ``quarantine``: the row is removed from the accepted rows and written to
  ``identifiable/quarantine/<table>.parquet`` (record id, rule, field, row number);
- ``nullify``: the value is blanked, the row kept, and the failure written to
  ``identifiable/dq_flags/<table>.parquet`` (an unparseable date of birth should not cost
  an A&E attendance; the record can still link on its other identifiers).

Both tables carry the file and line (CSV line, header = 1; Parquet row, 1-based) of each
failing row, so a site can fix its extract; never a value. Columns present in an extract but
not in the contract are not read further and are listed in the summary (``extra_columns``).

Invariant asserted per source: rows in = rows accepted + rows quarantined.
An extract is unusable (``ExtractUnusable``) when required columns are missing, the spine
is empty, or more than ``quarantine_threshold`` of its rows are quarantined.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from identifiable_zone import normalise as nz
from identifiable_zone.sources import ExtractRead, ExtractUnusable, SourceSpec, SPINE

log = logging.getLogger(__name__)

ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
NUMBER = r"^-?\d+(\.\d+)?$"
TEN_DIGITS = r"^\d{10}$"

_GX = {}


def _gx_context():
    """One ephemeral GX context per process, progress bars off."""
    if "ctx" not in _GX:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        _GX["ctx"] = ctx
        _GX["ds"] = ctx.data_sources.add_pandas("identifiable_landing")
        _GX["n"] = 0
    return _GX["ctx"], _GX["ds"]


@dataclass
class ValidationResult:
    table: str
    accepted: pd.DataFrame
    quarantine: pd.DataFrame  # record_id, rule, field, row
    flags: pd.DataFrame  # record_id, rule, field, row
    summary: dict


def _derived_frame(df: pd.DataFrame, spec: SourceSpec, latest: str) -> tuple[pd.DataFrame, dict]:
    """The frame GX validates: the raw columns plus normalised helper columns, and the
    normalised values to put back into accepted rows. ``latest``: the last allowed date (ISO)."""
    chk = df.copy()
    normalised = {}
    # exact duplicate rows: every copy after the first fails; the first is judged on its own
    dup_copy = df.duplicated(keep="first")
    chk["__exact_duplicate"] = pd.Series(["duplicate" if d else "ok" for d in dup_copy.tolist()],
                                         index=df.index, dtype=object)
    chk[f"{spec.record_id}__first_copy"] = df[spec.record_id].where(~dup_copy, None)
    for col in spec.dates:
        iso = nz.date_to_iso(nz.parse_date(df[col]))
        normalised[col] = iso
        # ISO where it parsed, a marked non-date where it did not (so the regex fails), None if blank
        chk[f"{col}__iso"] = pd.Series(
            [i if i is not None else (None if r is None else "unparsed") for i, r in
             zip(iso.tolist(), df[col].tolist())], index=df.index, dtype=object)
        chk[f"{col}__not_future"] = pd.Series(
            [None if i is None else ("future" if i > latest else "ok") for i in iso.tolist()],
            index=df.index, dtype=object)
    nhs_col = spec.identifiers.get("nhs_number")
    if nhs_col:
        cleaned = nz.clean_nhs_number(df[nhs_col])
        normalised[nhs_col] = cleaned
        chk[f"{nhs_col}__clean"] = cleaned
    return chk, normalised


def build_suite(spec: SourceSpec, name: str):
    """The GX suite for one source. Each expectation's meta carries rule, field and action."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=name)
    rid = spec.record_id
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(
        column=rid, meta={"rule": "record_id_present", "field": rid, "action": "quarantine"}))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
        column="__exact_duplicate", value_set=["ok"],
        meta={"rule": "exact_duplicate_row", "field": "(whole row)", "action": "quarantine"}))
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(
        column=f"{rid}__first_copy", meta={"rule": "record_id_unique", "field": rid, "action": "quarantine"}))
    for col, action in spec.dates.items():
        suite.add_expectation(gxe.ExpectColumnValuesToMatchRegex(
            column=f"{col}__iso", regex=ISO_DATE,
            meta={"rule": "date_parses", "field": col, "action": action}))
        suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
            column=f"{col}__not_future", value_set=["ok"],
            meta={"rule": "date_not_future", "field": col, "action": action}))
    for col, rule in spec.codes.items():
        suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
            column=col, value_set=list(rule.values),
            meta={"rule": "code_allowed", "field": col, "action": rule.action}))
    for col, action in spec.numeric.items():
        suite.add_expectation(gxe.ExpectColumnValuesToMatchRegex(
            column=col, regex=NUMBER, meta={"rule": "numeric", "field": col, "action": action}))
    nhs_col = spec.identifiers.get("nhs_number")
    if nhs_col:
        suite.add_expectation(gxe.ExpectColumnValuesToMatchRegex(
            column=f"{nhs_col}__clean", regex=TEN_DIGITS,
            meta={"rule": "nhs_number_format", "field": nhs_col, "action": spec.nhs_number_action}))
    if spec.table == SPINE:
        suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(
            min_value=1, meta={"rule": "table_not_empty", "field": "", "action": "unusable"}))
    return suite


def _schema_check(read: ExtractRead, spec: SourceSpec) -> None:
    """GX schema expectations; a missing required column makes the extract unusable."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    ctx, ds = _gx_context()
    _GX["n"] += 1
    asset = ds.add_dataframe_asset(f"{spec.table}_schema_{_GX['n']}")
    bd = asset.add_batch_definition_whole_dataframe("whole")
    suite = gx.ExpectationSuite(name=f"{spec.table}_schema_{_GX['n']}")
    for col in spec.columns:
        suite.add_expectation(gxe.ExpectColumnToExist(column=col))
    res = bd.get_batch(batch_parameters={"dataframe": read.frame.head(0)}).validate(suite)
    missing = [r.expectation_config.kwargs["column"] for r in res.results if not r.success]
    if missing:
        files = ", ".join(f["file"] for f in read.files)
        raise ExtractUnusable(
            f"{spec.table} ({files}): rule columns_present failed: {len(missing)} required "
            f"column(s) missing: {', '.join(missing)}")


def _index_list(result: dict) -> list:
    idx = result.get("unexpected_index_list") or []
    out = []
    for i in idx:
        out.append(i["index"] if isinstance(i, dict) and "index" in i else i)
    return out


def validate_source(read: ExtractRead, spec: SourceSpec, threshold: float = 0.20,
                    latest_date: str | None = None) -> ValidationResult:
    """Validate one extract; return accepted rows (dates ISO, NHS numbers cleaned), the
    quarantine and flag tables, and a summary of counts (no identifiers).

    ``latest_date`` (ISO): dates after it fail ``date_not_future`` (default: today, UTC)."""
    from datetime import datetime, timezone

    latest = latest_date or datetime.now(timezone.utc).date().isoformat()
    _schema_check(read, spec)
    df = read.frame[list(spec.columns)].reset_index(drop=True)
    n = len(df)
    chk, normalised = _derived_frame(df, spec, latest)

    ctx, ds = _gx_context()
    _GX["n"] += 1
    asset = ds.add_dataframe_asset(f"{spec.table}_{_GX['n']}")
    bd = asset.add_batch_definition_whole_dataframe("whole")
    suite = build_suite(spec, f"{spec.table}_rows_{_GX['n']}")
    res = bd.get_batch(batch_parameters={"dataframe": chk}).validate(
        suite, result_format={"result_format": "COMPLETE", "return_unexpected_index_query": False})

    files = ", ".join(f["file"] for f in read.files)
    q_parts, f_parts, rules = [], [], []
    for r in res.results:
        meta = r.expectation_config.meta or {}
        rule, fld, action = meta.get("rule"), meta.get("field"), meta.get("action")
        if r.exception_info and r.exception_info.get("raised_exception"):
            raise ExtractUnusable(f"{spec.table} ({files}): rule {rule} on {fld} could not be evaluated")
        if action == "unusable":
            if not r.success:
                raise ExtractUnusable(f"{spec.table} ({files}): rule {rule} failed: 0 rows")
            continue
        idx = _index_list(r.result)
        count = int(r.result.get("unexpected_count") or 0)
        if count != len(idx):
            raise AssertionError(f"{spec.table}: GX index list for {rule}/{fld} incomplete")
        rules.append({"rule": rule, "field": fld, "action": action, "rows": count})
        if not idx:
            continue
        part = pd.DataFrame({"row": idx, "rule": rule, "field": fld})
        (q_parts if action == "quarantine" else f_parts).append(part)

    row_file = pd.Series(read.row_file if read.row_file is not None else [files] * n, dtype=object)
    row_line = pd.Series(read.row_line if read.row_line is not None else range(2, n + 2), dtype="int64")

    def _finish(parts):
        if not parts:
            return pd.DataFrame({"record_id": pd.Series(dtype=object), "rule": pd.Series(dtype=object),
                                 "field": pd.Series(dtype=object), "row": pd.Series(dtype="int64"),
                                 "file": pd.Series(dtype=object), "line": pd.Series(dtype="int64")})
        t = pd.concat(parts, ignore_index=True)
        t["row"] = t["row"].astype("int64")
        t["record_id"] = df[spec.record_id].to_numpy()[t["row"].to_numpy()]
        t["file"] = row_file.to_numpy()[t["row"].to_numpy()]
        t["line"] = row_line.to_numpy()[t["row"].to_numpy()]
        return t[["record_id", "rule", "field", "row", "file", "line"]].sort_values(
            ["row", "rule", "field"], kind="stable").reset_index(drop=True)

    quarantine = _finish(q_parts)
    flags = _finish(f_parts)

    accepted = df.copy()
    for col, vals in normalised.items():
        accepted[col] = vals
    for fld, grp in flags.groupby("field"):
        accepted.loc[grp["row"].unique(), fld] = None
    bad_rows = pd.Index(quarantine["row"].unique())
    accepted = accepted.drop(index=bad_rows).reset_index(drop=True)

    n_q = len(bad_rows)
    assert n == len(accepted) + n_q, f"{spec.table}: rows in != accepted + quarantined"

    by_rule = (quarantine.groupby(["rule", "field"]).size().rename("rows").reset_index()
               .to_dict("records")) if len(quarantine) else []

    def _examples(t):  # where to look: file, line, rule, field (never a value)
        return [{"file": r.file, "line": int(r.line), "rule": r.rule, "field": r.field}
                for r in t.groupby(["rule", "field"]).head(3).itertuples()]

    summary = {
        "table": spec.table, "files": read.files, "encoding_issues": len(read.encoding_issues),
        "encoding_issue_lines": [{"file": e["file"], "line": e["line"]} for e in read.encoding_issues[:50]],
        "rows_in": n, "rows_accepted": len(accepted), "rows_quarantined": n_q,
        "quarantine_by_rule": [{k: (int(v) if k == "rows" else v) for k, v in d.items()} for d in by_rule],
        "flags_by_rule": [{"rule": x["rule"], "field": x["field"], "rows": x["rows"]}
                          for x in rules if x["action"] == "nullify" and x["rows"]],
        "quarantine_examples": _examples(quarantine), "flag_examples": _examples(flags),
        "extra_columns": list(read.extra_columns or []),
        "latest_date_allowed": latest,
    }
    for ex in summary["quarantine_examples"]:
        log.warning("%s: %s line %d: rule %s failed on %s: row quarantined", spec.table, ex["file"],
                    ex["line"], ex["rule"], ex["field"])
    if summary["extra_columns"]:
        log.warning("%s (%s): %d column(s) not in the contract, not read further: %s", spec.table, files,
                    len(summary["extra_columns"]), ", ".join(summary["extra_columns"]))
    if n and n_q / n > threshold:
        top = max(by_rule, key=lambda d: d["rows"])
        first = quarantine[(quarantine["rule"] == top["rule"]) & (quarantine["field"] == top["field"])].iloc[0]
        raise ExtractUnusable(
            f"{spec.table} ({files}): {n_q} of {n} rows ({n_q / n:.1%}) fail row-level rules, over "
            f"the {threshold:.0%} threshold; worst rule {top['rule']} on {top['field']}: "
            f"{int(top['rows'])} rows (first at {first['file']} line {int(first['line'])})")
    if read.encoding_issues:
        log.warning("%s: %d line(s) not UTF-8 decoded with fallback (first: %s line %d)", spec.table,
                    len(read.encoding_issues), read.encoding_issues[0]["file"],
                    read.encoding_issues[0]["line"])
    return ValidationResult(spec.table, accepted, quarantine, flags, summary)
