"""NHS England's Master Person Service fields on the SUS and ECDS extracts (opt-in:
``generate(..., mps=MpsOptions())``; identifiable_zone.mps reads them).

Per record, as MPS would give them (docs/linkage.md): ``Person_ID`` is the person's true NHS
number traced in PDS (``Person_ID_Type`` "01", ``MPS_Confidence`` 100, or 50-99 for a share
traced by the algorithmic step), a persistent MPS_ID of the person where MPS could not trace
them ("02", confidence 0: the same id on every record of that person, in every extract), or a
one-time-use id of that record alone ("03", confidence 0). A visitor on no GP list is traced
to their own NHS number, or given an MPS_ID when they have none.

Every draw is a hash of the seed and the person (or the record's place), not a random stream:
the option changes no other value of any extract, and the default output is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SOURCES = ("ecds", "apc", "opa")
COLUMNS = ("Person_ID", "Person_ID_Type", "MPS_Confidence")
TYPE_CODES = {"nhs_number": "01", "mps_id": "02", "one_time": "03"}


@dataclass(frozen=True)
class MpsOptions:
    share_mps_id: float = 0.03  # registered people MPS could not trace: a persistent MPS_ID instead
    share_one_time: float = 0.02  # records given a one-time-use id
    share_low_confidence: float = 0.05  # traced records matched by the algorithmic step (confidence 50-99)


def _unit(seed: int, salt: int, keys: np.ndarray) -> np.ndarray:
    """A uniform [0, 1) number per key, from a 64-bit mix of the seed, a salt and the key."""
    with np.errstate(over="ignore"):
        x = keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        x ^= np.uint64((seed * 0x2545F4914F6CDD1D + salt * 0x632BE59BD9B4E019) % 2**64)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


def _mps_ids(seed: int, person: np.ndarray) -> np.ndarray:
    """A person's MPS_ID: letters and digits, never ten digits (not mistaken for an NHS number)."""
    code = (_unit(seed, 7, person) * 1e12).astype(np.int64)
    return np.array([f"MPS{c:012d}" for c in code.tolist()], dtype=object)


def person_id_fields(seed: int, source: str, person: np.ndarray, traced_nhs: np.ndarray, row_keys: np.ndarray,
                     options: MpsOptions, registered: np.ndarray | None = None) -> pd.DataFrame:
    """The MPS fields of one extract's records. ``person``: true person of each record;
    ``traced_nhs``: the NHS number PDS holds for them (None: none to trace); ``row_keys``: a
    distinct whole number per record of the source (its one-time-use id); ``registered``: on
    the spine (default all)."""
    person = np.asarray(person, dtype=np.int64)
    registered = np.ones(len(person), dtype=bool) if registered is None else np.asarray(registered, dtype=bool)
    salt = SOURCES.index(source) + 1
    untraceable = (registered & (_unit(seed, 1, person) < options.share_mps_id)) | pd.isna(traced_nhs)
    one_time = _unit(seed, 10 + salt, np.asarray(row_keys, dtype=np.int64)) < options.share_one_time
    low = _unit(seed, 20 + salt, np.asarray(row_keys, dtype=np.int64))
    kind = np.where(one_time, "one_time", np.where(untraceable, "mps_id", "nhs_number"))
    pid = np.where(kind == "nhs_number", traced_nhs, _mps_ids(seed, person)).astype(object)
    pid[kind == "one_time"] = [f"OTU{source[:1].upper()}{k:011d}" for k in np.asarray(row_keys)[kind == "one_time"].tolist()]
    conf = np.where(kind != "nhs_number", 0,
                    np.where(low < options.share_low_confidence, 50 + (low * 1000).astype(int) % 50, 100))
    return pd.DataFrame({"Person_ID": pid, "Person_ID_Type": pd.Series(kind).map(TYPE_CODES).to_numpy(dtype=object),
                         "MPS_Confidence": conf.astype(str).astype(object)})


def add_to_tables(tables: dict[str, pd.DataFrame], truth: dict[str, pd.DataFrame], nhs_numbers: np.ndarray,
                  seed: int, options: MpsOptions) -> dict[str, pd.DataFrame]:
    """The registered people's SUS and ECDS records with the MPS fields appended (``truth``:
    the records' true persons, row for row; ``nhs_numbers``: every registered person's)."""
    out = dict(tables)
    for src in SOURCES:
        person = truth[src]["true_person_id"].to_numpy(dtype=np.int64)
        nhs = nhs_numbers[person].astype(str).astype(object)
        # a record's place: its person and its row among that person's records of the source
        rank = pd.Series(person).groupby(person).cumcount().to_numpy()
        fields = person_id_fields(seed, src, person, nhs, person * 4096 + rank, options)
        out[src] = pd.concat([tables[src].reset_index(drop=True), fields], axis=1)
    return out


def add_to_visitors(visitors: pd.DataFrame, seed: int, options: MpsOptions) -> pd.DataFrame:
    """A&E attenders on no GP list: traced to their own NHS number, else an MPS_ID."""
    person = visitors["person"].to_numpy(dtype=np.int64)
    rank = pd.Series(person).groupby(person).cumcount().to_numpy()
    fields = person_id_fields(seed, "ecds", person, visitors["NHS_Number"].to_numpy(dtype=object),
                              person * 4096 + rank, options, registered=np.zeros(len(person), dtype=bool))
    return pd.concat([visitors.reset_index(drop=True), fields], axis=1)


def sources_config(base: str, out: str, min_confidence: float = 90) -> str:
    """A copy of the sources config ``base`` (YAML) that reads the MPS fields of the SUS and ECDS
    extracts (written to ``out``; returned)."""
    import yaml

    with open(base, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    for src in SOURCES:
        spec = raw["sources"][src]
        spec["columns"] = [*spec["columns"], *COLUMNS]
        spec["mps"] = {"person_id": "Person_ID", "id_type": "Person_ID_Type",
                       "kinds": dict(TYPE_CODES), "confidence": "MPS_Confidence",
                       "min_confidence": min_confidence}
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump(raw, f, sort_keys=False)
    return out
