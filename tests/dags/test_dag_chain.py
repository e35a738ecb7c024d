"""DAG integrity: every DAG file imports, and the three DAGs are chained by Assets."""
import pytest

from core.assets import ANALYTICAL_ZONE, EVALUATION, IDENTIFIABLE_ZONE
from core.settings import DAGS_DIR


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_all_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {"identifiable_zone", "analytical_zone", "evaluation"} <= set(dagbag.dag_ids)


def _outlets(dag):
    return {o.uri for t in dag.tasks for o in (t.outlets or [])}


def test_assets_chain_the_zones(dagbag):
    ident, analytical, evaluation = (dagbag.dags[d] for d in ("identifiable_zone", "analytical_zone", "evaluation"))
    assert IDENTIFIABLE_ZONE.asset_uri in _outlets(ident)
    assert ANALYTICAL_ZONE.asset_uri in _outlets(analytical)
    assert EVALUATION.asset_uri in _outlets(evaluation)
    assert _schedule(analytical) == {IDENTIFIABLE_ZONE.asset_uri}
    assert _schedule(evaluation) == {ANALYTICAL_ZONE.asset_uri}


def _schedule(dag):
    return {a.uri for a in dag.timetable.asset_condition.objects}
