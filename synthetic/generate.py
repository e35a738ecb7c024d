"""Entry point of the generator: simulate, build extracts, write them with their ground truth."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .params import OUTCOMES, SynthParams
from .population import build_population, month_start
from .simulate import simulate
from .tables import build_tables


def _write(df: pd.DataFrame, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    if fmt == "parquet":
        pq.write_table(table, path.parent / f"{path.name}.parquet")
    else:
        # Everything as text, as extracts arrive; nulls as empty fields.
        table = table.cast(pa.schema([pa.field(f.name, pa.string()) for f in table.schema]))
        pacsv.write_csv(table, path.parent / f"{path.name}.csv",
                        pacsv.WriteOptions(quoting_style="needed"))


# Activity extracts that a site receives month by month, with the date that puts a row in
# its month; the IAPT care activities and LTC records follow their contact and referral.
MONTHLY = {"ecds": "Arrival_Date", "apc": "Admission_Date", "opa": "APPTDATE",
           "gp_appointments": "AppointmentDate", "iapt_ids101_referral": "ReferralRequestReceivedDate",
           "iapt_ids201_care_contact": "CareContDate", "iapt_ids606_coded_scores": "AssToolCompDate"}
MONTHLY_VIA = {"iapt_ids202_care_activity": ("CareContactId", "iapt_ids201_care_contact"),
               "iapt_ids602_ltc": ("ServiceRequestId", "iapt_ids101_referral")}


def _monthly_files(tables: dict[str, pd.DataFrame], monthly_from: str) -> dict[str, pd.DataFrame]:
    """Split the activity extracts into monthly deliveries: ``<table>.<YYYY-MM>`` for each month
    from ``monthly_from`` and ``<table>.<first>_<last>`` for all earlier months (the backfill),
    named so that they sort in time order. Other extracts (registers, person tables, reference
    data) stay one file each. The rows, and their order within a month, are unchanged."""
    months = {}
    for name, col in MONTHLY.items():
        if name in tables:
            months[name] = tables[name][col].astype(str).str[:7]
    for name, (key, parent) in MONTHLY_VIA.items():
        if name in tables and parent in tables:
            lookup = dict(zip(tables[parent][key], months[parent]))
            months[name] = tables[name][key].map(lookup).fillna("").astype(str)
    dated = {name: ms.str.fullmatch(r"\d{4}-\d{2}").fillna(False) for name, ms in months.items()}
    every = sorted({m for name, ms in months.items() for m in ms[dated[name]]})
    first = every[0] if every else monthly_from
    before = [m for m in every if m < monthly_from]
    backfill = f"{first}_{before[-1]}" if before else None
    out = {}
    for name, df in tables.items():
        if name not in months:
            out[name] = df
            continue
        month = months[name].where(dated[name] & (months[name] >= monthly_from), backfill or "")
        for m in sorted(set(month)):
            out[f"{name}.{m}" if m else name] = df[(month == m).to_numpy()].reset_index(drop=True)
    return out


def generate(params: SynthParams, out: Path, fmt: str = "csv", upstream_pseudonymised: bool = False,
             monthly_from: str | None = None) -> dict:
    """Write landing extracts to out/landing and ground truth to out/ground_truth.

    ``upstream_pseudonymised``: write the person sources as pseudonymised upstream
    (Der_Pseudo_NHS_Number instead of identifiers; see synthetic.upstream). The ground truth
    and every other extract are the same as without it.

    ``monthly_from`` (YYYY-MM): write the activity extracts as monthly deliveries from that
    month on (see ``_monthly_files``; the sources config's globs read them all). The rows are
    the same as without it.

    Returns a summary (row counts per table, seconds, planted effects) free of identifiers.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format must be csv or parquet, not {fmt!r}")
    t0 = time.perf_counter()
    rng = np.random.default_rng(params.seed)
    pop = build_population(params, rng)
    sim = simulate(params, pop, rng)
    tables, truth = build_tables(params, pop, sim, rng)
    if upstream_pseudonymised:
        from .upstream import pseudonymise_landing_upstream, upstream_key

        tables = pseudonymise_landing_upstream(tables, upstream_key(params.seed))

    out = Path(out)
    landing, gt = out / "landing", out / "ground_truth"
    for folder in (landing, gt):
        if folder.exists():
            shutil.rmtree(folder)
    rows = {}
    for name, df in tables.items():
        rows[name] = len(df)
    if monthly_from is not None:
        tables = _monthly_files(tables, monthly_from)
    for name, df in tables.items():
        _write(df, landing / name, fmt)

    persons = pop.persons.copy()
    ref = sim.referrals
    first = ref.drop_duplicates("person").set_index("person") if len(ref) else pd.DataFrame()
    persons["referred"] = persons["person"].isin(first.index)
    persons["pathway"] = first["pathway"].reindex(persons["person"]).to_numpy() if len(ref) else None
    persons["n_treatment"] = first["n_treatment"].reindex(persons["person"]).fillna(0).astype(int).to_numpy() if len(ref) else 0
    persons["referral_month"] = first["referral_month"].reindex(persons["person"]).fillna(-1).astype(int).to_numpy() if len(ref) else -1
    persons["index_month"] = first["index_month"].reindex(persons["person"]).fillna(-1).astype(int).to_numpy() if len(ref) else -1
    persons["treated_ltc_pathway"] = (persons["pathway"] == "Y") & (persons["n_treatment"] >= 2)
    for o in OUTCOMES:
        persons[f"total_{o}"] = sim.counts[o].sum(axis=1)
    practices = pop.practices.copy()
    practices["ltc_service_start"] = np.where(practices["ltc_launch_month"] >= 0,
                                              month_start(params, np.maximum(practices["ltc_launch_month"], 0)),
                                              np.datetime64("NaT"))
    gt.mkdir(parents=True, exist_ok=True)
    truth["record_person"].to_parquet(gt / "record_person.parquet", index=False)
    # people in A&E who are on no GP list (true_person_id >= persons); see SynthParams
    truth["unregistered_persons"].to_parquet(gt / "unregistered_persons.parquet", index=False)
    persons.to_parquet(gt / "persons.parquet", index=False)
    practices.to_parquet(gt / "practices.parquet", index=False)
    np.savez_compressed(gt / "monthly_counts.npz", exposure=sim.exposure,
                        **{o: sim.counts[o] for o in OUTCOMES})
    effects = dict(params.planted_rate_ratio)
    effects["bed_days"] = params.planted_rate_ratio["emergency_admissions"]  # length of stay is unaffected
    planted = {
        "rate_ratio": effects,
        "applies_from": "the month of the first IAPT-LTC treatment contact (zero to two months after referral) onwards",
        "treated_definition": "IAPT-LTC pathway referral (IAPTLTCServiceInd = Y) with >= 2 attended treatment contacts",
        "params": params.to_json(),
    }
    (gt / "planted_effects.json").write_text(json.dumps(planted, indent=2, default=str))
    return {"rows": rows, "seconds": round(time.perf_counter() - t0, 2), "format": fmt,
            **({"files": len(tables), "monthly_from": monthly_from} if monthly_from else {}),
            "upstream_pseudonymised": upstream_pseudonymised,
            "treated_ltc_pathway": int(persons["treated_ltc_pathway"].sum()),
            "planted_rate_ratio": effects}
