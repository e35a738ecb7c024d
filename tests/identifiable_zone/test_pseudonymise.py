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
