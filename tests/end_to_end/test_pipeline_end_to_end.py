"""The README's main command on its default population: three real DAG runs, a report, no identifiers out."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import duckdb
import pandas as pd
import pytest

from analytical_dag_runs import (DBT_GROUPS, MATCHING_TASK, PRODUCERS, is_dbt_task, last_run_task_states, node_task,
                                project_nodes)
from identifier_scan import tables_as_csv
from required_tools import require
from synthetic.identifiers import nhs_number_is_valid
from synthetic.names import WORD_LIST_SOURCE, dictionary_words

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
    period = json.loads((out / "analytical" / "current_run.json").read_text())["period"]
    report = out / "reports" / period / "business_case.html"  # published per data period
    assert report.exists() and str(report) in stdout
    assert (out / "reports" / "latest" / "business_case.html").read_bytes() == report.read_bytes()
    html = report.read_text()
    assert "<html" in html.lower() and "naive" in html.lower()
    assert (out / "reports" / "latest" / "ig_report.html").exists()
    with duckdb.connect(str(out / "analytical" / "warehouse.duckdb"), read_only=True) as con:
        n_panel = con.execute("select count(*) from mart_evaluation_panel").fetchone()[0]
    assert n_panel > 0


@pytest.mark.slow
def test_every_dbt_node_was_a_task_of_the_analytical_run(run_out):
    """The analytical DAG under `dag.test()`: one `dbt build` a group (the producers) either side
    of the matching step, then a task per model, seed and model's tests, each reporting that its
    node built or passed."""
    out, _ = run_out
    states = last_run_task_states(out, "analytical_zone")
    models, seeds = project_nodes()
    assert all(node_task(states, m, "run") for m in models) and all(node_task(states, s, "seed") for s in seeds)
    dbt = {task: state for task, state in states.items() if is_dbt_task(task)}
    assert set(PRODUCERS) <= set(dbt) and sum(task.endswith(".test") for task in dbt) > 20
    assert set(dbt.values()) == {"success"}, {t: s for t, s in dbt.items() if s != "success"}
    assert states[MATCHING_TASK] == "success"


@pytest.mark.slow
def test_the_run_lists_the_dbt_project_once(run_out):
    """The project is listed once, beside the identifiable-zone DAG, into cosmos' dbt ls cache
    in the run's own metadata DB; the analytical DAG's process parses its file twice (its DagBag
    and dag.test()'s) from that cache; the other DAGs' processes never render it; the
    partial-parse file is the run's own (not /tmp/cosmos)."""
    out, _ = run_out
    logs = [(out / "logs" / f"{name}.log").read_text() for name in (
        "dbt-project-listing", "dag-identifiable_zone", "dag-analytical_zone", "dag-evaluation")]
    # each of the two dbt task groups has its own cached listing
    assert [log.count("using LoadMode.DBT_LS_CACHE") for log in logs] == [0, 0, 4, 0]
    assert [log.count("using LoadMode.DBT_LS ") for log in logs] == [2, 0, 0, 0]
    assert "tasks from the dbt project" in logs[0]
    assert "/tmp/cosmos" not in logs[0] + logs[2]
    for group in DBT_GROUPS:
        assert (out / "airflow" / "cosmos-cache" / f"analytical_zone__{group}" / "target" / "partial_parse.msgpack").is_file()


IDENTIFIER_COLUMNS = {  # NHS number, forename, surname, postcode of each identifiable extract
    "gp_patients": ["NHSNumber", "Forename", "Surname", "Postcode"],
    "iapt_ids001_mpi": ["NHSNumber", "PersonGivenName", "PersonFamilyName", "Postcode"],
    "ecds": ["NHS_Number", "Patient_Forename", "Patient_Surname", "Postcode"],
    "apc": ["NHS_Number", "Patient_Forename", "Patient_Surname", "Postcode"],
    "opa": ["NHS_Number", "Patient_Forename", "Patient_Surname", "Postcode"],
}


def _identifier_values(out):
    """NHS numbers, names and postcodes as they appear in the landing extracts."""
    values = set()
    for name, cols in IDENTIFIER_COLUMNS.items():
        df = pd.read_csv(out / "landing" / f"{name}.csv", dtype=str)
        for c in cols:
            values |= set(df[c].dropna())
    return values


def _file_text(path):
    """A file as text: XLSX workbooks unzipped, pickles and other binaries decoded byte for byte."""
    data = path.read_bytes()
    if path.suffix == ".xlsx":
        import io
        import zipfile

        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return "\n".join(z.read(n).decode("utf-8", errors="replace") for n in z.namelist())
    return data.decode("utf-8", errors="replace") if path.suffix != ".pkl" else data.decode("latin-1")


def _metadata_rows(out, query):
    """Rows of the embedded Airflow's metadata database, each as one text."""
    import sqlite3

    con = sqlite3.connect(str(out / "airflow" / "airflow.db"))
    try:
        rows = con.execute(query).fetchall()
    finally:
        con.close()
    return [" ".join(str(v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v) for v in r)
            for r in rows]


def _xcoms(out):
    """Every XCom value of the three DAG runs."""
    return _metadata_rows(out, "select dag_id, task_id, key, value from xcom")


def _variables(out):
    """Every Airflow Variable (cosmos keeps its dbt ls cache in one)."""
    return _metadata_rows(out, "select key, val from variable")


@pytest.mark.slow
def test_no_identifier_or_secret_leaves_the_identifiable_zone(run_out):
    """NHS numbers, names and postcodes from the input, and the pseudonymisation key itself,
    appear in no output, report, log (the runner's and Airflow's task logs), XCom or warehouse
    table; the key appears nowhere outside its own file."""
    out, stdout = run_out
    key = (out / "secrets" / "pseudonymisation.key").read_text().strip()
    assert len(key) >= 32
    identifiers = _identifier_values(out)
    surnames = {v for v in identifiers if v.isalpha() and len(v) >= 5}
    postcodes = {v for v in identifiers if re.fullmatch(r"[A-Z]{1,2}\d{1,2} \d[A-Z]{2}", v)}
    texts = [stdout, *tables_as_csv(out / "analytical" / "pseudonymised", out / "analytical" / "warehouse.duckdb")]
    # every output, report and log; the Airflow home too (task logs, cosmos' dbt cache)
    for folder in ("reports", "logs", "airflow", "analytical"):
        for path in (out / folder).rglob("*"):
            if path.is_file() and path.suffix not in (".parquet", ".duckdb", ".db", ".wal", ".lock"):
                texts.append(_file_text(path))
    xcoms = _xcoms(out)
    assert len(xcoms) >= 10 and any("key_fingerprint" in x for x in xcoms)
    texts += xcoms
    variables = _variables(out)
    assert any("cosmos" in v for v in variables)  # the dbt ls cache is scanned too
    texts += variables
    blob = "\n".join(texts)
    assert key not in blob, "the pseudonymisation key appears in an output, log or XCom"
    for path in out.rglob("*"):  # nor anywhere else in the run's folder, the identifiable zone included
        if path.is_file() and path.name != "pseudonymisation.key":
            assert key.encode() not in path.read_bytes(), f"the key is written in {path}"
    ten_digit = set(re.findall(r"(?<!\d)\d{10}(?!\d)", blob))
    valid = {n for n in ten_digit if nhs_number_is_valid([n])[0]}
    assert not (valid & identifiers), "an NHS number from the extracts left the identifiable zone"
    # inline images are base64 bytes, not text: upper-cased, their random letter runs can spell a
    # surname variant (seen: "bRoVn" -> BROVN), so the word and postcode scans skip them
    text = re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+", "data:<image>", blob)
    assert text.count("data:<image>") >= 10  # the report's figures were found and skipped
    # nor hex digests (pseudonyms, fingerprints, checksums: 12+ hex characters, a digit among
    # them): with a fresh key per run their letter runs can spell a surname variant made only of
    # A-F (seen in CI: FAAFAD)
    text, digests = re.subn(r"(?<![0-9A-Za-z])(?=[a-fA-F]*\d)[0-9a-fA-F]{12,}(?![0-9A-Za-z])", "<hex>", text)
    assert digests >= 1000  # the pseudonyms were found and skipped
    # the project's own prose names its Monte Carlo benchmark (monte_carlo.py), and CARLO is also
    # a surname in the extracts (seen in CI): that phrase is removed, CARLO elsewhere still counts
    text = re.sub(r"monte[ _-]carlo", "<mc>", text, flags=re.IGNORECASE)
    words = set(re.findall(r"[A-Z][A-Z']{4,}", text.upper()))
    # a surname that is also an ordinary word (GREEN, or MARGIN: a typo of MARTIN) cannot be told
    # from the project's own prose, so the scan looks for the others
    dictionary = require(WORD_LIST_SOURCE.exists() and WORD_LIST_SOURCE, "the word list", "wbritish")
    english_words = dictionary_words(dictionary) | {
        "GREEN", "WHITE", "YOUNG", "BROWN", "PRICE", "BAKER", "MASON", "PARKER", "TURNER", "CARTER",
        "FISHER", "KNIGHT", "BUTLER", "PALMER", "MARSHALL", "BARNES", "HOLMES", "COOPER", "JAMES"}
    leaked_names = surnames & words - english_words
    assert len(surnames - english_words) > 1000  # the scan still looks for most of the names
    assert not leaked_names, f"{len(leaked_names)} surnames found in analytical outputs"
    postcode_like = set(re.findall(r"[A-Z]{1,2}\d{1,2} \d[A-Z]{2}", text))
    assert not (postcode_like & postcodes), "a postcode left the identifiable zone"
    manifest = json.loads((out / "reports" / "latest" / "ig_report.json").read_text())
    assert "key_fingerprint" in json.dumps(manifest)
