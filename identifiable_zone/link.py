"""Link person-identifier records of every source to persons on the GP spine.

1. Spine persons: ``gp_patients`` records are the spine. Records with the same valid NHS
   number and date of birth are one person (duplicate registrations collapse).
2. Each other source (IAPT MPI, ECDS, APC, OPA) is reduced to distinct identifier tuples
   (normalised NHS number, forename, surname, date of birth, sex, postcode); tuples are
   linked, then joined back to records.
3. Deterministic: valid (Modulus 11) NHS number equal to a spine record's and date of birth
   equal or day/month swapped, pointing at exactly one spine person.
4. Probabilistic (splink 5, DuckDB): a Fellegi-Sunter model on forename, surname (term
   frequency adjusted), date of birth, sex and postcode. u is estimated by random sampling
   and m by EM on blocking rules, trained on all source tuples against the spine (more
   evidence than the unmatched remainder alone); predictions are then made link_only between
   the tuples that the deterministic rule left unmatched and the spine. A tuple links to its
   best spine person at or above ``threshold``; ties between different persons stay
   unlinked.

Output rows carry the rule ('spine', 'deterministic_nhs_dob', 'probabilistic', 'unlinked')
and a match probability (1.0 for spine and deterministic links).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from identifiable_zone import normalise as nz
from identifiable_zone.sources import SPINE, SourceSpec

log = logging.getLogger(__name__)

ID_COLS = ["nhs", "forename", "surname", "dob", "sex", "postcode"]
DEFAULT_THRESHOLD = 0.95


@dataclass
class LinkResult:
    record_person: pd.DataFrame  # source, record_id, person_key, rule, match_probability, ...
    spine_persons: pd.DataFrame  # record_id, person_key (gp_patients)
    model: dict | None  # trained splink settings (no data values)
    summary: dict


def standardise_identifiers(df: pd.DataFrame, spec: SourceSpec) -> pd.DataFrame:
    """record_id + normalised identifiers of an accepted extract (dates already ISO)."""
    ids = spec.identifiers
    out = pd.DataFrame({"record_id": df[spec.record_id].astype(object)}, index=df.index)
    out["nhs"] = nz.valid_nhs_or_none(df[ids["nhs_number"]])
    out["forename"] = nz.normalise_name(df[ids["forename"]])
    out["surname"] = nz.normalise_name(df[ids["surname"]])
    out["dob"] = nz.date_to_iso(nz.parse_date(df[ids["dob"]]))
    sex = nz.normalise_sex(df[ids["sex"]])
    out["sex"] = sex.where(sex.isin(["M", "F"]), None)  # unknown sex carries no evidence
    out["postcode"] = nz.normalise_postcode(df[ids["postcode"]])
    return out.reset_index(drop=True)


def spine_persons(spine: pd.DataFrame) -> pd.DataFrame:
    """Collapse spine records into persons: same valid NHS number and date of birth.

    person_key is the canonical identifier later hashed into person_id: 'nhs:<number>' when
    that number belongs to one person only, 'nhs:<number>|dob:<date>' when the same number
    sits on spine records with different dates of birth, else 'gp:<record id>'."""
    s = spine[["record_id", "nhs", "dob"]].copy()
    has = s["nhs"].notna() & s["dob"].notna()
    s["cluster"] = np.where(has, "nhs:" + s["nhs"].fillna("") + "|dob:" + s["dob"].fillna(""),
                            "gp:" + s["record_id"].astype(str))
    clusters_per_nhs = s[has].groupby("nhs")["cluster"].nunique()
    multi = s["nhs"].map(clusters_per_nhs).fillna(0) > 1
    s["person_key"] = np.where(has & ~multi, "nhs:" + s["nhs"].fillna(""), s["cluster"])
    return s[["record_id", "person_key"]]


def _distinct_tuples(ids: pd.DataFrame, source: str) -> tuple[pd.DataFrame, pd.Series]:
    """Distinct identifier tuples of one source and, per record, its tuple id."""
    key = ids[ID_COLS].astype(object).where(ids[ID_COLS].notna(), "\x00").astype(str).agg("\x1f".join, axis=1)
    codes, uniques = pd.factorize(key)
    tuple_id = pd.Series([f"{source}|{c}" for c in codes], index=ids.index)
    first = ids.groupby(codes, sort=True).head(1).copy()
    first["tuple_id"] = tuple_id.loc[first.index].to_numpy()
    first["source"] = source
    return first[["tuple_id", "source"] + ID_COLS].reset_index(drop=True), tuple_id


def deterministic_links(tuples: pd.DataFrame, spine_ids: pd.DataFrame, persons: pd.DataFrame) -> pd.DataFrame:
    """tuple_id -> person_key where the valid NHS number equals a spine record's and the date
    of birth is equal or day/month swapped, and exactly one spine person qualifies."""
    sp = spine_ids[["record_id", "nhs", "dob"]].merge(persons, on="record_id")
    sp = sp[sp["nhs"].notna() & sp["dob"].notna()]
    sp_dt = nz.parse_date(sp["dob"])
    sp = sp.assign(dob_swapped=nz.date_to_iso(nz.swap_day_month(sp_dt)).to_numpy())
    left = tuples[tuples["nhs"].notna() & tuples["dob"].notna()][["tuple_id", "nhs", "dob"]]
    m = left.merge(sp, on="nhs", suffixes=("", "_spine"))
    m = m[(m["dob"] == m["dob_spine"]) | (m["dob"] == m["dob_swapped"])]
    n_persons = m.groupby("tuple_id")["person_key"].nunique()
    unique_ids = n_persons[n_persons == 1].index
    return m[m["tuple_id"].isin(unique_ids)].drop_duplicates("tuple_id")[["tuple_id", "person_key"]]


def splink_settings():
    from splink import SettingsCreator, block_on
    import splink.comparison_library as cl

    return SettingsCreator(
        link_type="link_only",
        unique_id_column_name="unique_id",
        comparisons=[
            cl.NameComparison("forename"),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.ExactMatch("sex"),
            cl.PostcodeComparison("postcode"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("dob"),
            block_on("forename", "surname"),
            block_on("surname", "postcode"),
            block_on("nhs"),
        ],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


def _splink_frame(df: pd.DataFrame, id_col: str) -> pd.DataFrame:
    out = df[[id_col] + ID_COLS].rename(columns={id_col: "unique_id"}).copy()
    for c in out.columns:
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out.astype({c: "string" for c in out.columns})


def train_model(all_tuples: pd.DataFrame, spine_ids: pd.DataFrame, seed: int = 1) -> dict:
    """Train the splink model on all source tuples against the spine; return its settings
    dict (parameters only: no record values)."""
    from splink import DuckDBAPI, Linker, block_on

    db = DuckDBAPI()
    left = db.register(_splink_frame(all_tuples, "tuple_id"), table_name="source_tuples")
    right = db.register(_splink_frame(spine_ids, "record_id"), table_name="spine")
    linker = Linker([left, right], splink_settings(), log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("forename", "surname", "dob")], recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=seed)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("forename", "surname"))
    return linker.misc.save_model_to_json()


def predict_links(unmatched: pd.DataFrame, spine_ids: pd.DataFrame, model: dict) -> pd.DataFrame:
    """Scored pairs (tuple_id, spine record_id, match_probability) for unmatched tuples."""
    from splink import DuckDBAPI, Linker

    if unmatched.empty:
        return pd.DataFrame({"tuple_id": [], "record_id": [], "match_probability": []})
    db = DuckDBAPI()
    left = db.register(_splink_frame(unmatched, "tuple_id"), table_name="unmatched_tuples")
    right = db.register(_splink_frame(spine_ids, "record_id"), table_name="spine")
    linker = Linker([left, right], model, log_level=logging.WARNING)
    pred = linker.inference.predict(threshold_match_probability=0.01).as_pandas_dataframe()
    if pred.empty:
        return pd.DataFrame({"tuple_id": [], "record_id": [], "match_probability": []})
    # link_only: one side is each input table; orient every pair as (tuple, spine record)
    l_is_tuple = pred["source_dataset_l"] == "unmatched_tuples"
    tuple_id = np.where(l_is_tuple, pred["unique_id_l"], pred["unique_id_r"])
    rec_id = np.where(l_is_tuple, pred["unique_id_r"], pred["unique_id_l"])
    return pd.DataFrame({"tuple_id": tuple_id, "record_id": rec_id,
                         "match_probability": pred["match_probability"].astype(float)})


def best_matches(pairs: pd.DataFrame, persons: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per tuple: best person and its probability; 'linked' when >= threshold and no other
    person scores the same."""
    if pairs.empty:
        return pd.DataFrame({"tuple_id": [], "person_key": [], "match_probability": [], "linked": []})
    p = pairs.merge(persons, on="record_id")
    p = p.groupby(["tuple_id", "person_key"], as_index=False)["match_probability"].max()
    p = p.sort_values(["tuple_id", "match_probability"], ascending=[True, False])
    top = p.groupby("tuple_id").head(2).copy()
    top["rank"] = top.groupby("tuple_id").cumcount()
    first = top[top["rank"] == 0].set_index("tuple_id")
    second = top[top["rank"] == 1].set_index("tuple_id")["match_probability"]
    first["second"] = second.reindex(first.index)
    tie = first["second"].notna() & (first["second"] >= first["match_probability"])
    first["linked"] = (first["match_probability"] >= threshold) & ~tie
    return first.reset_index()[["tuple_id", "person_key", "match_probability", "linked"]]


def link_sources(identifier_frames: dict[str, pd.DataFrame], threshold: float = DEFAULT_THRESHOLD,
                 seed: int = 1, model: dict | None = None) -> LinkResult:
    """Link standardised identifier frames (see standardise_identifiers), keyed by source,
    which must include the spine. Returns one row per record of every source."""
    spine_ids = identifier_frames[SPINE]
    persons = spine_persons(spine_ids)
    out = [persons.assign(source=SPINE, rule="spine", match_probability=1.0)]

    tuples, record_tuple = [], []
    for source, ids in identifier_frames.items():
        if source == SPINE:
            continue
        t, tid = _distinct_tuples(ids, source)
        tuples.append(t)
        record_tuple.append(pd.DataFrame({"source": source, "record_id": ids["record_id"].to_numpy(),
                                          "tuple_id": tid.to_numpy()}))
    if not tuples:
        rp = pd.concat(out, ignore_index=True)
        return LinkResult(rp, persons, model, {"tuples": 0})
    tuples = pd.concat(tuples, ignore_index=True)
    record_tuple = pd.concat(record_tuple, ignore_index=True)

    det = deterministic_links(tuples, spine_ids, persons)
    unmatched = tuples[~tuples["tuple_id"].isin(det["tuple_id"])]
    if model is None:
        model = train_model(tuples, spine_ids, seed=seed)
    pairs = predict_links(unmatched, spine_ids, model)
    best = best_matches(pairs, persons, threshold)

    det_map = det.set_index("tuple_id")["person_key"]
    prob = best[best["linked"]].set_index("tuple_id")
    cand = best.set_index("tuple_id")["match_probability"]
    tid = tuples["tuple_id"]
    is_det = tid.isin(det_map.index).to_numpy()
    is_prob = ~is_det & tid.isin(prob.index).to_numpy()
    unl = ~is_det & ~is_prob
    person_key = np.full(len(tid), None, dtype=object)
    person_key[is_det] = tid[is_det].map(det_map).to_numpy(dtype=object)
    person_key[is_prob] = tid[is_prob].map(prob["person_key"]).to_numpy(dtype=object)
    prob_col = np.ones(len(tid), dtype=float)
    prob_col[is_prob] = tid[is_prob].map(prob["match_probability"]).to_numpy(dtype=float)
    # unlinked tuples keep their best candidate's probability (0 when none was scored)
    prob_col[unl] = tid[unl].map(cand).astype(float).fillna(0.0).to_numpy(dtype=float)
    rule = np.where(is_det, "deterministic_nhs_dob", np.where(is_prob, "probabilistic", "unlinked"))
    links = pd.DataFrame({"tuple_id": tid.to_numpy(), "person_key": person_key, "rule": rule,
                          "match_probability": prob_col})

    rp = record_tuple.merge(links, on="tuple_id", how="left").drop(columns="tuple_id")
    out.append(rp)
    record_person = pd.concat(out, ignore_index=True)[
        ["source", "record_id", "person_key", "rule", "match_probability"]]
    record_person["match_probability"] = record_person["match_probability"].astype(float)
    summary = {
        "spine_records": int(len(persons)), "spine_persons": int(persons["person_key"].nunique()),
        "source_records": int(len(record_tuple)), "distinct_tuples": int(len(tuples)),
        "deterministic_tuples": int(len(det)), "probabilistic_tuples": int(is_prob.sum()),
        "unlinked_tuples": int(unl.sum()), "scored_pairs": int(len(pairs)), "threshold": threshold,
    }
    return LinkResult(record_person, persons, model, summary)


def linkage_metrics(record_person: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Precision and recall of record -> spine-person links against ground truth
    (source, record_id, true_person_id). A link is correct when the linked spine person's
    records belong to the record's true person. Recall's denominator: non-spine records whose
    true person has a spine record. Also reports spine clusters that merge different people."""
    t = truth[["source", "record_id", "true_person_id"]]
    rp = record_person.merge(t, on=["source", "record_id"], how="left")
    spine = rp[rp["source"] == SPINE]
    key_truth = spine.groupby("person_key")["true_person_id"].agg(lambda s: set(s))
    impure = int((key_truth.map(len) > 1).sum())
    true_to_keys = spine.groupby("true_person_id")["person_key"].nunique()
    other = rp[rp["source"] != SPINE].copy()
    linked = other[other["person_key"].notna()]
    correct = linked.apply(lambda r: key_truth.get(r["person_key"], set()) == {r["true_person_id"]}, axis=1)
    linkable = other["true_person_id"].isin(spine["true_person_id"])
    n_correct = int(correct.sum())
    by_rule = {}
    for rule, grp in linked.assign(correct=correct.to_numpy()).groupby("rule"):
        by_rule[rule] = {"links": int(len(grp)), "wrong": int((~grp["correct"]).sum())}
    return {
        "precision": n_correct / len(linked) if len(linked) else 1.0,
        "recall": n_correct / int(linkable.sum()) if linkable.any() else 1.0,
        "links": int(len(linked)), "correct": n_correct, "linkable": int(linkable.sum()),
        "unlinked_linkable": int((linkable & other["person_key"].isna()).sum()),
        "spine_impure_clusters": impure,
        "spine_persons_split": int((true_to_keys > 1).sum()),
        "by_rule": by_rule,
    }
