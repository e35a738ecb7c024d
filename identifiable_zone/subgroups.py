"""Subgroup columns of each linked record (age band, sex, ethnic category, IMD decile, GP
practice), so the IG report can show linkage rates by group: differential linkage biases an
evaluation."""
from __future__ import annotations

import pandas as pd

from identifiable_zone import normalise as nz

# columns of a source read when it has them (besides its identifier and demographic columns)
LSOA_COLUMNS = ("LSOA11", "Der_Postcode_LSOA_2011_Code")
ETHNICITY_COLUMN = "EthnicCategory"
# the record's own GP practice (ODS code): the spine's PracticeCode, SUS/ECDS's GP practice of the
# patient, HES-style GPPRAC. An unlinked record has no linked person whose practice could be used.
PRACTICE_COLUMNS = ("PracticeCode", "GP_Practice_Code", "GPPRAC")


def _age_band(dob_iso: pd.Series, at: pd.Timestamp) -> pd.Series:
    d = pd.to_datetime(dob_iso, format="%Y-%m-%d", errors="coerce")
    age = (at.year - d.dt.year).astype("Int64")
    before = (d.dt.month > at.month) | ((d.dt.month == at.month) & (d.dt.day > at.day))
    age = age - before.astype("Int64")
    bins = [-1, 17, 34, 49, 64, 79, 200]
    labels = ["0-17", "18-34", "35-49", "50-64", "65-79", "80+"]
    band = pd.cut(age, bins=bins, labels=labels).astype(object)
    return band.where(band.notna(), "unknown")


def _birth_iso(acc: pd.DataFrame, spec) -> pd.Series:
    """ISO date of birth (identifiable mode) or first of the birth month (pseudonymised)."""
    if "dob" in spec.identifiers:
        return nz.date_to_iso(nz.parse_date(acc[spec.identifiers["dob"]]))
    col = spec.demographics.get("birth_month")
    if col:
        return nz.date_to_iso(nz.parse_date(acc[col].map(lambda v: None if v is None else
                                                       (v + "-01" if len(v) == 7 else v))))
    return pd.Series(None, index=acc.index, dtype=object)


def subgroup_columns(acc: pd.DataFrame, spec, at: pd.Timestamp, imd: dict) -> pd.DataFrame:
    """Per record of one source: age band at ``at``, sex, ethnic category, IMD decile and GP
    practice ("not recorded" when blank, "not in source" when the source has no practice column)."""
    sex_col = spec.identifiers.get("sex") or spec.demographics.get("sex")
    sex = nz.normalise_sex(acc[sex_col]) if sex_col else pd.Series(None, index=acc.index, dtype=object)
    lsoa_col = next((c for c in LSOA_COLUMNS if c in acc.columns), None)
    dec = acc[lsoa_col].map(imd) if lsoa_col else pd.Series(None, index=acc.index, dtype=object)
    practice_col = next((c for c in PRACTICE_COLUMNS if c in acc.columns), None)
    return pd.DataFrame({
        "source": spec.table, "record_id": acc[spec.record_id].to_numpy(),
        "age_band": _age_band(_birth_iso(acc, spec), at).to_numpy(),
        "sex": sex.where(sex.isin(["M", "F"]), "U").fillna("U").to_numpy(),
        "ethnic_category": acc[ETHNICITY_COLUMN].fillna("not recorded").to_numpy(dtype=object)
        if ETHNICITY_COLUMN in acc.columns else "not in source",
        "imd_decile": dec.fillna("unknown").astype(str).to_numpy(dtype=object)
        if lsoa_col else "not in source",
        "practice": acc[practice_col].fillna("not recorded").to_numpy(dtype=object)
        if practice_col else "not in source"})


def subgroup_input_columns(spec, available) -> list[str]:
    """The columns of a source (of those ``available``) that its record id, its identifiers'
    standardisation (with its MPS Person_ID fields) and ``subgroup_columns`` read."""
    wanted = [spec.record_id, *spec.identifiers.values(), *spec.demographics.values(), *LSOA_COLUMNS,
              ETHNICITY_COLUMN, *PRACTICE_COLUMNS, *(sorted(spec.mps.columns) if spec.mps is not None else [])]
    present = set(available)
    return [c for c in dict.fromkeys(wanted) if c in present]
