"""Entry point of the generator: simulate, build extracts, write them with their ground truth.

People are made chunk by chunk (``chunk_persons``, a multiple of ``streams.RNG_BLOCK``) and
each chunk's rows are appended to every output file as soon as the chunk is made (CSV
appended; Parquet in row groups of a fixed ``ROW_GROUP`` rows), so memory is bounded by the
chunk, not the population. Every draw comes from the random stream of a fixed block of
persons and every table is kept in block order (see synthetic.streams), so the same seed gives
the same bytes in every file whatever the chunk size. So chunks are built by worker processes
(``workers``, default the cores, at most 2) and written here in order: a chunk's record ids
are positions within it until it is written (``streams.ChunkRecordIds``), when they become
the ids of their place in the table. What spans people is made once: the practices, LSOAs,
postcodes and NHS numbers before the first chunk (population.build_setup); the A&E attenders
on no GP list, who borrow registered people's identities, after the last.
"""
from __future__ import annotations

import json
import shutil
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.parallel import ordered_map
from core.settings import GENERATOR_WORKERS_ENV, generator_workers

from .params import NEGATIVE_CONTROLS, STREAMS, SynthParams
from .population import build_persons, build_setup, month_start
from .simulate import simulate
from .streams import RNG_BLOCK, BlockRNG, ChunkRecordIds, RecordIds, label_chunk_ids
from .tables import Identities, build_tables, label_record_ids, unregistered_ecds

# about 1 GiB of working memory per chunk being built (a worker builds one at a time): at
# 200,000 people with two workers the tree peaked at 3.1 GB, against 5.0 with chunks of 50,000
DEFAULT_CHUNK_PERSONS = 25_000
ROW_GROUP = 122_880  # Parquet rows per row group (DuckDB's own row-group size)
# Landing columns that are whole numbers in Parquet; every other landing column is text.
LANDING_INT_COLUMNS = frozenset({"Der_Spell_LoS", "Age_At_Start_of_Spell_SUS", "Age_At_Arrival", "PersScore",
                                 "APPTAGE", "IMD_Decile"})
TRUTH_SOURCES = ("gp_patients", "ecds", "apc", "opa", "iapt_ids001_mpi")  # order of record_person.parquet


class _Sink:
    """One output file written piece by piece. CSV: everything as text, as extracts arrive,
    nulls as empty fields, appended per piece. Parquet: row groups of exactly ROW_GROUP rows
    (the last one shorter), so the file does not depend on how the rows were chunked."""

    def __init__(self, path: Path, fmt: str, landing: bool, row_group: int = ROW_GROUP):
        self.path, self.fmt, self.landing, self.row_group = path, fmt, landing, row_group
        self.writer = None
        self.schema: pa.Schema | None = None
        self.buf: list[pa.Table] = []
        self.nbuf = 0
        self.rows = 0

    def _target(self, t: pa.Schema) -> pa.Schema:
        if self.fmt == "csv":
            return pa.schema([pa.field(f.name, pa.string()) for f in t])
        if self.landing:
            return pa.schema([pa.field(f.name, pa.int64() if f.name in LANDING_INT_COLUMNS else pa.large_string())
                              for f in t])
        # ground truth: the first piece's types; a column with no values yet is text
        return pa.schema([pa.field(f.name, pa.large_string() if pa.types.is_null(f.type) else f.type) for f in t])

    def write(self, df: pd.DataFrame | pa.Table) -> None:
        t = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
        t = t.replace_schema_metadata(None)
        if self.schema is None:
            self.schema = self._target(t.schema)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.fmt == "csv":
                self.writer = pacsv.CSVWriter(self.path, self.schema,
                                              write_options=pacsv.WriteOptions(quoting_style="needed"))
            else:
                self.writer = pq.ParquetWriter(self.path, self.schema)
        if list(t.column_names) != self.schema.names:
            raise ValueError(f"{self.path.name}: columns {t.column_names} differ from {self.schema.names}")
        t = t.cast(self.schema)
        self.rows += t.num_rows
        if self.fmt == "csv":
            self.writer.write_table(t)
            return
        self.buf.append(t)
        self.nbuf += t.num_rows
        while self.nbuf >= self.row_group:
            whole = pa.concat_tables(self.buf)
            # contiguous, so that page and dictionary boundaries do not follow the chunks
            self.writer.write_table(whole.slice(0, self.row_group).combine_chunks(), row_group_size=self.row_group)
            rest = whole.slice(self.row_group)
            self.buf, self.nbuf = [rest], rest.num_rows

    def close(self) -> None:
        if self.writer is None:
            return
        if self.fmt == "parquet" and self.nbuf:
            self.writer.write_table(pa.concat_tables(self.buf).combine_chunks(), row_group_size=self.row_group)
        self.buf, self.nbuf = [], 0
        self.writer.close()


# Activity extracts that a site receives month by month, with the date that puts a row in
# its month; the IAPT care activities and LTC records follow their contact and referral.
MONTHLY = {"ecds": "Arrival_Date", "apc": "Admission_Date", "opa": "APPTDATE",
           "gp_appointments": "AppointmentDate", "iapt_ids101_referral": "ReferralRequestReceivedDate",
           "iapt_ids201_care_contact": "CareContDate", "iapt_ids606_coded_scores": "AssToolCompDate"}
MONTHLY_VIA = {"iapt_ids202_care_activity": ("CareContactId", "iapt_ids201_care_contact"),
               "iapt_ids602_ltc": ("ServiceRequestId", "iapt_ids101_referral")}


BACKFILL = "__backfill__"  # placeholder month of the backfill file until the last chunk is written


def _months(tables: dict[str, pd.DataFrame]) -> dict[str, pd.Series]:
    """Year-month (YYYY-MM, or '' when undated) of every row of the activity extracts."""
    months = {}
    for name, col in MONTHLY.items():
        if name in tables:
            months[name] = tables[name][col].astype(object).where(tables[name][col].notna(), "").astype(str).str[:7]
    for name, (key, parent) in MONTHLY_VIA.items():
        if name in tables and parent in tables:
            lookup = pd.Series(months[parent].to_numpy(), index=tables[parent][key].to_numpy())
            lookup = lookup[~lookup.index.duplicated()]
            months[name] = pd.Series(lookup.reindex(tables[name][key].to_numpy()).fillna("").to_numpy(),
                                     index=tables[name].index).astype(str)
    return months


class _Landing:
    """The landing extracts: one file per table or, with ``monthly_from``, the activity
    extracts as monthly deliveries: ``<table>.<YYYY-MM>`` for each month from ``monthly_from``
    and ``<table>.<first>_<last>`` for all earlier months (the backfill), named so that they
    sort in time order; undated rows go to the backfill (or, with no earlier month, to
    ``<table>``). Other extracts (registers, person tables, reference data) stay one file
    each. The rows, and their order within a month, are the same as in one file."""

    def __init__(self, folder: Path, fmt: str, monthly_from: str | None, row_group: int = ROW_GROUP):
        self.folder, self.fmt, self.monthly_from, self.row_group = folder, fmt, monthly_from, row_group
        self.sinks: dict[str, _Sink] = {}
        self.rows: dict[str, int] = {}
        self.seen_months: set[str] = set()

    def _sink(self, key: str) -> _Sink:
        if key not in self.sinks:
            self.sinks[key] = _Sink(self.folder / f"{key}.{self.fmt}", self.fmt, landing=True, row_group=self.row_group)
        return self.sinks[key]

    def write(self, tables: dict[str, pd.DataFrame]) -> None:
        for name, df in tables.items():
            self.rows[name] = self.rows.get(name, 0) + len(df)
        if self.monthly_from is None:
            for name, df in tables.items():
                self._sink(name).write(df)
            return
        months = _months(tables)
        for name, df in tables.items():
            if name not in months:
                self._sink(name).write(df)
                continue
            ms = months[name]
            dated = ms.str.fullmatch(r"\d{4}-\d{2}").fillna(False).to_numpy()
            self.seen_months.update(ms[dated].unique().tolist())
            month = np.where(dated & (ms.to_numpy() >= self.monthly_from), ms.to_numpy(), BACKFILL)
            for m in sorted(set(month.tolist())):
                self._sink(f"{name}.{m}").write(df[month == m].reset_index(drop=True))

    def close(self) -> int:
        """Close every file, give the backfill its final name; returns the number of files."""
        for sink in self.sinks.values():
            sink.close()
        if self.monthly_from is not None:
            every = sorted(self.seen_months)
            before = [m for m in every if m < self.monthly_from]
            for key, sink in list(self.sinks.items()):
                name, _, m = key.rpartition(".")
                if m == BACKFILL:
                    final = f"{name}.{every[0]}_{before[-1]}" if before else name
                    sink.path.rename(self.folder / f"{final}.{self.fmt}")
        return len(self.sinks)


class _Counts:
    """ground_truth/monthly_counts.npz written person-chunk by person-chunk: each array is
    streamed to a temporary .npy file (rows are persons, C order, so chunks append), then
    each file is deflated into the archive with a fixed timestamp."""

    def __init__(self, folder: Path, n: int, months: int):
        self.folder = folder
        self.tmp = folder / ".monthly_counts"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.files = {}
        for name, dtype in [("exposure", np.float32)] + [(o, np.int16) for o in STREAMS]:
            f = open(self.tmp / f"{name}.npy", "wb")
            np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                     "fortran_order": False, "shape": (n, months)})
            self.files[name] = (f, dtype)

    def write(self, name: str, rows: np.ndarray) -> None:
        f, dtype = self.files[name]
        f.write(np.ascontiguousarray(rows, dtype=dtype).tobytes())

    def close(self) -> None:
        with zipfile.ZipFile(self.folder / "monthly_counts.npz", "w", allowZip64=True) as zf:
            for name, (f, _) in self.files.items():
                f.close()
                info = zipfile.ZipInfo(f"{name}.npy")  # fixed date: same seed, same bytes
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(self.tmp / f"{name}.npy", "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                    shutil.copyfileobj(src, dst, 1 << 24)
        shutil.rmtree(self.tmp)


@dataclass
class _Chunk:
    """One chunk of people as built (in a worker process or here): extracts and ground truth
    with record ids still positions within the chunk (``record_ids`` says how many of each)."""

    first: int
    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]
    persons: pd.DataFrame
    identities: pd.DataFrame  # forename, surname, postcode, date_of_birth of each true person
    exposure: np.ndarray
    counts: dict[str, np.ndarray]
    record_ids: ChunkRecordIds
    ecds_persons: int
    ecds_columns: list[str]  # the A&E extract's columns as built (before any upstream pseudonymisation)


_WORKER: dict = {}  # a builder process's params, setup and upstream key (set once, by _start_worker)


def _start_worker(params: SynthParams, setup, upstream: bytes | None, mps=None) -> None:
    _WORKER.update(params=params, setup=setup, upstream=upstream, mps=mps)


def _build_chunk(first: int, size: int) -> _Chunk:
    """People ``first`` .. ``first + size - 1``: every draw from their blocks' streams, so the
    chunk is the same whichever process builds it and whatever was built before it."""
    params, setup, upstream = _WORKER["params"], _WORKER["setup"], _WORKER["upstream"]
    rng = BlockRNG(params.seed, first, size)
    pop = build_persons(params, setup, rng)
    sim = simulate(params, pop, rng)
    record_ids = ChunkRecordIds()
    tables, truth = build_tables(params, setup, pop, sim, rng, record_ids)
    ecds_persons = truth.pop("ecds_persons")
    ecds_columns = list(tables["ecds"].columns)
    if _WORKER.get("mps") is not None:
        from .mps import add_to_tables

        tables = add_to_tables(tables, truth, setup.nhs_number, params.seed, _WORKER["mps"])
    if upstream is not None:
        from .upstream import pseudonymise_landing_upstream

        tables = pseudonymise_landing_upstream(tables, upstream)
    identities = pop.persons[["forename", "surname", "postcode", "date_of_birth"]]
    return _Chunk(first, tables, truth, _truth_persons(pop, sim), identities, sim.exposure, sim.counts,
                  record_ids, ecds_persons, ecds_columns)


def generate(params: SynthParams, out: Path, fmt: str = "csv", upstream_pseudonymised: bool = False,
             monthly_from: str | None = None, chunk_persons: int = DEFAULT_CHUNK_PERSONS,
             row_group: int = ROW_GROUP, workers: int | None = None, mps=None) -> dict:
    """Write landing extracts to out/landing and ground truth to out/ground_truth.

    ``upstream_pseudonymised``: write the person sources as pseudonymised upstream
    (Der_Pseudo_NHS_Number instead of identifiers; see synthetic.upstream). The ground truth
    and every other extract are the same as without it.

    ``monthly_from`` (YYYY-MM): write the activity extracts as monthly deliveries from that
    month on (see ``_Landing``; the sources config's globs read them all). The rows are the
    same as without it.

    ``mps`` (a ``synthetic.mps.MpsOptions``): add NHS England's MPS Person_ID fields to the SUS
    and ECDS extracts (read with ``synthetic.mps.sources_config``); every other value is the
    same as without it.

    ``chunk_persons``: people made and written at a time (a multiple of
    streams.RNG_BLOCK); it bounds memory and changes no output byte. ``row_group``: rows per
    Parquet row group (fixed, so that it is not the chunk that decides them). ``workers``:
    processes building chunks at once (default ``core.settings.generator_workers``: the
    cores, at most 2); it changes no output byte either.

    Returns a summary (row counts per table, seconds, planted effects) free of identifiers.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format must be csv or parquet, not {fmt!r}")
    if isinstance(chunk_persons, bool) or not isinstance(chunk_persons, (int, np.integer)) \
            or chunk_persons <= 0 or chunk_persons % RNG_BLOCK:
        raise ValueError(f"chunk_persons must be a positive multiple of {RNG_BLOCK:,}, not {chunk_persons!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer))
                                or workers <= 0):
        raise ValueError(f"workers must be a positive whole number of processes, not {workers!r}")
    if isinstance(row_group, bool) or not isinstance(row_group, (int, np.integer)) or row_group <= 0:
        raise ValueError(f"row_group must be a positive whole number, not {row_group!r}")
    if isinstance(params.persons, bool) or not isinstance(params.persons, (int, np.integer)) or params.persons <= 0:
        raise ValueError(f"persons must be a positive whole number, not {params.persons!r}")
    if mps is not None and upstream_pseudonymised:
        raise ValueError("mps: the MPS fields are written on identifiable extracts, not upstream-pseudonymised ones")
    t0 = time.perf_counter()
    if upstream_pseudonymised:
        from .upstream import pseudonymise_landing_upstream, upstream_key

        key = upstream_key(params.seed)
    out = Path(out)
    landing_dir, gt = out / "landing", out / "ground_truth"
    for folder in (landing_dir, gt):
        if folder.exists():
            shutil.rmtree(folder)
    gt.mkdir(parents=True)
    n = params.persons
    setup = build_setup(params)
    ids = RecordIds(params.seed)
    spine = Identities(n)
    landing = _Landing(landing_dir, fmt, monthly_from, row_group)
    truth_tmp = gt / ".record_person"
    truth_sinks = {s: _Sink(truth_tmp / f"{s}.parquet", "parquet", landing=False, row_group=row_group)
                   for s in TRUTH_SOURCES}
    persons_sink = _Sink(gt / "persons.parquet", "parquet", landing=False, row_group=row_group)
    counts = _Counts(gt, n, params.months)
    ecds_persons = treated = 0
    ecds_columns = None

    def write_chunk(chunk: _Chunk) -> None:
        landing.write(chunk.tables)
        for s in TRUTH_SOURCES:
            truth_sinks[s].write(chunk.truth[s])
        persons_sink.write(chunk.persons)
        counts.write("exposure", chunk.exposure)
        for o in STREAMS:
            counts.write(o, chunk.counts[o])

    firsts = list(range(0, n, chunk_persons))
    workers = max(1, min(generator_workers() if workers is None else int(workers), len(firsts)))
    # Chunks are built by `workers` processes (or here, with one) and taken in order: their
    # record ids labelled, then written (Arrow and zlib release the GIL) while the next is taken.
    jobs = [(f, min(chunk_persons, n - f)) for f in firsts]
    chunks = ordered_map(_build_chunk, jobs, workers, initializer=_start_worker,
                         initargs=(params, setup, key if upstream_pseudonymised else None, mps),
                         what="a generator worker", workers_env=GENERATOR_WORKERS_ENV)
    try:
        with ThreadPoolExecutor(max_workers=1) as writer:
            pending = None
            for chunk in chunks:
                label_record_ids(chunk.tables, chunk.truth, label_chunk_ids(ids, chunk.record_ids))
                ecds_persons += chunk.ecds_persons
                ecds_columns = ["person"] + chunk.ecds_columns
                if chunk.first == 0:
                    chunk.tables["reference/lsoa_imd"] = setup.lsoa[["LSOA11", "IMD_Decile"]]
                treated += int(chunk.persons["treated_ltc_pathway"].sum())
                spine.add(chunk.identities, chunk.first)
                if pending is not None:
                    pending.result()
                pending = writer.submit(write_chunk, chunk)
                del chunk
            if pending is not None:
                pending.result()
    finally:
        chunks.close()  # stops the workers when writing failed
        _WORKER.clear()  # built here (one worker): the setup is not kept after the run

    # People on no GP list who attend A&E (true_person_id >= persons); see SynthParams.
    visitors, visitor_persons = unregistered_ecds(params, spine, setup, ecds_columns, ecds_persons, ids)
    if len(visitors) and mps is not None:
        from .mps import add_to_visitors

        visitors = add_to_visitors(visitors, params.seed, mps)
    if len(visitors):
        truth_sinks["ecds"].write(pd.DataFrame({"source": "ecds", "record_id": visitors["EC_Ident"],
                                                "true_person_id": visitors["person"].to_numpy()}))
        v = {"ecds": visitors.drop(columns="person")}
        landing.write(pseudonymise_landing_upstream(v, key) if upstream_pseudonymised else v)
    n_files = landing.close()
    persons_sink.close()
    counts.close()
    _merge_truth(truth_sinks, gt / "record_person.parquet", row_group)
    shutil.rmtree(truth_tmp)
    visitor_persons.to_parquet(gt / "unregistered_persons.parquet", index=False)
    practices = setup.practices.copy()
    practices["ltc_service_start"] = np.where(practices["ltc_launch_month"] >= 0,
                                              month_start(params, np.maximum(practices["ltc_launch_month"], 0)),
                                              np.datetime64("NaT"))
    practices.to_parquet(gt / "practices.parquet", index=False)
    effects = dict(params.planted_rate_ratio)
    effects["bed_days"] = params.planted_rate_ratio["emergency_admissions"]  # length of stay is unaffected
    planted = {
        "rate_ratio": effects,
        # what the therapy does not change: the negative controls' true rate ratio is 1
        "negative_controls": {o: 1.0 for o in NEGATIVE_CONTROLS},
        # systematic error planted on purpose (SynthParams.residual_confounding_rate_ratio): every
        # treated person's rates, negative controls too, times this from the index month; an
        # estimator blind to it estimates rate_ratio x this, and 1 x this for a negative control
        "residual_confounding_rate_ratio": params.residual_confounding_rate_ratio,
        "applies_from": "the month of the first IAPT-LTC treatment contact (zero to two months after referral) onwards",
        "treated_definition": "IAPT-LTC pathway referral (IAPTLTCServiceInd = Y) with >= 2 attended treatment contacts",
        "params": params.to_json(),
    }
    (gt / "planted_effects.json").write_text(json.dumps(planted, indent=2, default=str))
    return {"rows": landing.rows, "seconds": round(time.perf_counter() - t0, 2), "format": fmt,
            **({"files": n_files, "monthly_from": monthly_from} if monthly_from else {}),
            "upstream_pseudonymised": upstream_pseudonymised, "chunk_persons": chunk_persons,
            "treated_ltc_pathway": treated, "planted_rate_ratio": effects}


def _truth_persons(pop, sim) -> pd.DataFrame:
    """Ground truth of the chunk's people: identity, attributes, first referral, totals."""
    persons = pop.persons.copy()
    n = len(persons)
    ref = sim.referrals.drop_duplicates("person")
    who = ref["person"].to_numpy()
    referred = np.zeros(n, dtype=bool)
    referred[who] = True
    pathway = np.full(n, None, dtype=object)
    pathway[who] = ref["pathway"].to_numpy(dtype=object)
    persons["referred"] = referred
    persons["pathway"] = pathway
    for col, default in (("n_treatment", 0), ("referral_month", -1), ("index_month", -1)):
        v = np.full(n, default, dtype=np.int64)
        v[who] = ref[col].to_numpy()
        persons[col] = v
    persons["treated_ltc_pathway"] = (pathway == "Y") & (persons["n_treatment"].to_numpy() >= 2)
    for o in STREAMS:
        persons[f"total_{o}"] = sim.counts[o].sum(axis=1, dtype=np.int64)
    return persons


def _merge_truth(sinks: dict[str, _Sink], path: Path, row_group: int) -> None:
    """record_person.parquet: the per-source pieces one after another, streamed."""
    out = _Sink(path, "parquet", landing=False, row_group=row_group)
    for s in TRUTH_SOURCES:
        sinks[s].close()
        f = pq.ParquetFile(sinks[s].path)
        for batch in f.iter_batches(batch_size=row_group):
            out.write(pa.Table.from_batches([batch]))
    out.close()
