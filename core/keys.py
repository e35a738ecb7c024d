"""The pseudonymisation key's one normalisation, for every channel it can come through (a key
file, the environment, an Airflow Variable, an Airflow Connection): one secret, one set of
pseudonyms. Here, not in the identifiable zone, so that ``ltceval run`` can check a key before
it starts anything (without importing the zone's data stack). Messages name where the key came
from, never the key."""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from core.errors import LtcevalError
from core.settings import KEY_ENV, KEY_FILE_ENV


MIN_KEY_LENGTH = 32
MIN_KEY_DISTINCT = 16  # "a" * 40 or a run of spaces is not a secret
AIRFLOW_KEY_VARIABLE = "ltceval_pseudo_key"  # the Airflow Variable holding the key
AIRFLOW_KEY_CONNECTION = "ltceval_pseudo_key"  # the Airflow Connection whose password is the key
# the key's channels in an environment (Airflow's environment secrets backend reads the last two)
AIRFLOW_KEY_VARIABLE_ENV = f"AIRFLOW_VAR_{AIRFLOW_KEY_VARIABLE.upper()}"
AIRFLOW_KEY_CONNECTION_ENV = f"AIRFLOW_CONN_{AIRFLOW_KEY_CONNECTION.upper()}"
KEY_CHANNEL_ENVS = (KEY_ENV, KEY_FILE_ENV, AIRFLOW_KEY_VARIABLE_ENV, AIRFLOW_KEY_CONNECTION_ENV)


def new_key() -> str:
    """A new random key: 64 characters of a 64-symbol alphabet (384 bits). 64 random hex digits
    miss one of their 16 symbols about one time in four, and would then fail the distinct-characters rule."""
    return secrets.token_urlsafe(48)


def without_key(env: dict[str, str]) -> dict[str, str]:
    """``env`` with every variable that carries the key, or names where it is, left out: for
    the processes that never pseudonymise (the analytical and evaluation DAGs, the metadata
    database's migration, the synthetic generator)."""
    return {k: v for k, v in env.items() if k not in KEY_CHANNEL_ENVS}


class PseudoKeyError(LtcevalError):
    """The pseudonymisation key is missing, unreadable or too weak (message never contains the key)."""


def normalise_key(raw: str | bytes | None, where: str) -> bytes | None:
    """The key as bytes: surrounding whitespace stripped (an editor's final line end, a pasted
    space: a key file was stripped and the environment was not, so one secret gave two sets of
    pseudonyms), then at least ``MIN_KEY_LENGTH`` characters, ``MIN_KEY_DISTINCT`` of them
    different. None when ``raw`` is None (not set); ``where`` names the channel in errors."""
    if raw is None:
        return None
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PseudoKeyError(f"the pseudonymisation key from the {where} is not UTF-8 text") from None
    key = raw.strip()
    if len(key) < MIN_KEY_LENGTH:
        raise PseudoKeyError(f"the pseudonymisation key from the {where} is too short: it must be at least "
                             f"{MIN_KEY_LENGTH} characters (surrounding whitespace does not count)")
    if len(set(key)) < MIN_KEY_DISTINCT:
        raise PseudoKeyError(f"the pseudonymisation key from the {where} is too weak: it must hold at least "
                             f"{MIN_KEY_DISTINCT} different characters (e.g. python3 -c \"import secrets; print(secrets.token_urlsafe(48))\")")
    return key.encode("utf-8")


def read_key_file(path: Path, where: str) -> str:
    """A key file's text; a PseudoKeyError naming ``where`` (not the key) when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PseudoKeyError(f"cannot read the {where} ({type(e).__name__})") from None


def key_file_exposure(path: Path) -> str | None:
    """A warning when a key file can be read by its group or by others (it should be 0600 or
    0400, owned by the service), else None. Names the file and its mode, never the key."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return None
    who = " and ".join(w for w, bits in (("its group", stat.S_IRWXG), ("others", stat.S_IRWXO)) if mode & bits)
    return (f"the pseudonymisation key file {path} can be read or changed by {who} (mode "
            f"{stat.S_IMODE(mode):04o}); make it readable by the service only: chmod 600 {path}")
