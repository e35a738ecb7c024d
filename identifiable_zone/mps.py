"""NHS England's Master Person Service (MPS) Person_ID on SUS and ECDS records (docs/linkage.md).

The Person_ID is one of three kinds (``sources.MPS_KINDS``), named by the source's ``mps`` config:

- ``nhs_number``: the NHS number MPS traced in PDS. It is the record's NHS number for linkage
  (``traced_nhs_numbers``, read by ``link.standardise_identifiers``): the deterministic rule
  and splink use it as they use a recorded one. Below the source's ``min_confidence`` it is
  not used (the record keeps its own NHS number).
- ``mps_id``: a persistent id MPS gives a person it could not trace ("UPRI 1"). Records of
  sources carrying the same MPS_ID are the same person: a record left unlinked takes the spine
  person the other records of its MPS_ID linked to, when they linked to exactly one
  (``link_by_mps_id``, rule ``deterministic_mps_id``). MPS_IDs of which no record reached the
  spine stay unlinked: persons are the spine's.
- ``one_time``: an id made for one record ("UPRI 2"): never a key; the record links on its own
  identifiers as any other.

The IAPT data set's own person id (LocalPatientId) is comparable only within IAPT and is not
read here. Counting (``kind_counts``) gives the IG report how each source's records came in.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from identifiable_zone import normalise as nz

MPS_RULE = "deterministic_mps_id"
# how a record came in, as the IG report counts them
WAYS = ("traced_nhs_number", "mps_id", "one_time_use", "traced_below_confidence", "none")


def person_id_kinds(df: pd.DataFrame, mps) -> pd.Series:
    """Per row: 'nhs_number', 'mps_id', 'one_time' or None (type blank or not a known code)."""
    code_kind = {c: kind for kind, codes in mps.kinds.items() for c in codes}
    return df[mps.id_type].map(code_kind).astype(object).where(df[mps.id_type].notna(), None)


def _confident(df: pd.DataFrame, mps) -> pd.Series:
    """Rows whose match confidence reaches the source's minimum (all rows when it has none)."""
    if not mps.min_confidence:
        return pd.Series(True, index=df.index)
    conf = pd.to_numeric(df[mps.confidence], errors="coerce")
    return (conf >= mps.min_confidence).fillna(False)


def ways(df: pd.DataFrame, mps) -> pd.Series:
    """How each record came in (``WAYS``): a blank Person_ID is 'none' whatever its type says."""
    kind = person_id_kinds(df, mps)
    has_id = df[mps.person_id].notna()
    out = pd.Series("none", index=df.index, dtype=object)
    traced = has_id & (kind == "nhs_number")
    out[traced & _confident(df, mps)] = "traced_nhs_number"
    out[traced & ~_confident(df, mps)] = "traced_below_confidence"
    out[has_id & (kind == "mps_id")] = "mps_id"
    out[has_id & (kind == "one_time")] = "one_time_use"
    return out


def traced_nhs_numbers(df: pd.DataFrame, mps) -> pd.Series:
    """The traced NHS number of each row where it is one (valid, at the minimum confidence), else None."""
    nhs = nz.valid_nhs_or_none(df[mps.person_id])
    return nhs.where(ways(df, mps) == "traced_nhs_number", None)


def stable_mps_ids(df: pd.DataFrame, mps) -> pd.Series:
    """The MPS_ID of each row whose Person_ID is one, else None."""
    return df[mps.person_id].where(ways(df, mps) == "mps_id", None)


def input_columns(spec) -> list[str]:
    """The columns of a source the linkage reads for its MPS fields."""
    return sorted(spec.mps.columns) if spec.mps is not None else []


def kind_counts(accepted_dir: Path, cfg) -> dict[str, dict[str, int]]:
    """Per source with MPS fields: its accepted records by how they came in (``WAYS``)."""
    out = {}
    for table in cfg.identifier_sources:
        spec = cfg[table]
        if spec.mps is None:
            continue
        df = pq.read_table(accepted_dir / f"{table}.parquet", columns=input_columns(spec)).to_pandas()
        df = df.astype(object).where(df.notna(), None)
        n = ways(df, spec.mps).value_counts()
        out[table] = {w: int(n.get(w, 0)) for w in WAYS}
    return out


def link_by_mps_id(accepted_dir: Path, cfg, record_person: Path, spill_dir: Path) -> dict[str, int] | None:
    """Give every unlinked record whose MPS_ID's linked records (any source, any rule) share one
    spine person that person (rule ``MPS_RULE``, probability 1); rewrite ``record_person`` in
    place, same rows, order and columns. Returns records so linked per source (None when no
    source has MPS fields). Plain SQL (joins, GROUP BY, CASE) as the rest of the linkage."""
    from identifiable_zone.blocking import connection, sql_path

    frames = []
    for table in cfg.identifier_sources:
        spec = cfg[table]
        if spec.mps is None:
            continue
        df = pq.read_table(accepted_dir / f"{table}.parquet",
                           columns=[spec.record_id, *input_columns(spec)]).to_pandas()
        df = df.astype(object).where(df.notna(), None)
        ids = stable_mps_ids(df, spec.mps)
        keep = ids.notna()
        frames.append(pd.DataFrame({"source": table, "record_id": df.loc[keep, spec.record_id].astype(str),
                                    "mps_id": ids[keep].astype(str)}))
    if not frames:
        return None
    mps_ids = pd.concat(frames, ignore_index=True)
    linked = {t: 0 for t in cfg.identifier_sources if cfg[t].mps is not None}
    if mps_ids.empty:
        return linked
    names = pq.ParquetFile(record_person).schema_arrow.names
    tmp = record_person.with_name(f".{record_person.name}.mps.tmp")
    with connection(spill_dir) as con:
        con.register("mps_ids_frame", pa.Table.from_pandas(mps_ids, preserve_index=False))
        rp = f"read_parquet({sql_path(record_person)}, file_row_number = true)"
        # one spine person per MPS_ID, from its records that linked; none where they disagree
        con.execute(f"""
            CREATE TEMP TABLE mps_person AS
            SELECT m.mps_id, min(r.person_key) AS person_key
            FROM mps_ids_frame m JOIN {rp} r ON r.source = m.source AND r.record_id = m.record_id
            WHERE r.person_key IS NOT NULL
            GROUP BY m.mps_id HAVING count(DISTINCT r.person_key) = 1""")
        takes = "(r.person_key IS NULL AND p.person_key IS NOT NULL)"
        replaced = {"person_key": "coalesce(r.person_key, p.person_key)",
                    "rule": f"CASE WHEN {takes} THEN '{MPS_RULE}' ELSE r.rule END",
                    "match_probability": f"CASE WHEN {takes} THEN 1.0 ELSE r.match_probability END",
                    "match_weight": f"CASE WHEN {takes} THEN NULL ELSE r.match_weight END"}
        select = ", ".join(f'{replaced[c]} AS "{c}"' if c in replaced else f'r."{c}"' for c in names)
        to_link = con.execute(f"""
            SELECT count(*) FROM {rp} r JOIN mps_ids_frame m ON m.source = r.source AND m.record_id = r.record_id
            JOIN mps_person p ON p.mps_id = m.mps_id WHERE r.person_key IS NULL""").fetchall()[0][0]
        if not to_link:
            return linked
        schema = pq.ParquetFile(record_person).schema_arrow
        reader = con.sql(f"""
            SELECT {select}
            FROM {rp} r
            LEFT JOIN mps_ids_frame m ON m.source = r.source AND m.record_id = r.record_id
            LEFT JOIN mps_person p ON p.mps_id = m.mps_id
            ORDER BY r.file_row_number""").to_arrow_reader(256_000)
        with pq.ParquetWriter(tmp, schema) as writer:  # streamed: record_person has every record
            for batch in reader:
                writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
        for src, n in con.execute(f"SELECT source, count(*) FROM read_parquet({sql_path(tmp)}) "
                                  f"WHERE rule = '{MPS_RULE}' GROUP BY ALL").fetchall():
            linked[src] = int(n)
    if pq.ParquetFile(tmp).metadata.num_rows != pq.ParquetFile(record_person).metadata.num_rows:
        tmp.unlink()
        raise RuntimeError("link: the MPS_ID step changed the number of record-person rows")
    tmp.replace(record_person)
    return linked
