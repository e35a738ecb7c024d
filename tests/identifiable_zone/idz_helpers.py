"""Helpers shared by the identifiable-zone tests: one run of the whole zone."""
import shutil

import pytest

from identifiable_zone import pipeline
from core.settings import Paths

RUN_PERSONS = 3000  # the quality targets are stated for a ~3000-person population
KEY = "e2e-test-key-" + "0123456789abcdef" * 2


def run_zone(out, key=KEY, config_path=None, run_id="test-run", model=None, key_env="LTCEVAL_PSEUDO_KEY"):
    """validate -> link -> publish -> IG report, the key given through ``key_env`` only."""
    paths = Paths(out)
    mp = pytest.MonkeyPatch()
    for k in ("LTCEVAL_PSEUDO_KEY", "LTCEVAL_PSEUDO_KEY_FILE", "LTCEVAL_LINKAGE_MODEL",
              "AIRFLOW_VAR_LTCEVAL_PSEUDO_KEY", "AIRFLOW_CONN_LTCEVAL_PSEUDO_KEY"):
        mp.delenv(k, raising=False)
    mp.setenv(key_env, key)
    try:
        results = {
            "validate": pipeline.validate_all(paths, run_id=run_id, config_path=config_path),
            "link": pipeline.link_all(paths, config_path=config_path, model=model),
            "publish": pipeline.pseudonymise_and_publish(paths, config_path=config_path),
            "report": pipeline.write_ig_report(paths),
        }
    finally:
        mp.undo()
    return paths, results


def copy_landing(src, dst):
    shutil.copytree(src / "landing", dst / "landing")
    shutil.copytree(src / "ground_truth", dst / "ground_truth")
    return dst
