"""The pseudonymisation key is one key whichever channel brings it (issue 15, defect 8): a key
file, the environment, an Airflow Variable, an Airflow Connection (the last two through
Airflow's real environment secrets backend). Surrounding whitespace is stripped everywhere;
then at least 32 characters, 16 of them different. No message or log line shows the key."""
from __future__ import annotations

import json
import logging

import pytest

from core.errors import LtcevalError
from identifiable_zone import pseudonymise as ps

SECRET = "7f3a9c2e1b6d4058a1e9c3b7d2f60e84c5a1"  # 36 characters, 16 different
CHANNELS = ("environment", "file", "variable", "connection")
ALL = ("LTCEVAL_PSEUDO_KEY", "LTCEVAL_PSEUDO_KEY_FILE", "AIRFLOW_VAR_LTCEVAL_PSEUDO_KEY",
       "AIRFLOW_CONN_LTCEVAL_PSEUDO_KEY")


def give(monkeypatch, tmp_path, channel: str, value: str) -> None:
    """The key ``value`` through one channel only."""
    for k in ALL:
        monkeypatch.delenv(k, raising=False)
    if channel == "environment":
        monkeypatch.setenv("LTCEVAL_PSEUDO_KEY", value)
    elif channel == "file":
        f = tmp_path / "key"
        f.write_text(value, encoding="utf-8")
        f.chmod(0o600)
        monkeypatch.setenv("LTCEVAL_PSEUDO_KEY_FILE", str(f))
    elif channel == "variable":
        monkeypatch.setenv("AIRFLOW_VAR_LTCEVAL_PSEUDO_KEY", value)
    else:
        monkeypatch.setenv("AIRFLOW_CONN_LTCEVAL_PSEUDO_KEY", json.dumps({"conn_type": "generic", "password": value}))


@pytest.mark.parametrize("padded", [SECRET, f"{SECRET}\n", f"  {SECRET}\t", f"{SECRET}\r\n", f"\n{SECRET} "])
def test_one_secret_is_one_key_through_every_channel(monkeypatch, tmp_path, padded):
    """A pasted space or an editor's final line end does not make another key (the file was
    stripped and the environment and Airflow were not: one secret, two sets of pseudonyms)."""
    got = set()
    for channel in CHANNELS:
        give(monkeypatch, tmp_path, channel, padded)
        key, where = ps.load_key_with_source()
        got.add(key)
    assert got == {SECRET.encode()}


@pytest.mark.parametrize("weak, why", [
    (" " * 34, "too short"),
    ("\t\n " * 12, "too short"),
    ("a" * 40, "too weak"),
    ("ab" * 20, "too weak"),
    ("0123456789abcde" * 3, "too weak"),  # 45 characters, 15 different
    (" " * 10 + SECRET[:31] + " " * 10, "too short"),  # 51 with the blanks, 31 without
])
def test_blank_or_weak_key_is_refused_on_every_channel(monkeypatch, tmp_path, caplog, weak, why):
    caplog.set_level(logging.DEBUG)
    for channel in CHANNELS:
        give(monkeypatch, tmp_path, channel, weak)
        with pytest.raises(ps.PseudoKeyError) as e:
            ps.load_key()
        msg = str(e.value)
        assert why in msg and isinstance(e.value, LtcevalError), channel
        assert {"environment": "environment variable LTCEVAL_PSEUDO_KEY",
                "file": "key file named by LTCEVAL_PSEUDO_KEY_FILE",
                "variable": "Airflow Variable ltceval_pseudo_key",
                "connection": "Airflow Connection ltceval_pseudo_key"}[channel] in msg
        if weak.strip():
            assert weak.strip() not in msg and weak.strip() not in caplog.text


def test_blank_environment_key_is_refused_not_passed_over(monkeypatch, tmp_path):
    """34 spaces in LTCEVAL_PSEUDO_KEY were accepted as the key; passing over them to a key
    file would hide the mistake: refused."""
    give(monkeypatch, tmp_path, "file", SECRET)
    monkeypatch.setenv("LTCEVAL_PSEUDO_KEY", " " * 34)
    with pytest.raises(ps.PseudoKeyError, match="environment variable LTCEVAL_PSEUDO_KEY is too short"):
        ps.load_key()


def test_key_file_readable_by_others_is_used_with_a_warning(monkeypatch, tmp_path, caplog):
    give(monkeypatch, tmp_path, "file", SECRET + "\n")
    caplog.set_level(logging.WARNING, logger="identifiable_zone")
    assert ps.load_key() == SECRET.encode()
    assert caplog.text == ""  # 0600: nothing to say
    (tmp_path / "key").chmod(0o644)
    assert ps.load_key() == SECRET.encode()
    assert f"the pseudonymisation key file {tmp_path / 'key'} can be read or changed by its group and others " \
           f"(mode 0644); make it readable by the service only: chmod 600" in caplog.text
    assert SECRET not in caplog.text
