"""Every LTCEVAL_* variable the code reads is documented in core.settings.ENVIRONMENT."""
import re

from core.settings import ENVIRONMENT, REPO_ROOT

CODE = ("core", "ltceval", "identifiable_zone", "evaluation", "expectations", "synthetic", "dags", "ops")


def _names_in_code() -> set[str]:
    names = set()
    for d in CODE:
        for f in (REPO_ROOT / d).rglob("*.py"):
            names |= set(re.findall(r"[\"'](LTCEVAL_[A-Z0-9_]+)[\"']", f.read_text()))
    from evaluation.costing import CostingConfig

    class Recorder(dict):  # costing options are read as f"LTCEVAL_{name}"
        def get(self, key, default=None):
            names.add(key)
            return default

    CostingConfig.from_env(Recorder())
    return names


def test_every_variable_read_is_documented_and_every_documented_one_is_read():
    read = _names_in_code()
    assert read - set(ENVIRONMENT) == set()
    assert set(ENVIRONMENT) - read == set()
    assert all(len(text) > 20 for text in ENVIRONMENT.values())
