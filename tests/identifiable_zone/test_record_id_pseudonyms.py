"""Source record ids leave the zone only as keyed pseudonyms (issue 15, defect 3).

EC_Ident, APCS_Ident, ATTENDKEY, AppointmentId, ServiceRequestId, ConditionRecordId (and the
IAPT ids that point at them) are the source systems' own keys: published as they are, they join
back to the source and map a run's person ids onto another run's under a new key. Real zone runs
(GX, splink, DuckDB) on the small synthetic population.
"""
from __future__ import annotations

import shutil

import pandas as pd
import pytest

from core.settings import Paths
from idz_helpers import KEY, copy_landing, run_zone
from identifiable_zone import pipeline
from identifiable_zone.pseudonymise import record_pseudonym
from identifiable_zone.sources import load_sources_config

OTHER_KEY = "another-key-for-rotation-" + "fedcba9876543210" * 2


def test_record_pseudonym_is_keyed_and_domain_separated():
    key, other = KEY.encode(), OTHER_KEY.encode()
    assert record_pseudonym("EC_Ident", "X000123", key) == record_pseudonym("EC_Ident", "X000123", key)
    assert record_pseudonym("EC_Ident", "X000123", key) != record_pseudonym("APCS_Ident", "X000123", key)
    assert record_pseudonym("EC_Ident", "X000123", key) != record_pseudonym("EC_Ident", "X000123", other)
    assert "X000123" not in record_pseudonym("EC_Ident", "X000123", key)


@pytest.fixture(scope="module")
def zone(small_landing, tmp_path_factory):
    out = copy_landing(small_landing, tmp_path_factory.mktemp("record_ids"))
    paths, _ = run_zone(out)
    return paths


def _published(paths) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_parquet(p) for p in sorted(paths.pseudonymised.glob("*.parquet"))}


def _landing_record_ids(paths) -> set[str]:
    """Every record id (own or pointed at) of every person source, as the extracts hold them."""
    cfg = load_sources_config()
    ids = set()
    for spec in cfg.sources.values():
        if spec.reference:
            continue
        df = pd.read_csv(paths.landing / f"{spec.table}.csv", dtype=str, keep_default_na=False)
        for col in {spec.record_id, *spec.record_ids, *spec.parent}:
            ids |= set(df[col]) - {""}
    return ids


def test_no_source_record_id_appears_outside_the_zone(zone):
    ids = _landing_record_ids(zone)
    assert len(ids) > 10_000
    for name, df in _published(zone).items():
        for col in df.columns:
            values = set(df[col].dropna().astype(str))
            assert not values & ids, f"{name}.{col}: a source record id was published"
    # nor in the IG report or the run's summaries published beside it
    text = "\n".join(p.read_text(errors="replace") for p in zone.reports.rglob("*") if p.is_file())
    assert not any(i in text for i in ids)


def test_record_ids_are_the_keyed_pseudonyms_and_still_join(zone):
    cfg = load_sources_config()
    published = _published(zone)
    accepted = pd.read_parquet(zone.identifiable / "accepted" / "ecds.parquet", columns=["EC_Ident"])
    assert published["ecds"]["EC_Ident"].tolist() == [record_pseudonym("EC_Ident", v, KEY.encode())
                                                      for v in accepted["EC_Ident"]]
    # a foreign key shares its target's domain: contacts find their referral, activities their contact
    ref, cc, act = published["iapt_referral"], published["iapt_care_contact"], published["iapt_care_activity"]
    assert len(cc) and cc["ServiceRequestId"].isin(ref["ServiceRequestId"]).all()
    assert len(act) and act["CareContactId"].isin(cc["CareContactId"]).all()
    assert published["iapt_coded_scores"]["CareActId"].isin(act["CareActId"]).all()
    assert cfg["iapt_ids201_care_contact"].pseudonymised_columns["ServiceRequestId"] == "ServiceRequestId"


def _republish(paths, tmp_path, key, name) -> dict[str, pd.DataFrame]:
    """The same validated and linked state published again under ``key``."""
    copy = Paths(tmp_path / name)
    shutil.copytree(paths.out, copy.out)
    mp = pytest.MonkeyPatch()
    mp.setenv("LTCEVAL_PSEUDO_KEY", key)
    mp.delenv("LTCEVAL_PSEUDO_KEY_FILE", raising=False)
    try:
        pipeline.pseudonymise_and_publish(copy)
    finally:
        mp.undo()
    return _published(copy)


def test_a_new_key_changes_every_record_pseudonym_and_the_same_key_none(zone, tmp_path):
    cfg = load_sources_config()
    first = _published(zone)
    same = _republish(zone, tmp_path, KEY, "same")
    rotated = _republish(zone, tmp_path, OTHER_KEY, "rotated")
    assert first.keys() == same.keys() == rotated.keys()
    for name in first:
        pd.testing.assert_frame_equal(first[name], same[name])
    checked = 0
    for source, name in (("ecds", "ecds"), ("apc", "apc"), ("opa", "opa"), ("gp_appointments", "gp_appointments"),
                         ("gp_conditions", "gp_conditions"), ("iapt_ids101_referral", "iapt_referral"),
                         ("iapt_ids201_care_contact", "iapt_care_contact"), ("iapt_ids606_coded_scores", "iapt_coded_scores")):
        for col in cfg[source].pseudonymised_columns:
            old, new = first[name][col].dropna(), rotated[name][col].dropna()
            assert len(old) == len(new) > 0
            assert not set(old) & set(new), f"{name}.{col}: a pseudonym survived the new key"
            checked += 1
    assert checked >= 10
