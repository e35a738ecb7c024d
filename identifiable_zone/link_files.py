"""Link the records of two files with the pipeline's own linker (``ltceval link``).

The column mapping is a small language: ``FIELD=COL`` or ``FIELD=LEFTCOL:RIGHTCOL``, comma
separated, with FIELD one of ``identifiable_zone.link.FIELD_COLS``. Errors are one line naming
the option, the file and the column; never a data value.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.errors import LtcevalError
from core.spreadsheets import write_csv
from core.tables import check_table_path, require_columns
from identifiable_zone.link import FIELD_COLS, TARGET_PRECISION, LinkageError, link_files
from identifiable_zone.sources import ExtractUnusable, read_one_file


def column_pair(text: str, what: str) -> tuple[str, str]:
    """``COL`` (both sides) or ``LEFTCOL:RIGHTCOL``."""
    parts = text.split(":")
    if len(parts) > 2 or not all(p.strip() for p in parts):
        raise LtcevalError(f"{what}: expected COL or LEFTCOL:RIGHTCOL, got {text!r}")
    return (parts[0].strip(), parts[-1].strip())


def parse_field_map(text: str) -> dict[str, tuple[str, str]]:
    """``FIELD=COL,...`` -> field -> (left column, right column)."""
    fields = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        if "=" not in item:
            raise LtcevalError(f"--map: expected FIELD=COL, got {item!r}")
        fld, cols = item.split("=", 1)
        fld = fld.strip()
        if fld not in FIELD_COLS:
            raise LtcevalError(f"--map: unknown field {fld!r}; fields are {', '.join(FIELD_COLS)}")
        fields[fld] = column_pair(cols, f"--map {fld}")
    return fields


def parse_compare(text: str | None) -> dict[str, tuple[str, str]]:
    """``COL,LEFTCOL:RIGHTCOL,...`` -> name -> (left column, right column)."""
    compare = {}
    for item in filter(None, (x.strip() for x in (text or "").split(","))):
        lc, rc = column_pair(item, "--compare")
        compare[lc] = (lc, rc)
    return compare


def _read_side(side: str, path: Path, needed: list[str]):
    check_table_path(path, f"{side} file")
    try:
        df, _ = read_one_file(path)
    except ExtractUnusable as e:
        raise LtcevalError(f"{side} file {path}: {str(e).split(': ', 1)[-1]}") from None
    df.columns = [str(c).strip() for c in df.columns]
    require_columns(df, needed, f"{side} file {path}")
    return df.astype(object).where(df.notna() & (df.astype(str).apply(lambda c: c.str.strip()) != ""), None)


def link_two_files(left: Path, right: Path, id_column: str, field_map: str, compare: str | None,
                   threshold: float | None, out: Path, one_to_one: bool = False,
                   target_precision: float = TARGET_PRECISION) -> dict:
    """Link ``left``'s records to ``right``'s; write ``out/links.csv`` and ``out/summary.json``;
    return the summary. ``threshold`` None: chosen from the trained model (the lowest match
    probability with expected precision >= ``target_precision``); ``one_to_one``: each record
    links at most once on each side (both files deduplicated)."""
    fields, extra = parse_field_map(field_map), parse_compare(compare)
    left_id, right_id = column_pair(id_column, "--id-column")
    frames = [_read_side(side, Path(path), [idc] + [c[k] for c in fields.values()] + [c[k] for c in extra.values()])
              for k, (side, path, idc) in enumerate((("left", left, left_id), ("right", right, right_id)))]
    try:
        pairs, summary = link_files(frames[0], frames[1], left_id, right_id, fields, extra, threshold=threshold,
                                    one_to_one=one_to_one, target_precision=target_precision)
    except LinkageError as e:
        raise LtcevalError(f"{e} (left {left}, right {right})") from None
    except Exception as e:  # splink/duckdb failing on these data: one line, no traceback
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise LtcevalError(f"linkage failed ({type(e).__name__}: {first}); too few records or fields to "
                           "train a model?") from None
    out.mkdir(parents=True, exist_ok=True)
    write_csv(pairs, out / "links.csv")  # record ids come from the user's files: no formulas
    summary = {"left": str(left), "right": str(right), **summary}
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
