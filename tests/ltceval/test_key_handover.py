"""``ltceval run`` and the key (issue 15, defect 8 and the key's exposure): the key is checked
with the zone's own rules before anything starts, a key given to Airflow through the
environment is not shadowed by a generated one, a key file readable by others is warned
about, and only the identifiable-zone DAG's process is given the key."""
from __future__ import annotations

import pytest

from core.assets import CHAIN, IDENTIFIABLE_ZONE
from core.keys import KEY_CHANNEL_ENVS, PseudoKeyError
from core.settings import Paths
from ltceval.run import airflow_env, ensure_key, step_env

SECRET = "7f3a9c2e1b6d4058a1e9c3b7d2f60e84c5a1"


@pytest.fixture
def base(tmp_path, monkeypatch):
    for k in KEY_CHANNEL_ENVS:
        monkeypatch.delenv(k, raising=False)
    paths = Paths(tmp_path / "out")
    return paths, airflow_env(paths)


@pytest.mark.parametrize("channel", ["LTCEVAL_PSEUDO_KEY", "AIRFLOW_VAR_LTCEVAL_PSEUDO_KEY", "file"])
def test_a_weak_key_stops_the_run_before_anything_starts(base, tmp_path, capsys, channel):
    paths, env = base
    weak = " " * 34
    if channel == "file":
        (tmp_path / "key").write_text(weak)
        env["LTCEVAL_PSEUDO_KEY_FILE"] = str(tmp_path / "key")
    else:
        env[channel] = weak
    with pytest.raises(PseudoKeyError, match="too short"):
        ensure_key(paths, env)
    assert not (paths.out / "secrets").exists()  # no key made in its place


def test_a_key_given_to_airflow_is_not_shadowed_by_a_generated_one(base):
    """A generated key file took precedence over AIRFLOW_VAR_LTCEVAL_PSEUDO_KEY: the run
    pseudonymised under a random key."""
    paths, env = base
    env["AIRFLOW_VAR_LTCEVAL_PSEUDO_KEY"] = f"  {SECRET}\n"
    ensure_key(paths, env)
    assert "LTCEVAL_PSEUDO_KEY_FILE" not in env and not (paths.out / "secrets").exists()
    env.pop("AIRFLOW_VAR_LTCEVAL_PSEUDO_KEY")
    env["AIRFLOW_CONN_LTCEVAL_PSEUDO_KEY"] = '{"conn_type": "generic", "password": "..."}'
    ensure_key(paths, env)
    assert "LTCEVAL_PSEUDO_KEY_FILE" not in env
    env.pop("AIRFLOW_CONN_LTCEVAL_PSEUDO_KEY")
    ensure_key(paths, env)  # nothing given: a random local key, 0600 in a 0700 folder
    key_file = paths.out / "secrets" / "pseudonymisation.key"
    assert env["LTCEVAL_PSEUDO_KEY_FILE"] == str(key_file)
    assert key_file.stat().st_mode & 0o777 == 0o600 and key_file.parent.stat().st_mode & 0o777 == 0o700


def test_a_key_file_readable_by_others_is_warned_about_never_shown(base, tmp_path, capsys):
    paths, env = base
    key_file = tmp_path / "key"
    key_file.write_text(SECRET + "\n")
    key_file.chmod(0o644)
    env["LTCEVAL_PSEUDO_KEY_FILE"] = str(key_file)
    ensure_key(paths, env)
    err = capsys.readouterr().err
    assert f"ltceval: warning: the pseudonymisation key file {key_file} can be read or changed by its group and " \
           f"others (mode 0644)" in err and SECRET not in err
    key_file.chmod(0o600)
    ensure_key(paths, env)
    assert capsys.readouterr().err == ""


def test_only_the_identifiable_zone_dag_gets_the_key(base):
    """The analytical and evaluation DAGs, the migration and the generator never need it."""
    paths, env = base
    for k in KEY_CHANNEL_ENVS:
        env[k] = "set"
    assert {k: step_env(env, IDENTIFIABLE_ZONE.dag_id)[k] for k in KEY_CHANNEL_ENVS} == dict.fromkeys(KEY_CHANNEL_ENVS,
                                                                                                        "set")
    for dag_id in [link.dag_id for link in CHAIN if link is not IDENTIFIABLE_ZONE] + [None]:
        stepped = step_env(env, dag_id)
        assert not set(KEY_CHANNEL_ENVS) & set(stepped), dag_id
        assert stepped["LTCEVAL_OUT"] == env["LTCEVAL_OUT"] and stepped["AIRFLOW_HOME"] == env["AIRFLOW_HOME"]


def test_only_the_identifiable_zone_dag_gets_the_database_sources_credentials(base, tmp_path):
    """A database source's URL variable (or the Airflow Connection in the environment) goes
    where the extracts are read, and nowhere else."""
    import yaml

    from identifiable_zone.database_extracts import credential_variables
    from identifiable_zone.sources import DEFAULT_SOURCES_CONFIG, load_sources_config

    raw = yaml.safe_load(DEFAULT_SOURCES_CONFIG.read_text())
    for table, how in {"ecds": {"url_env": "SUS_WAREHOUSE_URL", "table": "ecds"},
                       "apc": {"url_env": "SUS_WAREHOUSE_URL", "table": "apc"},
                       "gp_patients": {"connection": "gp_store", "query": "SELECT * FROM patients"}}.items():
        raw["sources"][table].pop("file")
        raw["sources"][table]["database"] = how
    (tmp_path / "db.yml").write_text(yaml.safe_dump(raw))
    zone_only = credential_variables(load_sources_config(tmp_path / "db.yml"))
    assert sorted(zone_only) == ["AIRFLOW_CONN_GP_STORE", "SUS_WAREHOUSE_URL"]
    paths, env = base
    env.update(dict.fromkeys(zone_only, "postgresql://u:p@h/db"))
    assert set(zone_only) <= set(step_env(env, IDENTIFIABLE_ZONE.dag_id, zone_only))
    for dag_id in [link.dag_id for link in CHAIN if link is not IDENTIFIABLE_ZONE] + [None]:
        assert not set(zone_only) & set(step_env(env, dag_id, zone_only)), dag_id
