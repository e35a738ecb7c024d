"""Bad input to the CLI gives one line on stderr and a non-zero exit, never a traceback."""
import subprocess
import sys

import pytest


def ltceval(*args):
    return subprocess.run([sys.executable, "-m", "ltceval.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [
    ["synth", "--persons", "100"],  # missing --out
    ["synth", "--persons", "-5", "--out", "x"],
    ["synth", "--persons", "10", "--out", "x", "--no-such-option"],
    ["synth", "--persons", "10", "--out", "x", "--chunk-persons", "1500"],  # not whole random-stream blocks
    ["synth", "--persons", "10", "--out", "x", "--mps", "--upstream-pseudonymised"],
    ["no-such-command"],
    ["run", "--config", "/nonexistent/sources.yml"],
])
def test_bad_input_is_one_line_and_non_zero(args):
    proc = ltceval(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ltceval: error:"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_output_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = ltceval("synth", "--persons", "200", "--out", str(blocker / "sub"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "a-file" in lines[0] and "Traceback" not in proc.stderr


def test_synth_writes_what_it_says(tmp_path):
    proc = ltceval("synth", "--persons", "300", "--seed", "2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "landing" / "iapt_ids101_referral.csv").exists()
    assert (tmp_path / "ground_truth" / "record_person.parquet").exists()


def test_synth_mps_writes_the_fields_and_a_config_that_reads_them(tmp_path):
    import pandas as pd

    from identifiable_zone.sources import load_sources_config

    proc = ltceval("synth", "--persons", "300", "--seed", "2", "--mps", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    cfg = load_sources_config(tmp_path / "sources_mps.yml")
    for src in ("ecds", "apc", "opa"):
        header = pd.read_csv(tmp_path / "landing" / f"{src}.csv", nrows=0).columns
        assert {"Person_ID", "Person_ID_Type", "MPS_Confidence"} <= set(header) and cfg[src].mps is not None
    assert str(tmp_path / "sources_mps.yml") in proc.stdout
