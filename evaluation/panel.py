"""The matched person-month panel (`mart_evaluation_panel`, data contract section 4).

Windows of the stacked design: each treated person and their matched controls share an index
month (rel_month 0). Post = rel_month 1..12; rel_month 0 is the transition month (the effect is
taken to start the month after the index month). The 12 months before the index are split:

- the *selection window*, the last w months before the index (dbt var
  ``selection_window_months``, default 6; ``period = "selection"``), where the referral decision
  is made: people are referred after a spell of high use. Controls are matched on their use in
  these months, and the DiD leaves them out, so that neither group's comparison period holds
  the transitory peak that selected (treated) or matched (controls) them;
- the *comparison period*, rel_month -12..-(w+1) (``period = "pre"``): the pre-period of the
  DiD contrast and the reference of the event study (its last month).

Matching on the same noisy counts that form the DiD pre-period makes controls regress to the
mean more than the treated people after the index (Daw and Hatfield 2018); on synthetic data
with a planted null it biased every acute outcome upwards by about 4%. With w = 0 the whole
year before the index is the comparison period (the classic design; generic panels).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from core.contract import (COUNT_OUTCOMES, NEGATIVE_CONTROLS, PANEL_COUNTS, PANEL_MONTHS_AFTER, PANEL_MONTHS_BEFORE,
                           PERIODS, PRE_MONTHS)
from evaluation.design import StudyDesign
from evaluation.methods.poisson_fe import SortedCodes

REFERENCE_MONTH = -1  # of a panel without a selection window; see reference_month()

PANEL_COLUMNS = (
    "matched_set_id", "person_id", "is_treated", "index_month", "rel_month",
    "calendar_month", "exposure_months", *COUNT_OUTCOMES, *NEGATIVE_CONTROLS, "ltc_group", "practice_code",
)
REQUIRED_COLUMNS = ("matched_set_id", "person_id", "is_treated", "rel_month", "exposure_months")


# Every warehouse table the evaluation reads (a table whose name starts with a prefix too): the
# Spark engine hands only these to it (ltceval/spark_warehouse.py); tests/evaluation/test_panel_loading.py
# holds the list to the names the evaluation's code reads
WAREHOUSE_TABLES = ("mart_design", "mart_evaluation_panel", "mart_treated_panel", "mart_treated_cohort",
                    "mart_matched_cohort", "mart_balance", "mart_attrition", "mart_linkage_scenarios",
                    "mart_linkage_sensitivity_deltas", "int_controls_matched_to_treated", "int_persons_joined_to_imd",
                    "unit_costs")
WAREHOUSE_TABLE_PREFIXES = ("mart_evaluation_panel__",)


def read_by_evaluation(table: str) -> bool:
    return table in WAREHOUSE_TABLES or table.startswith(WAREHOUSE_TABLE_PREFIXES)


def connect(warehouse: Path | str) -> duckdb.DuckDBPyConnection:
    """Open the warehouse read-only (dbt is its only writer)."""
    return duckdb.connect(str(warehouse), read_only=True)


# Tables whose rows reach the report in the order read, read in a stated order: a table keeps no
# row order of its own (DuckDB returns insertion order, Spark any), and the business case must be
# the same from either engine. Balance: the covariates matched on (alphabetical, the propensity
# logit last), then those shown only; before, then after matching. Each term: (column, SQL); a
# term whose column the table lacks is left out.
ROW_ORDER = {"mart_balance": (("matched_on", "matched_on desc"), ("covariate", "covariate = 'propensity_logit'"),
                              ("covariate", "covariate"), ("stage", "stage = 'after'")),
             "unit_costs": (("activity", "activity"),)}


def read_table(warehouse: Path | str, table: str, columns=None, where: str | None = None) -> pd.DataFrame:
    """The table, or only its ``columns`` (names) and the rows ``where`` says (SQL); in the order
    ``ROW_ORDER`` gives the table, if any."""
    select = "*" if columns is None else ", ".join(f'"{c}"' for c in columns)
    con = connect(warehouse)
    try:
        order = ""
        if table in ROW_ORDER:
            present = {r[0] for r in con.execute(f'describe main."{table}"').fetchall()}
            terms = [sql for column, sql in ROW_ORDER[table] if column in present]
            order = f" order by {', '.join(terms)}" if terms else ""
        return con.execute(f'select {select} from main."{table}"' + (f" where {where}" if where else "") + order).df()
    finally:
        con.close()


# What was read from a warehouse and prepared, kept for the next task in the same process (the
# evaluation DAG's tasks share one under `dag.test()`; at 2 million people reading and
# preparing the panel took 12 s of each estimate task's 23 s). Only the newest is kept, under
# the warehouse file's identity: a rebuilt or republished warehouse is another file.
_KEPT: dict[str, tuple[tuple, pd.DataFrame]] = {}


def _file_version(warehouse: Path | str) -> tuple:
    st = Path(warehouse).stat()
    return str(Path(warehouse).resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _kept(warehouse: Path | str, name: str, make) -> pd.DataFrame:
    """``make()``, or what it gave for this version of the warehouse before; a shallow copy
    either way (copy-on-write: a task that changes it changes its own copy only)."""
    version = _file_version(warehouse)
    hit = _KEPT.get(name)
    if hit is None or hit[0] != version:
        _KEPT.pop(name, None)  # the old one goes before the new one is made: never both at once
        _KEPT[name] = (version, make())
    return _KEPT[name][1].copy(deep=False)


def load_raw_panel(warehouse: Path | str) -> pd.DataFrame:
    """`mart_evaluation_panel` as the warehouse holds it (unprepared; read each time)."""
    return read_table(warehouse, "mart_evaluation_panel")


def load_panel(warehouse: Path | str, raw: pd.DataFrame | None = None) -> pd.DataFrame:
    """Read `mart_evaluation_panel` and return it checked and prepared for the warehouse's
    design (see `prepare_panel`, `load_design`). ``raw``: the table when the caller has read it
    already (`load_raw_panel`), prepared instead of reading it again if it is not kept."""
    return _kept(warehouse, "panel", lambda: prepare_panel(load_raw_panel(warehouse) if raw is None else raw,
                                                           load_design(warehouse).selection_window_months))


def load_design(warehouse: Path | str) -> StudyDesign:
    """The design dbt built the warehouse with (`mart_design`); without that table, the default
    design (no selection window)."""
    if "mart_design" not in table_names(warehouse):
        return StudyDesign()
    return StudyDesign.from_table(read_table(warehouse, "mart_design"))


def table_names(warehouse: Path | str) -> set[str]:
    """Tables and views of the warehouse's main schema."""
    con = connect(warehouse)
    try:
        return {r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main'"
        ).fetchall()}
    finally:
        con.close()


def load_treated_panel(warehouse: Path | str) -> pd.DataFrame | None:
    """`mart_treated_panel` (every eligible treated person, matched or not) with exposure > 0,
    for the NAIVE before/after; None when the warehouse has no such table."""
    if "mart_treated_panel" not in table_names(warehouse):
        return None
    return _kept(warehouse, "treated_panel", lambda: prepare_treated_panel(read_table(warehouse, "mart_treated_panel")))


def prepare_treated_panel(df: pd.DataFrame) -> pd.DataFrame:
    """Types and at-risk rows of a `mart_treated_panel` table, sorted (see prepare_panel)."""
    df = df.copy()
    df["person_id"] = df["person_id"].astype(str)
    df["is_treated"] = 1
    df["exposure_months"] = df["exposure_months"].astype(float)
    for c in PANEL_COUNTS:
        if c in df.columns:
            df[c] = df[c].fillna(0).astype(float)
    df = df.sort_values(["person_id", "rel_month"], kind="stable")  # see prepare_panel
    return df[df["exposure_months"] > 0].reset_index(drop=True)


def period_of(rel_month: pd.Series, selection_window_months: int = 0) -> np.ndarray:
    """Period label of each relative month (see the module docstring)."""
    w = int(selection_window_months)
    return np.select(
        [rel_month < -w, rel_month < 0, rel_month > 0], ["pre", "selection", "post"], "transition")


def comparison_months(panel: pd.DataFrame) -> tuple[int, ...]:
    """Relative months of the DiD comparison (pre) period of a prepared panel."""
    months = sorted(int(m) for m in panel.loc[panel["period"] == "pre", "rel_month"].unique())
    return tuple(months) or PRE_MONTHS


def reference_month(panel: pd.DataFrame) -> int:
    """The event study's reference month: the last month of the comparison period."""
    return max(comparison_months(panel))


def prepare_panel(panel: pd.DataFrame, selection_window_months: int = 0) -> pd.DataFrame:
    """Check columns and types, drop unusable rows and sets, add analysis columns.

    - rows outside rel_month -12..12 or with exposure_months <= 0 (not at risk: died,
      deregistered) are dropped;
    - matched sets without both a treated person and at least one control carry no comparison
      and are dropped;
    - `weight`: 1 for treated people, n_treated/n_controls of the set for controls, so that each
      treated person's controls count as one comparator (ATT weights; all 1 under 1:1 matching);
    - `period`: "pre", "selection", "transition" or "post": the last `selection_window_months`
      months before the index are the selection window (the design's, `mart_design`; see
      `load_panel`). A `period` column the panel brings (dbt writes one) must say the same;
      the estimators read the periods from this column; `post` and `treated_post` indicators.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in panel.columns]
    if missing:
        raise ValueError(f"panel lacks columns {missing}")
    df = panel.copy(deep=False)  # copy-on-write: the columns changed below are the copy's own
    df["is_treated"] = df["is_treated"].astype(int)
    df["rel_month"] = df["rel_month"].astype(int)
    df["exposure_months"] = df["exposure_months"].astype(float)
    df["matched_set_id"] = df["matched_set_id"].astype(str)
    df["person_id"] = df["person_id"].astype(str)
    for c in PANEL_COUNTS:
        if c in df.columns:
            df[c] = df[c].fillna(0).astype(float)
    at_risk = (df["rel_month"].between(-PANEL_MONTHS_BEFORE, PANEL_MONTHS_AFTER) & (df["exposure_months"] > 0)).to_numpy()
    # a fixed row order: the warehouse returns rows in any order (parallel scans, hash joins), and
    # float sums in the estimators depend on it in the last bits; sorted, reruns are identical
    coded = not (df["matched_set_id"].isna().any() or df["person_id"].isna().any())
    if coded:
        # the same rows in the same order as filtering, sorting (stable) and keeping usable sets
        # below, found from the ids' codes (which sort as the text does) and taken in one copy:
        # sorting and grouping by two text columns took half of preparing a panel of 3.4 million
        # rows, and each step held a copy of it
        kept = np.flatnonzero(at_risk)
        sets, persons = SortedCodes.of(df["matched_set_id"]).take(kept), SortedCodes.of(df["person_id"]).take(kept)
        order = np.lexsort((df["rel_month"].to_numpy()[kept], persons.codes, sets.codes))
        sets, persons = SortedCodes(sets.uniques, sets.codes[order]), SortedCodes(persons.uniques, persons.codes[order])
        usable, weight = _usable_weights(pd.DataFrame({"matched_set_id": sets.codes, "person_id": persons.codes,
                                                       "is_treated": df["is_treated"].to_numpy()[kept[order]]}))
        df = df.take(kept[order][usable]).assign(weight=weight[usable])
        sets, persons = sets.take(usable), persons.take(usable)
    else:
        df = df[at_risk].sort_values(["matched_set_id", "person_id", "rel_month"], kind="stable")
        df = _usable_sets_weighted(df)
    expected = period_of(df["rel_month"], selection_window_months)
    if "period" in df.columns:
        bad = ~df["period"].isin(PERIODS)
        if bad.any():
            raise ValueError(f"panel column period has values {sorted(df.loc[bad, 'period'].astype(str).unique())}; "
                             f"expected {list(PERIODS)}")
        if not (df["period"].to_numpy() == expected).all():
            raise ValueError(f"panel column period does not match the design's {selection_window_months}-month "
                             "selection window (mart_design.selection_window_months): it must split rel_month "
                             "into comparison period < selection window < 0 (transition) < post")
    df["period"] = expected
    # Under the not-yet-referred comparison design a person can be a control in one matched set
    # and the treated person of a later one: the unit of the fixed effects is a person within a
    # set, and sets that share a person are one cluster (their rows are not independent).
    df["unit_id"] = df["matched_set_id"] + "/" + df["person_id"]
    if coded:
        clusters = linked_set_cluster_codes(sets, persons)
        df["cluster_id"] = pd.Index(clusters.uniques).take(clusters.codes)
    else:
        df["cluster_id"] = linked_set_clusters(df["matched_set_id"], df["person_id"])
    df["post"] = (df["rel_month"] > 0).astype(int)
    df["treated_post"] = df["is_treated"] * df["post"]
    return df.reset_index(drop=True)


def _usable_weights(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Of each row of ``df`` (matched_set_id, person_id, is_treated: text ids or their codes):
    whether its matched set has a treated person and a control, and its ATT ``weight`` (see
    `prepare_panel`; rows of other sets: any)."""
    persons = df.drop_duplicates(["matched_set_id", "person_id"])[
        ["matched_set_id", "person_id", "is_treated"]]
    n_t = persons.groupby("matched_set_id")["is_treated"].sum()
    n_all = persons.groupby("matched_set_id")["is_treated"].size()
    n_c = n_all - n_t
    usable = n_t[(n_t > 0) & (n_c > 0)].index
    # each row's set's control weight, looked up (a join copied every column once more)
    control_w = (n_t / n_c.where(n_c > 0)).reindex(df["matched_set_id"]).to_numpy()
    return df["matched_set_id"].isin(usable).to_numpy(), np.where(df["is_treated"] == 1, 1.0, control_w)


def _usable_sets_weighted(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the matched sets with a treated person and a control, with their ATT
    ``weight`` (see `prepare_panel`)."""
    usable, weight = _usable_weights(df)
    return df[usable].assign(weight=weight[usable])


def drop_persons(panel: pd.DataFrame, person_ids) -> pd.DataFrame:
    """A prepared panel without the people ``person_ids``: the rows, weights and clusters that
    `prepare_panel` gives for the unprepared panel without them (sets left without a treated
    person or without a control dropped, control weights and linked-set clusters made again),
    in the columns ``panel`` has (it needs matched_set_id, person_id and is_treated). Made
    from the prepared rows: preparing the whole table again held several copies of it."""
    df = _usable_sets_weighted(panel[~panel["person_id"].isin(person_ids)])
    if "cluster_id" in df.columns:
        df["cluster_id"] = linked_set_clusters(df["matched_set_id"], df["person_id"])
    return df.reset_index(drop=True)


ID_COLUMNS = ("unit_id", "cluster_id", "matched_set_id", "person_id")


@dataclass(frozen=True, eq=False)
class PanelCodes:
    """The text ids of a prepared panel's rows as codes, each numbered in the ids' sorted order
    (`SortedCodes`: as the fit numbers units and clusters, and as grouping by the text sorts).
    Made once for a panel, they serve every fit and grouping on it or on a subset of its rows
    (`take`), which then copy no text column: at 2 million people the ids were two thirds of
    the panel's memory and most of a subset's copying."""

    units: SortedCodes
    clusters: SortedCodes
    sets: SortedCodes
    persons: SortedCodes | None = None  # not needed by the count DiD

    @classmethod
    def of(cls, panel: pd.DataFrame, persons: bool = True) -> "PanelCodes":
        return cls(*(SortedCodes.of(panel[c]) for c in ID_COLUMNS[:4 if persons else 3]))

    def take(self, rows: np.ndarray) -> "PanelCodes":
        """The codes of the rows at ``rows`` (a boolean mask or positions), as ``of`` gives
        them for those rows."""
        return PanelCodes(*(None if c is None else c.take(rows)
                            for c in (self.units, self.clusters, self.sets, self.persons)))

    def __len__(self) -> int:
        return len(self.units)


def drop_persons_coded(frame: pd.DataFrame, codes: PanelCodes, person_ids) -> tuple[pd.DataFrame, PanelCodes]:
    """`drop_persons` of a prepared panel held as ``frame`` (its is_treated and weight, and any
    other columns but the text ids) and the `PanelCodes` of its rows (with persons): the same
    rows and weights, and the codes of their units, sets, people and linked-set clusters
    (`linked_set_cluster_codes`); no text column is copied or made."""
    gone = np.zeros(len(codes.persons.uniques), dtype=bool)
    found = pd.Index(codes.persons.uniques).get_indexer(pd.Index(list(person_ids), dtype=object))
    gone[found[found >= 0]] = True
    kept = np.flatnonzero(~gone[codes.persons.codes])
    keys = pd.DataFrame({"matched_set_id": codes.sets.codes[kept], "person_id": codes.persons.codes[kept],
                         "is_treated": frame["is_treated"].to_numpy()[kept]})
    usable, weight = _usable_weights(keys)
    rows = kept[usable]
    sets, persons = codes.sets.take(rows), codes.persons.take(rows)
    out = PanelCodes(codes.units.take(rows), linked_set_cluster_codes(sets, persons), sets, persons)
    return frame.take(rows).assign(weight=weight[usable]).reset_index(drop=True), out


def linked_set_cluster_codes(sets: SortedCodes, persons: SortedCodes) -> SortedCodes:
    """`linked_set_clusters` of rows given as the codes of their matched sets and people: the
    codes of the cluster names it gives (each cluster named by its set id that is shortest,
    then first as text), made from the sets and people, not from a text per row."""
    n_sets = len(sets.uniques)
    n = n_sets + len(persons.uniques)
    graph = sparse.coo_matrix((np.ones(len(sets.codes)), (sets.codes, n_sets + persons.codes)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    ids = pd.Series(np.asarray(sets.uniques, dtype=object)).astype(str)
    # the sets are numbered in their ids' text order: the number stands for the id in the sort
    table = pd.DataFrame({"component": component[:n_sets], "length": ids.str.len().to_numpy(),
                          "set": np.arange(n_sets)})
    first = table.sort_values(["component", "length", "set"], kind="stable").drop_duplicates("component")
    namer = np.zeros(int(component.max()) + 1 if len(component) else 0, dtype=np.intp)
    namer[first["component"].to_numpy()] = first["set"].to_numpy()
    return SortedCodes(sets.uniques, namer[component[:n_sets]][sets.codes]).take(slice(None))


def linked_set_clusters(matched_set_id: pd.Series, person_id: pd.Series) -> np.ndarray:
    """Cluster label of each row: the matched sets connected through shared persons (a set of
    its own when none of its people is in another set), named by the smallest set id in it."""
    set_codes, set_ids = pd.factorize(matched_set_id)
    person_codes, person_ids = pd.factorize(person_id)
    n_sets = len(set_ids)
    n = n_sets + len(person_ids)
    graph = sparse.coo_matrix((np.ones(len(set_codes)), (set_codes, n_sets + person_codes)),
                              shape=(n, n))
    _, component = connected_components(graph, directed=False)
    # each component's name: its set id that is shortest, then first as text (so "9" < "10"),
    # by one sort (a Python call per component took 60 s at 2 million people)
    ids = pd.Series(np.asarray(set_ids, dtype=object)).astype(str)
    sets = pd.DataFrame({"component": component[:n_sets], "length": ids.str.len().to_numpy(),
                         "id": ids.to_numpy(dtype=object)})
    first = sets.sort_values(["component", "length", "id"], kind="stable").drop_duplicates("component")
    name_of = np.empty(int(component.max()) + 1 if len(component) else 0, dtype=object)
    name_of[first["component"].to_numpy()] = first["id"].to_numpy(dtype=object)
    return name_of[component[:n_sets]][set_codes].astype(str)


def add_cost_column(panel: pd.DataFrame, unit_cost_by_outcome: dict[str, float]) -> pd.DataFrame:
    """Add `cost_gbp`: the month's activity priced at the given unit cost per outcome."""
    df = panel.copy()
    df["cost_gbp"] = 0.0
    for outcome, cost in unit_cost_by_outcome.items():
        df["cost_gbp"] += df[outcome] * float(cost)
    return df


def cohort_counts(panel: pd.DataFrame) -> dict[str, int]:
    persons = panel.drop_duplicates(["matched_set_id", "person_id"])
    return {
        "matched_sets": int(panel["matched_set_id"].nunique()),
        "treated_persons": int((persons["is_treated"] == 1).sum()),
        "control_persons": int((persons["is_treated"] == 0).sum()),
        "person_months": int(len(panel)),
    }


def data_period(panel: pd.DataFrame) -> dict[str, str | None]:
    out: dict[str, str | None] = {"first_index_month": None, "last_index_month": None,
                                  "first_calendar_month": None, "last_calendar_month": None}
    for col, lo, hi in (("index_month", "first_index_month", "last_index_month"),
                        ("calendar_month", "first_calendar_month", "last_calendar_month")):
        if col in panel.columns and panel[col].notna().any():
            s = pd.to_datetime(panel[col])
            out[lo] = s.min().strftime("%Y-%m")
            out[hi] = s.max().strftime("%Y-%m")
    return out
