"""Linkage of the accepted extracts with bounded memory: the records never sit in pandas whole.

1. Each identifier source's accepted Parquet is read in batches; each batch is standardised
   (``link.standardise_identifiers``) and given its subgroup columns, and written to a staging
   Parquet in the identifiable zone (``<work>/<source>.parquet``, accepted row order).
2. DuckDB reduces each source to its distinct identifier tuples, numbered in order of first
   appearance (as ``link._distinct_tuples`` numbers them), so only tuples and the spine are
   held in memory for the deterministic rule and splink (``link._link_tuples``).
3. DuckDB joins every record back to its tuple's link and streams ``record_person.parquet``:
   the spine first, then each source in configuration order, each in accepted row order;
   the same rows and values ``link.link_sources`` gives on whole frames.

Written in plain SQL (GROUP BY, window-free joins on IS NOT DISTINCT FROM, ORDER BY) so that
Spark SQL can run the same statements later.
"""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core import progress
from core.parallel import ordered_map
from core.settings import LINKAGE_WORKERS_ENV, linkage_workers
from identifiable_zone import link as lk
from identifiable_zone.blocking import connection, sql_path
from identifiable_zone.cross_file_rules import text_array, text_frame
from identifiable_zone.sources import SPINE
from identifiable_zone.subgroups import subgroup_columns, subgroup_input_columns

BATCH_ROWS = 500_000  # rows standardised at a time (whole row groups of the accepted Parquet)
WORKERS_FROM_ROWS = 1_000_000  # records from which staging is shared among worker processes
SUBGROUPS = ["age_band", "sex", "ethnic_category", "imd_decile", "practice"]
RECORD_PERSON_SCHEMA = pa.schema(
    [(c, pa.float64() if c in ("match_probability", "match_weight") else pa.string()) for c in lk.RECORD_PERSON_COLUMNS]
    + [(c, pa.string()) for c in SUBGROUPS])
# staging: record id, the standardised identifiers, the subgroups (sg_ prefixed: "sex" is both)
STAGING_SCHEMA = pa.schema([("record_id", pa.string())] + [(c, pa.string()) for c in lk.ID_COLS]
                           + [("sg_" + c, pa.string()) for c in SUBGROUPS])


def _stage_piece(accepted: Path, row_groups: list[int], columns: list[str], spec, at: pd.Timestamp,
                 imd: dict) -> pa.Table:
    """Standardised identifiers and subgroups of some row groups of one source's accepted
    Parquet (only the columns they are made from are read); row by row, so any split of the
    rows gives the same staging rows."""
    acc = text_frame(pq.ParquetFile(accepted).read_row_groups(row_groups, columns=columns).to_pandas())
    ids = lk.standardise_identifiers(acc, spec)
    sg = subgroup_columns(acc, spec, at, imd)
    arrays = [text_array(ids["record_id"])] + [text_array(ids[c]) for c in lk.ID_COLS] + \
             [text_array(sg[c]) if isinstance(sg[c], pd.Series) else text_array(np.full(len(acc), sg[c], dtype=object))
              for c in SUBGROUPS]
    return pa.Table.from_arrays(arrays, schema=STAGING_SCHEMA)


def stage_sources(accepted_dir: Path, cfg, sources: list[str], at: pd.Timestamp, imd: dict,
                  staged: dict[str, Path], workers: int | None = None) -> None:
    """Each source's standardised identifiers and subgroups into ``staged[source]``, in
    accepted row order, pieces of about ``BATCH_ROWS`` rows made by ``workers`` processes
    (default ``core.settings.linkage_workers()`` when there are ``WORKERS_FROM_ROWS`` records
    or more, else 1: a worker takes seconds to start)."""
    jobs, rows = [], {}
    for table in sources:
        path, spec = accepted_dir / f"{table}.parquet", cfg[table]
        parquet = pq.ParquetFile(path)
        meta = parquet.metadata
        columns = subgroup_input_columns(spec, parquet.schema_arrow.names)
        rows[table] = meta.num_rows
        piece, piece_rows = [], 0
        for g in range(meta.num_row_groups):
            piece.append(g)
            piece_rows += meta.row_group(g).num_rows
            if piece_rows >= BATCH_ROWS or g == meta.num_row_groups - 1:
                jobs.append((table, (path, piece, columns, spec, at, imd)))
                piece, piece_rows = [], 0
    if workers is None:
        workers = linkage_workers() if sum(rows.values()) >= WORKERS_FROM_ROWS else 1
    pieces = ordered_map(_stage_piece, [args for _, args in jobs], workers, what="a linkage staging worker",
                         workers_env=LINKAGE_WORKERS_ENV)
    n_pieces = Counter(table for table, _ in jobs)
    total, done = sum(rows.values()), 0
    try:
        for i, table in enumerate(sources, 1):  # the pieces come in job order: source by source
            with pq.ParquetWriter(staged[table], STAGING_SCHEMA) as writer:
                for _ in range(n_pieces[table]):
                    writer.write_table(next(pieces))
            done += rows[table]
            progress.report("link", "%s read and standardised, %d/%d sources, %s of %s records", table, i,
                            len(sources), f"{done:,}", f"{total:,}")
    finally:
        pieces.close()


def link_accepted(accepted_dir: Path, cfg, at: pd.Timestamp, imd: dict, out_file: Path, work_dir: Path,
                  threshold: float, seed: int, model: dict | None, spill_dir: Path,
                  spark=None) -> tuple[dict, dict | None, dict]:
    """Link every identifier source of ``cfg`` to spine persons and write ``out_file``
    (record_person). Returns (summary as ``link_sources`` gives it, the model, records by rule
    per source: every rule but 'unlinked' gives a person). ``spark`` (a session, the spark
    engine): splink trains and scores on it; staging, tuples, the deterministic rule, the best
    matches and the writing of record_person stay in DuckDB."""
    sources = list(cfg.identifier_sources)
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    staged = {t: work_dir / f"{t}.parquet" for t in sources}
    try:
        stage_sources(accepted_dir, cfg, sources, at, imd, staged)
        return _link_staged(staged, out_file, threshold, seed, model, spill_dir, spark)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _link_staged(staged: dict[str, Path], out_file: Path, threshold: float, seed: int, model: dict | None,
                 spill_dir: Path, spark=None) -> tuple[dict, dict | None, dict]:
    cols = ", ".join(f'"{c}"' for c in lk.ID_COLS)
    same = " AND ".join(f'r."{c}" IS NOT DISTINCT FROM t."{c}"' for c in lk.ID_COLS)
    others = [s for s in staged if s != SPINE]
    with connection(spill_dir) as con:
        con.execute("SET preserve_insertion_order = true")
        spine_ids = text_frame(con.sql(f"SELECT record_id, {cols} FROM read_parquet({sql_path(staged[SPINE])})").df())
        persons = lk.spine_persons(spine_ids)
        # the distinct tuples stay in DuckDB (at 2 million people about 7 million of them: 5.9 GiB
        # as Python strings); only the sample EM trains on and what the deterministic rule leaves
        # come to pandas. tuple_row numbers them source by source in order of first appearance.
        con.execute(f"CREATE TEMP TABLE link_tuples (tuple_row BIGINT, tuple_id VARCHAR, source VARCHAR, "
                    + ", ".join(f'"{c}" VARCHAR' for c in lk.ID_COLS) + ")")
        n_tuples = 0
        for source in others:
            src = source.replace("'", "''")
            con.execute(f"""
                INSERT INTO link_tuples
                SELECT {n_tuples} + row_number() OVER (ORDER BY first_row) - 1,
                       '{src}|' || CAST(row_number() OVER (ORDER BY first_row) - 1 AS VARCHAR), '{src}', {cols}
                FROM (SELECT {cols}, min(file_row_number) AS first_row
                      FROM read_parquet({sql_path(staged[source])}, file_row_number = true) GROUP BY ALL)""")
            n_tuples = con.execute("SELECT count(*) FROM link_tuples").fetchall()[0][0]
        records = sum(pq.ParquetFile(staged[s]).metadata.num_rows for s in others)
        if not n_tuples:
            summary, counts = {"tuples": 0}, {}
            con.execute("CREATE TEMP TABLE tuple_links AS SELECT *, NULL::VARCHAR AS person_key, NULL::VARCHAR AS rule, "
                        "NULL::DOUBLE AS match_probability, NULL::DOUBLE AS match_weight, "
                        "NULL::VARCHAR AS candidate_person_key, NULL::VARCHAR AS candidate_record_id FROM link_tuples")
        else:
            con.register("spine_persons_frame", persons)
            con.register("spine_ids_frame", spine_ids[["record_id", "nhs", "dob"]])
            lk.deterministic_links_sql(con, "link_tuples", "spine_ids_frame", "spine_persons_frame", "det_links")
            con.unregister("spine_persons_frame")
            unmatched = text_frame(con.sql(f"""
                SELECT t.tuple_id, t.source, {", ".join(f't."{c}"' for c in lk.ID_COLS)} FROM link_tuples t
                ANTI JOIN det_links d USING (tuple_id) ORDER BY t.tuple_row""").df())
            table = lk.TupleTable(con, "link_tuples", int(n_tuples), ("tuple_id", "source", *lk.ID_COLS))
            prob_links, model, counts = lk.link_unmatched(unmatched, table, spine_ids, persons, threshold, seed,
                                                          model, lk.ID_COLS, spill_dir=spill_dir,
                                                          spark=spark)
            del unmatched
            summary = {"mode": "identifiable", "spine_records": int(len(persons)),
                       "spine_persons": int(persons["person_key"].nunique()),
                       "source_records": int(records), "distinct_tuples": int(n_tuples), **counts,
                       "threshold": threshold}
            con.register("prob_links_arrow", pa.table({
                "tuple_id": text_array(prob_links["tuple_id"]), "person_key": text_array(prob_links["person_key"]),
                "rule": text_array(prob_links["rule"]),
                "match_probability": pa.array(prob_links["match_probability"].to_numpy(dtype=float), type=pa.float64()),
                "match_weight": pa.array(prob_links["match_weight"].to_numpy(dtype=float), from_pandas=True,
                                         type=pa.float64()),
                "candidate_person_key": text_array(prob_links["candidate_person_key"]),
                "candidate_record_id": text_array(prob_links["candidate_record_id"])}))
            del prob_links
            det_rule = lk.deterministic_rule(lk.ID_COLS)
            con.execute(f"""
                CREATE TEMP TABLE tuple_links AS
                SELECT t.*, d.person_key, '{det_rule}' AS rule, 1.0::DOUBLE AS match_probability,
                       NULL::DOUBLE AS match_weight, NULL::VARCHAR AS candidate_person_key,
                       NULL::VARCHAR AS candidate_record_id
                FROM link_tuples t JOIN det_links d USING (tuple_id)
                UNION ALL
                SELECT t.*, p.person_key, p.rule, p.match_probability, p.match_weight, p.candidate_person_key,
                       p.candidate_record_id
                FROM link_tuples t JOIN prob_links_arrow p USING (tuple_id)""")
            con.unregister("prob_links_arrow")
            con.unregister("spine_ids_frame")
            linked = con.execute("SELECT count(*) FROM tuple_links").fetchall()[0][0]
            if linked != n_tuples:  # each tuple exactly once: deterministic, or scored
                raise RuntimeError(f"link: {n_tuples:,} tuples gave {linked:,} tuple links")
        con.execute("DROP TABLE link_tuples")

        sg_select = ", ".join(f'r."sg_{c}" AS "{c}"' for c in SUBGROUPS)
        tmp = out_file.with_name(f".{out_file.name}.tmp")
        out_file.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(tmp, RECORD_PERSON_SCHEMA) as writer:
            # spine persons are in spine row order (spine_persons keeps it): joined back by position
            con.register("spine_person_keys", pa.table({
                "spine_row": pa.array(np.arange(len(persons), dtype=np.int64)),
                "person_key": text_array(persons["person_key"])}))
            del spine_ids, persons
            reader = con.sql(f"""
                SELECT '{SPINE}' AS source, r.record_id, k.person_key, 'spine' AS rule, 1.0::DOUBLE AS match_probability,
                       NULL::DOUBLE AS match_weight, NULL::VARCHAR AS candidate_person_key,
                       NULL::VARCHAR AS candidate_record_id, {sg_select}
                FROM read_parquet({sql_path(staged[SPINE])}, file_row_number = true) r
                JOIN spine_person_keys k ON k.spine_row = r.file_row_number
                ORDER BY r.file_row_number""").to_arrow_reader(256_000)
            for batch in reader:
                writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=RECORD_PERSON_SCHEMA))
            spine_rows = con.execute("SELECT count(*) FROM spine_person_keys").fetchall()[0][0]
            con.unregister("spine_person_keys")
            for source in others:
                src = source.replace("'", "''")
                reader = con.sql(f"""
                    SELECT '{src}' AS source, r.record_id, t.person_key, t.rule, t.match_probability,
                           t.match_weight, t.candidate_person_key, t.candidate_record_id, {sg_select}
                    FROM read_parquet({sql_path(staged[source])}, file_row_number = true) r
                    JOIN (SELECT * FROM tuple_links WHERE source = '{src}') t ON {same}
                    ORDER BY r.file_row_number""").to_arrow_reader(256_000)
                for batch in reader:
                    writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=RECORD_PERSON_SCHEMA))
        rows = pq.ParquetFile(tmp).metadata.num_rows
        if rows != spine_rows + records:  # every record exactly once, or nothing is written
            tmp.unlink()
            raise RuntimeError(f"link: {spine_rows + records:,} records became {rows:,} record-person rows")
        tmp.replace(out_file)
        rates = {}
        for src, rule, n in con.execute(f"SELECT source, rule, count(*) AS n FROM read_parquet({sql_path(out_file)}) "
                                        "GROUP BY ALL ORDER BY source, n DESC, rule").fetchall():
            rates.setdefault(src, {"records": 0})[rule] = int(n)
            rates[src]["records"] += int(n)
    return summary, model, rates
