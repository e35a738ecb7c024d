import hashlib
import hmac

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from identifiable_zone import pseudonymise as ps

KEY = "k" * 20 + "-secret-test-key-value-0123"  # 47 characters


def test_pseudonym_is_hmac_sha256_deterministic_and_key_sensitive():
    k1, k2 = KEY.encode(), (KEY + "x").encode()
    p = ps.pseudonym("nhs:9434765919", k1)
    assert p == hmac.new(k1, b"nhs:9434765919", hashlib.sha256).hexdigest()
    assert p == ps.pseudonym("nhs:9434765919", k1)
    assert len(p) == 64 and p != ps.pseudonym("nhs:9434765919", k2)
    assert p != ps.pseudonym("nhs:9434765918", k1)
    keys = pd.Series(["a", "b", "a", None])
    out = ps.pseudonymise_keys(keys, k1)
    assert out[0] == out[2] != out[1] and out[3] is None


def test_fingerprint_is_not_the_key():
    fp = ps.key_fingerprint(KEY.encode())
    assert fp == hashlib.sha256(b"fingerprint:" + KEY.encode()).hexdigest()[:12]
    assert KEY not in fp and fp not in hashlib.sha256(KEY.encode()).hexdigest()


def test_key_from_env_and_file(monkeypatch, tmp_path):
    monkeypatch.delenv("LTCEVAL_PSEUDO_KEY_FILE", raising=False)
    monkeypatch.setenv("LTCEVAL_PSEUDO_KEY", KEY)
    assert ps.load_key() == KEY.encode()
    monkeypatch.delenv("LTCEVAL_PSEUDO_KEY")
    f = tmp_path / "key.txt"
    f.write_text(KEY + "\n")
    monkeypatch.setenv("LTCEVAL_PSEUDO_KEY_FILE", str(f))
    assert ps.load_key() == KEY.encode()


def test_missing_key_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("LTCEVAL_PSEUDO_KEY", raising=False)
    monkeypatch.delenv("LTCEVAL_PSEUDO_KEY_FILE", raising=False)
    monkeypatch.delenv("AIRFLOW_CTX_DAG_ID", raising=False)
    with pytest.raises(ps.PseudoKeyError, match="no pseudonymisation key"):
        ps.load_key()
    monkeypatch.setenv("LTCEVAL_PSEUDO_KEY_FILE", str(tmp_path / "absent.txt"))
    with pytest.raises(ps.PseudoKeyError, match="cannot read"):
        ps.load_key()


def test_short_key_error_never_shows_the_key(monkeypatch, tmp_path):
    short = "s3cr3t-but-short-Q7"
    monkeypatch.delenv("LTCEVAL_PSEUDO_KEY_FILE", raising=False)
    monkeypatch.setenv("LTCEVAL_PSEUDO_KEY", short)
    with pytest.raises(ps.PseudoKeyError) as e:
        ps.load_key()
    assert "at least 32" in str(e.value) and short not in str(e.value) and short not in repr(e.value)
    monkeypatch.delenv("LTCEVAL_PSEUDO_KEY")
    f = tmp_path / "key.txt"
    f.write_text(short)
    monkeypatch.setenv("LTCEVAL_PSEUDO_KEY_FILE", str(f))
    with pytest.raises(ps.PseudoKeyError) as e:
        ps.load_key()
    assert "too short" in str(e.value) and short not in str(e.value)


def test_atomic_swap_replaces_whole_folder(tmp_path):
    target = tmp_path / "analytical" / "pseudonymised"
    def publish(tables):
        with ps.publish_folder_atomically(target) as folder:
            for name, table in tables.items():
                pq.write_table(table, folder / f"{name}.parquet")

    publish({"a": pa.table({"x": [1]}), "b": pa.table({"x": [2]})})
    publish({"a": pa.table({"x": [3]})})
    assert sorted(p.name for p in target.iterdir()) == ["a.parquet"]
    assert pq.read_table(target / "a.parquet").column("x").to_pylist() == [3]
    assert [p.name for p in target.parent.iterdir()] == ["pseudonymised"]  # no temp leftovers
    with pytest.raises(ZeroDivisionError):  # a failure half way leaves the old set in place
        with ps.publish_folder_atomically(target) as folder:
            pq.write_table(pa.table({"x": [4]}), folder / "a.parquet")
            1 / 0
    assert pq.read_table(target / "a.parquet").column("x").to_pylist() == [3]
    assert [p.name for p in target.parent.iterdir()] == ["pseudonymised"]


def test_typed_output_keeps_missing_values_missing_and_types_each_column():
    import datetime

    df = pd.DataFrame({
        "day": pd.Series(["2020-01-02", None, "2024-02-29", "not a date"], dtype=object),
        "count": pd.Series(["1", None, "22", "-3"], dtype=object),
        "cost": pd.Series(["1.5", "2", None, "x"], dtype=object),
        "text": pd.Series(["a", None, float("nan"), "Zoë"], dtype=object),
        "rank": pd.Series([4, 3, 2, 1]),
    })
    t = ps.to_arrow(df, dates=["day"], numeric=["count", "cost"])
    assert t.schema.types == [pa.date32(), pa.int64(), pa.float64(), pa.string(), pa.int64()]
    assert t.column("day").to_pylist() == [datetime.date(2020, 1, 2), None, datetime.date(2024, 2, 29), None]
    assert t.column("count").to_pylist() == [1, None, 22, -3]
    assert t.column("cost").to_pylist() == [1.5, 2.0, None, None]
    assert t.column("text").to_pylist() == ["a", None, None, "Zoë"]
    keys = pd.Series(["p1", None, "p2", "p1", float("nan")], dtype=object)
    ids = ps.pseudonymise_keys(keys, b"k" * 32).tolist()
    assert ids[0] == ids[3] != ids[2] and ids[1] is None and ids[4] is None and len(ids[0]) == 64


def _person_table_in_pandas(spine: pd.DataFrame, links: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """The person table's rules written independently, record by record in Python: the most
    recent registration's values (latest start, a missing start earliest, ties to the larger
    record id), the earliest start, the latest end unless one is open, the latest death; the
    dates at month grain (the 15th of their month)."""
    from identifiable_zone import normalise as nz

    rows = []
    merged = spine.merge(links, left_on="PatientRecordId", right_on="record_id")
    for person_key, g in sorted(merged.groupby("person_key"), key=lambda kv: kv[0]):
        recs = [{k: None if pd.isna(v) else v for k, v in r.items()} for r in g.to_dict("records")]
        latest = max(recs, key=lambda r: (r["RegistrationStartDate"] is not None, r["RegistrationStartDate"] or "",
                                          r["PatientRecordId"]))
        dob = nz.parse_date(pd.Series([latest["DateOfBirth"]], dtype=object))[0]
        sex = nz.normalise_sex(pd.Series([latest["Sex"]], dtype=object))[0]
        starts = [r["RegistrationStartDate"] for r in recs if r["RegistrationStartDate"]]
        ends = [r["RegistrationEndDate"] for r in recs]
        deaths = [r["DateOfDeath"] for r in recs if r["DateOfDeath"]]

        def day(v):
            return None if v is None else pd.Timestamp(v).date().replace(day=ps.PERSON_DATES_DAY)
        rows.append({"person_id": ps.pseudonym(person_key, key), "sex": sex if sex in ("M", "F") else "U",
                     "year_of_birth": None if pd.isna(dob) else dob.year,
                     "month_of_birth": None if pd.isna(dob) else dob.month,
                     "ethnic_category": latest["EthnicCategory"], "lsoa11": latest["LSOA11"],
                     "practice_code": latest["PracticeCode"], "registration_start": day(min(starts, default=None)),
                     "registration_end": None if None in ends else day(max(ends)),
                     "date_of_death": day(max(deaths, default=None))})
    return pd.DataFrame(rows)


def test_person_table_takes_the_latest_registration_and_the_span_of_all(tmp_path):
    """DuckDB's person table equals an independent per-person implementation on a spine with
    the awkward cases: several records per person, a missing start, two records starting the
    same day, an open registration beside closed ones, sex written many ways, no birth date."""
    import duckdb

    from identifiable_zone.sources import load_sources_config

    spine = pd.DataFrame([
        # PatientRecordId, DateOfBirth, Sex, LSOA11, EthnicCategory, PracticeCode, start, end, death
        ("r1", "1950-03-04", "M", "E01", "A", "P1", "2001-01-01", "2010-05-05", None),
        ("r2", "1950-03-04", "male", "E02", "B", "P2", "2011-01-01", None, None),  # same person, later, open
        ("r3", "1980-12-31", " f ", "E03", "C", "P3", None, "2005-01-01", None),  # missing start: earliest
        ("r4", "1980-12-31", "2", "E04", "D", "P4", "2003-02-02", "2004-01-01", "2020-06-01"),
        ("r5", None, "9", "E05", None, "P5", "2015-07-07", "2016-07-07", None),
        ("r6", None, None, "E06", "F", "P6", "2015-07-07", "2017-01-01", "2019-01-01"),  # same start as r5
        ("r7", "2000-01-01", "X", None, "G", "P7", None, None, None),
    ], columns=["PatientRecordId", "DateOfBirth", "Sex", "LSOA11", "EthnicCategory", "PracticeCode",
                "RegistrationStartDate", "RegistrationEndDate", "DateOfDeath"])
    links = pd.DataFrame({"record_id": ["r1", "r2", "r3", "r4", "r5", "r6", "r7"],
                          "person_key": ["nhs:1", "nhs:1", "gp:r3", "gp:r3", "nhs:5", "nhs:5", "gp:r7"]})
    spine_file, links_file = tmp_path / "gp_patients.parquet", tmp_path / "record_person.parquet"
    pq.write_table(pa.Table.from_pandas(spine, preserve_index=False), spine_file)
    pq.write_table(pa.table({"source": ["gp_patients"] * len(links), "record_id": links["record_id"],
                             "person_key": links["person_key"]}), links_file)
    key = b"k" * 32
    with duckdb.connect() as con:
        ps._register_person_ids(con, links_file, key)
        persons = ps._write_person_table(con, spine_file, load_sources_config()["gp_patients"], links_file,
                                         tmp_path / "person.parquet")
    got = pq.read_table(tmp_path / "person.parquet")
    want = _person_table_in_pandas(spine, links, key)
    assert persons == got.num_rows == 4
    assert got.to_pylist() == want.astype(object).where(want.notna(), None).to_dict("records")
    assert got.schema.types == [pa.string(), pa.string(), pa.int64(), pa.int64(), pa.string(), pa.string(),
                                pa.string(), pa.date32(), pa.date32(), pa.date32()]
    first = got.to_pylist()[[ps.pseudonym(k, key) for k in ("gp:r3", "gp:r7", "nhs:1", "nhs:5")].index(
        ps.pseudonym("nhs:1", key))]
    assert first["practice_code"] == "P2" and first["registration_end"] is None  # latest, and still open
