"""Landing extracts as an ICB receives them when pseudonymisation happened upstream.

The direct identifiers (NHS number, names, date of birth, postcode) of every person source
are replaced by one common pseudonymised key, ``Der_Pseudo_NHS_Number`` = HMAC-SHA256 (hex,
upper case) of the cleaned NHS number under an *upstream* key that the pipeline never sees
(missing where the NHS number is missing; a mistyped number gives a key that matches nobody
or, when it is another person's number, that person). The GP list keeps a year-month of
birth (``YearMonthOfBirth``) as such extracts usually do. Local record ids and activity
columns are unchanged. Read with config/sources_pseudonymised_upstream.yml.
"""
from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pandas as pd

from core.settings import UPSTREAM_KEY_ENV, env_value

PSEUDO_COLUMN = "Der_Pseudo_NHS_Number"
# table -> (record id, NHS number column, identifier columns removed, date of birth column)
PERSON_SOURCES = {
    "gp_patients": ("PatientRecordId", "NHSNumber", ["NHSNumber", "Forename", "Surname", "DateOfBirth", "Postcode"],
                    "DateOfBirth"),
    "iapt_ids001_mpi": ("LocalPatientId", "NHSNumber",
                        ["NHSNumber", "PersonGivenName", "PersonFamilyName", "PersonBirthDate", "Postcode"], None),
    "ecds": ("EC_Ident", "NHS_Number", ["NHS_Number", "Patient_Forename", "Patient_Surname", "Date_Of_Birth",
                                        "Postcode"], None),
    "apc": ("APCS_Ident", "NHS_Number", ["NHS_Number", "Patient_Forename", "Patient_Surname", "Date_Of_Birth",
                                        "Postcode"], None),
    "opa": ("ATTENDKEY", "NHS_Number", ["NHS_Number", "Patient_Forename", "Patient_Surname", "Date_Of_Birth",
                                        "Postcode"], None),
}


def upstream_key(seed: int) -> bytes:
    """$LTCEVAL_UPSTREAM_PSEUDO_KEY, else a demo key derived from the seed (synthetic data
    only: it makes the output reproducible and is unrelated to the project key)."""
    env = env_value(UPSTREAM_KEY_ENV)
    if env:
        return env.encode("utf-8")
    return hashlib.sha256(f"ltceval-synthetic-upstream-key:{seed}".encode()).hexdigest().encode()


def pseudo_nhs(numbers: pd.Series, key: bytes) -> pd.Series:
    def one(v):
        if v is None or (isinstance(v, float) and v != v):
            return None
        clean = "".join(ch for ch in str(v) if ch.isalnum())
        return hmac.new(key, clean.encode(), hashlib.sha256).hexdigest().upper() if clean else None
    # one HMAC per distinct number (a person's rows repeat it), then mapped back to the rows
    codes, uniques = pd.factorize(numbers, use_na_sentinel=True)
    hashed = np.array([one(v) for v in uniques.tolist()] + [None], dtype=object)
    return pd.Series(hashed[codes], index=numbers.index, dtype=object)


def pseudonymise_landing_upstream(tables: dict[str, pd.DataFrame], key: bytes) -> dict[str, pd.DataFrame]:
    """The extracts with identifiers replaced by Der_Pseudo_NHS_Number (see module doc); the
    person sources among ``tables`` are replaced, the others kept."""
    out = dict(tables)
    for name, (rid, nhs, drop, dob) in PERSON_SOURCES.items():
        if name not in tables:
            continue
        df = tables[name].copy()
        pseudo = pseudo_nhs(df[nhs], key)
        extra = {}
        if dob:
            extra["YearMonthOfBirth"] = df[dob].astype(object).map(lambda v: None if v is None or v != v else str(v)[:7])
        df = df.drop(columns=drop)
        df.insert(1, PSEUDO_COLUMN, pseudo.to_numpy())
        for i, (c, v) in enumerate(extra.items()):
            df.insert(2 + i, c, v.to_numpy())
        out[name] = df
    return out
