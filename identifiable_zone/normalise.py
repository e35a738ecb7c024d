"""Vectorised normalisers for the person identifiers that real extracts carry.

Every function takes and returns a pandas Series aligned on the input index; a value that
cannot be normalised becomes missing (``None``/``NaT``), never an exception, so callers can
count and quarantine failures.
"""
from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd

MOD11_WEIGHTS = np.arange(10, 1, -1, dtype=np.int64)

_NHS_STRIP = re.compile(r"[\s\-]")
_TEN_DIGITS = r"^\d{10}$"


def _map(s: pd.Series, fn) -> pd.Series:
    """Apply fn to the non-missing values of s (as str); result is object dtype with None.
    fn runs once per distinct value (identifier columns repeat: the same person's name and
    postcode on many activity rows), then the results are taken back to every row."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    return pd.Series(take_distinct([fn(str(v)) for v in uniques.tolist()], codes), index=s.index, dtype=object)


def take_distinct(per_value, codes: np.ndarray) -> np.ndarray:
    """Per-row values from per-distinct-value ones: ``codes`` as pd.factorize gives them, -1
    (missing) -> None; object dtype."""
    ext = np.empty(len(per_value) + 1, dtype=object)  # the last slot is for missing (code -1)
    ext[:-1] = per_value
    ext[-1] = None
    return ext[codes]


def clean_nhs_number(s: pd.Series) -> pd.Series:
    """Strip spaces and dashes; empty -> None. Does not check validity (see nhs_number_is_valid)."""
    return _map(s, lambda v: _NHS_STRIP.sub("", v) or None)


def nhs_number_format_ok(cleaned: pd.Series) -> pd.Series:
    """True when a cleaned NHS number is exactly ten digits (missing values -> False)."""
    return cleaned.astype("string").str.fullmatch(_TEN_DIGITS).fillna(False).astype(bool)


def nhs_number_is_valid(s: pd.Series) -> pd.Series:
    """Modulus 11 validity of (cleaned or raw) NHS numbers, vectorised with numpy.

    Digits 1-9 are weighted 10 down to 2; check = 11 - (sum mod 11); 11 -> 0; 10 -> invalid;
    valid when the check equals digit 10. Anything that is not ten digits is invalid.
    """
    cleaned = clean_nhs_number(s)
    fmt = nhs_number_format_ok(cleaned).to_numpy()
    result = np.zeros(len(cleaned), dtype=bool)
    if fmt.any():
        joined = "".join(cleaned.to_numpy()[fmt])
        d = (np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(-1, 10).astype(np.int64)
             - ord("0"))
        check = 11 - (d[:, :9] @ MOD11_WEIGHTS) % 11
        check = np.where(check == 11, 0, check)
        result[fmt] = (check != 10) & (check == d[:, 9])
    return pd.Series(result, index=s.index)


def valid_nhs_or_none(s: pd.Series) -> pd.Series:
    """Cleaned NHS number where Modulus-11 valid, else None."""
    cleaned = clean_nhs_number(s)
    valid = nhs_number_is_valid(cleaned)
    return pd.Series(np.where(valid.to_numpy(), cleaned.to_numpy(dtype=object), None), index=s.index, dtype=object)


_NO_DECOMPOSITION = str.maketrans({"Æ": "AE", "æ": "ae", "Ø": "O", "ø": "o", "ß": "ss", "Œ": "OE",
                                   "œ": "oe", "Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Þ": "TH", "þ": "th"})


def _strip_accents(v: str) -> str:
    v = v.translate(_NO_DECOMPOSITION)
    return "".join(c for c in unicodedata.normalize("NFKD", v) if not unicodedata.combining(c))


_NON_LETTER = re.compile(r"[^A-Z ]+")
_SPACES = re.compile(r"\s+")


def normalise_name(s: pd.Series) -> pd.Series:
    """Upper case, accents stripped, punctuation removed (O'Brien -> OBRIEN, Smith-Jones ->
    SMITHJONES), inner whitespace collapsed; empty -> None."""

    def one(v):
        v = _strip_accents(v).upper()
        v = _NON_LETTER.sub("", v.replace("\t", " "))
        v = _SPACES.sub(" ", v).strip()
        return v or None

    return _map(s, one)


_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%Y%m%d")
_DATE_PATTERNS = (r"^\d{4}-\d{2}-\d{2}$", r"^\d{1,2}/\d{1,2}/\d{4}$", r"^\d{8}$")


DATE_FORMAT_LABELS = ("YYYY-MM-DD", "DD/MM/YYYY", "YYYYMMDD")  # same order as _DATE_FORMATS


def parse_date_and_format(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """``parse_date`` and ``date_format`` in one pass, once per distinct value (a column of
    millions of dates holds a few thousand)."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    if len(uniques) < len(s):
        out_u, fmt_u = _parse_distinct_dates(pd.Series(uniques, dtype=object))
        out_ext = np.append(out_u.to_numpy(dtype="datetime64[s]"), np.datetime64("NaT", "s"))
        fmt_u = fmt_u.to_numpy(dtype=object)
        return (pd.Series(out_ext[codes], index=s.index, dtype="datetime64[s]"),
                pd.Series(take_distinct(np.where(pd.isna(fmt_u), None, fmt_u), codes), index=s.index, dtype=object))
    return _parse_distinct_dates(s)


def _parse_distinct_dates(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    raw = _map(s, lambda v: re.split(r"[ T]", v.strip(), maxsplit=1)[0] or None).astype("string")
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[s]")
    fmt = pd.Series(None, index=s.index, dtype=object)
    for label, form, pat in zip(DATE_FORMAT_LABELS, _DATE_FORMATS, _DATE_PATTERNS):
        m = raw.str.fullmatch(pat).fillna(False).astype(bool) & out.isna()
        if m.any():
            out.loc[m] = pd.to_datetime(raw[m], format=form, errors="coerce").astype("datetime64[s]")
            fmt.loc[m & out.notna()] = label
    return out, fmt


def parse_date(s: pd.Series) -> pd.Series:
    """Parse dates given as YYYY-MM-DD, DD/MM/YYYY or YYYYMMDD (a time part after the
    date, e.g. '2020-01-02 00:00:00' or '2020-01-02T00:00', is ignored) to datetime64;
    anything else, or an impossible date, -> NaT."""
    return parse_date_and_format(s)[0]


def date_format(s: pd.Series) -> pd.Series:
    """The format each value of a date column was written in (one of DATE_FORMAT_LABELS), for
    the values ``parse_date`` reads; None where blank or unparseable. A column that mixes
    formats is checked by the identifiable zone's ``date_format_consistent`` and
    ``date_unambiguous`` rules."""
    return parse_date_and_format(s)[1]


def date_to_iso(d: pd.Series) -> pd.Series:
    """datetime64 Series -> ISO strings (None where NaT)."""
    txt = d.to_numpy(dtype="datetime64[D]").astype(str).astype(object)  # numpy's own ISO text, vectorised
    return pd.Series(np.where(d.notna().to_numpy(), txt, None), index=d.index, dtype=object)


_SEX_MAP = {"M": "M", "MALE": "M", "1": "M", "F": "F", "FEMALE": "F", "2": "F",
            "9": "U", "X": "U", "0": "U", "U": "U", "I": "U"}


def normalise_sex(s: pd.Series) -> pd.Series:
    """M/F/1/2 -> M/F; 9 (not stated), X (not known), 0, U, I -> U; anything else -> None."""
    return _map(s, lambda v: _SEX_MAP.get(v.strip().upper()))


_OUTWARD, _INWARD = r"[A-Z]{1,2}[0-9][A-Z0-9]?", r"[0-9][A-Z]{2}"
_POSTCODE = re.compile(rf"^({_OUTWARD})({_INWARD})$")
NORMALISED_UK_POSTCODE = re.compile(rf"^{_OUTWARD} {_INWARD}$")  # what normalise_postcode gives


def normalise_postcode(s: pd.Series) -> pd.Series:
    """Upper case, single space before the inward code ('hx1  2ab' -> 'HX1 2AB').
    A value that is not a UK postcode shape -> None."""

    def one(v):
        compact = re.sub(r"[^A-Z0-9]", "", v.upper())
        m = _POSTCODE.match(compact)
        return f"{m.group(1)} {m.group(2)}" if m else None

    return _map(s, one)


def postcode_outward(s: pd.Series) -> pd.Series:
    """Outward code (district) of normalised postcodes: 'HX1 2AB' -> 'HX1'."""
    return _map(s, lambda v: v.split(" ")[0])


def swap_day_month(d: pd.Series) -> pd.Series:
    """The date with day and month swapped where that is a real date, else NaT."""
    ok = d.notna() & (d.dt.day <= 12)
    out = pd.Series(pd.NaT, index=d.index, dtype="datetime64[s]")
    if ok.any():
        sub = d[ok]
        out.loc[ok] = pd.to_datetime(
            pd.DataFrame({"year": sub.dt.year, "month": sub.dt.day, "day": sub.dt.month}),
            errors="coerce").astype("datetime64[s]")
    return out
