"""Extracts read from a database (sources config ``database:``), written as text Parquet inside
the identifiable zone and then validated exactly as a landing file is.

ICB analysts keep SUS, ECDS and GP data in SQL Server warehouses (NHS England's UDAL is Azure
Synapse), trusts and SDEs in PostgreSQL or Databricks. A source's rows are read through
SQLAlchemy, in batches of ``BATCH_ROWS`` with the driver streaming (server-side cursors where
the dialect has them), every value as text as a CSV would give it (dates ISO, numbers as
written, NULL missing), into ``<identifiable>/extracted/database/<table>.parquet``: the same
validation, quarantine and row accounting then apply (rows read = accepted + quarantined),
and errors name that file and its row. What reports keep of a read: the connection's name
(``DatabaseSource.where``), the SHA-256 of the statement run and the rows read; never a URL,
host or credential (a driver's error message has the password cut out before it is shown).

The engine comes from an Airflow Connection (``connection``: its provider's hook builds it, so
the Connection's type chooses the dialect) or from a SQLAlchemy URL in an environment variable
(``url_env``).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import time
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.settings import configured_env_value
from identifiable_zone.sources import DatabaseSource, ExtractUnusable, SourceSpec

BATCH_ROWS = 100_000
EXTRACTED_FOLDER = "extracted"  # under the identifiable zone; a spec's ``file`` is relative to it


def extracted_root(identifiable: Path) -> Path:
    """The folder database extracts are written to (a spec's ``file`` is relative to it)."""
    return Path(identifiable) / EXTRACTED_FOLDER


def _engine(db: DatabaseSource, table: str):
    import sqlalchemy as sa

    if db.url_env:
        url = configured_env_value(db.url_env)
        if not url:
            raise ExtractUnusable(f"{table}: the database URL is missing: set the environment variable {db.url_env}")
        try:
            return sa.create_engine(url)
        except Exception as e:  # a malformed URL or a dialect that is not installed; the URL is never shown
            raise ExtractUnusable(f"{table}: the URL in ${db.url_env} cannot be used ({type(e).__name__}); "
                                  "check its form, dialect+driver://user:password@host:port/database") from None
    try:
        from airflow.sdk import Connection

        conn = Connection.get(db.connection)
    except Exception as e:
        raise ExtractUnusable(f"{table}: no Airflow Connection {db.connection} ({type(e).__name__}); define it "
                              f"in Airflow or as AIRFLOW_CONN_{db.connection.upper()}") from None
    try:
        return conn.get_hook().get_sqlalchemy_engine()
    except Exception as e:  # no provider for its type, or a hook without SQLAlchemy
        raise ExtractUnusable(f"{table}: Airflow Connection {db.connection} (type {conn.conn_type}) gives no "
                              f"SQLAlchemy engine ({type(e).__name__}); install its provider package") from None


def credential_variables(cfg) -> tuple[str, ...]:
    """The environment variables that hold the database sources' credentials (``url_env``
    names, and ``AIRFLOW_CONN_<ID>`` for a connection Airflow reads from the environment):
    only the identifiable zone's process is given them."""
    names = []
    for spec in cfg.sources.values():
        db = spec.database
        if db is not None:
            names.append(db.url_env if db.url_env else f"AIRFLOW_CONN_{db.connection.upper()}")
    return tuple(dict.fromkeys(names))


def statement(db: DatabaseSource, dialect) -> str:
    """The SQL run: the query as given, or every column of the table (names quoted by the dialect)."""
    if db.query:
        return db.query
    quote = dialect.identifier_preparer.quote
    return "SELECT * FROM " + ".".join(quote(part) for part in db.table.split("."))


def _text(value) -> str | None:
    """A value as text, as a CSV extract of it would hold it."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _without_secret(message: str, engine) -> str:
    """A driver's message, first line, without the connection's password."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    secret = getattr(engine.url, "password", None)
    if secret:
        first = first.replace(str(secret), "***")
    return first[:300]


def read_to_parquet(spec: SourceSpec, root: Path) -> dict:
    """Read ``spec``'s rows from its database into ``root / spec.file`` (text Parquet, the
    columns as the database names them). Returns the read's provenance: where, the
    statement's SHA-256, rows, columns, seconds. ``ExtractUnusable`` naming the source and
    the connection (never a credential) when the database cannot be read."""
    db = spec.database
    t0 = time.perf_counter()
    engine = _engine(db, spec.table)
    sql = statement(db, engine.dialect)
    target = root / spec.file
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    rows = 0
    import sqlalchemy as sa

    try:
        with engine.connect() as con:
            result = con.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(sa.text(sql))
            columns = [str(c) for c in result.keys()]
            schema = pa.schema([(c, pa.string()) for c in columns])
            with pq.ParquetWriter(tmp, schema) as writer:
                for part in result.partitions(BATCH_ROWS):
                    values = list(zip(*part)) if part else [() for _ in columns]
                    writer.write_table(pa.table([pa.array([_text(v) for v in col], type=pa.string())
                                                 for col in values], schema=schema))
                    rows += len(part)
    except ExtractUnusable:
        raise
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise ExtractUnusable(f"{spec.table}: reading from {db.where} failed ({type(e).__name__}: "
                              f"{_without_secret(str(getattr(e, 'orig', None) or e), engine)})") from None
    finally:
        engine.dispose()
    tmp.replace(target)
    return {"table": spec.table, "from": db.where, "statement_sha256": hashlib.sha256(sql.encode("utf-8")).hexdigest(),
            "rows": rows, "columns": len(columns), "seconds": round(time.perf_counter() - t0, 1)}
