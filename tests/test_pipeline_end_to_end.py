"""The README's main command on its default population: three real DAG runs, a report, no identifiers out."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import duckdb
import pandas as pd
import pytest

from synthetic.identifiers import nhs_number_is_valid

PERSONS = 20_000  # the default: balance gates (SMD < 0.1) need a cohort of this size


@pytest.fixture(scope="module")
def run_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    proc = subprocess.run([sys.executable, "-m", "ltceval.cli", "run", "--persons", str(PERSONS), "--seed", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


@pytest.mark.slow
def test_run_produces_the_reports(run_out):
    out, stdout = run_out
    report = out / "reports" / "business_case.html"
    assert report.exists() and str(report) in stdout
    html = report.read_text()
    assert "<html" in html.lower() and "naive" in html.lower()
    assert (out / "reports" / "ig_report.html").exists()
    with duckdb.connect(str(out / "analytical" / "warehouse.duckdb"), read_only=True) as con:
        n_panel = con.execute("select count(*) from mart_evaluation_panel").fetchone()[0]
    assert n_panel > 0


def _identifier_values(out):
    """NHS numbers, names and postcodes as they appear in the landing extracts."""
    values = set()
    for name, cols in {"gp_patients": ["NHSNumber", "Surname", "Postcode"],
                       "ecds": ["NHS_Number", "Patient_Surname", "Postcode"]}.items():
        df = pd.read_csv(out / "landing" / f"{name}.csv", dtype=str)
        for c in cols:
            values |= set(df[c].dropna())
    return values


@pytest.mark.slow
def test_no_identifier_leaves_the_identifiable_zone(run_out):
    out, stdout = run_out
    identifiers = _identifier_values(out)
    surnames = {v for v in identifiers if v.isalpha() and len(v) >= 5}
    postcodes = {v for v in identifiers if re.fullmatch(r"[A-Z]{1,2}\d{1,2} \d[A-Z]{2}", v)}
    texts = [stdout]
    for path in (out / "analytical" / "pseudonymised").glob("*.parquet"):
        df = pd.read_parquet(path)
        texts.append(df.astype(str).to_csv(index=False))
    with duckdb.connect(str(out / "analytical" / "warehouse.duckdb"), read_only=True) as con:
        for (table,) in con.execute("select table_name from information_schema.tables").fetchall():
            texts.append(con.execute(f'select * from "{table}"').df().astype(str).to_csv(index=False))
    for path in (out / "reports").rglob("*"):
        if path.is_file() and path.suffix in (".html", ".json", ".csv"):
            texts.append(path.read_text(errors="replace"))
    for path in (out / "logs").rglob("*.log"):
        texts.append(path.read_text(errors="replace"))
    blob = "\n".join(texts)
    ten_digit = set(re.findall(r"(?<!\d)\d{10}(?!\d)", blob))
    valid = {n for n in ten_digit if nhs_number_is_valid([n])[0]}
    assert not (valid & identifiers), "an NHS number from the extracts left the identifiable zone"
    words = set(re.findall(r"[A-Z][A-Z']{4,}", blob.upper()))
    english_words = {"GREEN", "WHITE", "YOUNG", "BROWN", "PRICE", "BAKER", "MASON", "PARKER", "TURNER", "CARTER",
                     "FISHER", "KNIGHT", "BUTLER", "PALMER", "MARSHALL", "BARNES", "HOLMES", "COOPER", "JAMES"}
    leaked_names = surnames & words - english_words
    assert not leaked_names, f"{len(leaked_names)} surnames found in analytical outputs"
    postcode_like = set(re.findall(r"[A-Z]{1,2}\d{1,2} \d[A-Z]{2}", blob))
    assert not (postcode_like & postcodes), "a postcode left the identifiable zone"
    manifest = json.loads((out / "reports" / "ig_report.json").read_text())
    assert "key_fingerprint" in json.dumps(manifest)
