"""`ltceval run` keeps cosmos' `dbt ls` of the analytical DAG in its metadata DB
(AIRFLOW__COSMOS__ENABLE_CACHE_DBT_LS): what makes that cache stale. The run's own use of it
is checked on a real run (tests/end_to_end)."""
import shutil

from core.settings import DBT_PROJECT_DIR


def test_a_changed_dbt_project_is_listed_again(tmp_path):
    """cosmos keys the cache on a hash of the project's files (and the dbt ls arguments and
    env): a changed model changes it; dbt's own output (target/, logs/) does not."""
    from cosmos.cache import _calculate_dbt_ls_cache_current_version as version

    project = shutil.copytree(DBT_PROJECT_DIR, tmp_path / "dbt_project",
                              ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    args = ["--vars", '{"matching_seed": 1}']
    before = version("k", project, args)
    (project / "target").mkdir()
    (project / "target" / "partial_parse.msgpack").write_bytes(b"x")
    assert version("k", project, args) == before
    model = next((project / "models").rglob("*.sql"))
    model.write_text(model.read_text() + "\n-- changed\n")
    assert version("k", project, args) != before
    assert version("k", project, ["--vars", '{"matching_seed": 2}']) != version("k", project, args)
