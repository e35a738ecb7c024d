"""What a finished chain must look like through the REST API: one successful run per DAG, each
after the first started by the Asset the one before published.

The chain itself (DAG ids, Asset names, their order) is core.assets.CHAIN, as the DAG files use it.
"""
from __future__ import annotations

from core.assets import CHAIN, IDENTIFIABLE_ZONE
from ops import StackError
from ops.airflow_api import ApiClient

DAG_IDS = tuple(link.dag_id for link in CHAIN)
ASSET_CHAIN = tuple(link.asset_name for link in CHAIN)
# which DAG publishes each asset of the chain, and which DAG it starts
ASSET_PRODUCER = dict(zip(ASSET_CHAIN, DAG_IDS))
ASSET_CONSUMER = dict(zip(ASSET_CHAIN[:-1], DAG_IDS[1:]))


def check_runs(api: ApiClient) -> dict:
    """What CI asserts, from the REST API alone: one successful run per DAG and the Asset chain.

    Returns {"runs": {dag_id: run}, "events": {asset_name: event}}; raises StackError otherwise.
    """
    runs = {}
    for dag_id in DAG_IDS:
        ok = [r for r in api.dag_runs(dag_id) if r["state"] == "success"]
        if not ok:
            raise StackError(f"{dag_id}: no successful DAG run ({api.dag_runs(dag_id)})")
        runs[dag_id] = ok[0]
    if runs[IDENTIFIABLE_ZONE.dag_id]["run_type"] != "manual":
        raise StackError(f"{IDENTIFIABLE_ZONE.dag_id} was not triggered by hand: "
                         f"run type {runs[IDENTIFIABLE_ZONE.dag_id]['run_type']}")
    for dag_id in DAG_IDS[1:]:
        if runs[dag_id]["run_type"] != "asset_triggered":
            raise StackError(f"{dag_id} was not started by its Asset: run type {runs[dag_id]['run_type']}")
    events = {}
    all_events = api.asset_events()
    for name in ASSET_CHAIN:
        mine = [e for e in all_events if e.get("name") == name]
        if not mine:
            raise StackError(f"no Asset event for {name}; events: {sorted({e.get('name') for e in all_events})}")
        ev = mine[-1]
        producer = ASSET_PRODUCER[name]
        if ev["source_dag_id"] != producer or ev["source_run_id"] != runs[producer]["dag_run_id"]:
            raise StackError(f"{name} event from {ev['source_dag_id']}/{ev['source_run_id']}, "
                             f"expected {producer}/{runs[producer]['dag_run_id']}")
        events[name] = ev
    # each event started the next DAG's run
    for name, consumer in ASSET_CONSUMER.items():
        created = {(d["dag_id"], d["run_id"]) for d in events[name]["created_dagruns"]}
        if (consumer, runs[consumer]["dag_run_id"]) not in created:
            raise StackError(f"{name} event did not create {consumer}/{runs[consumer]['dag_run_id']}: {created}")
    return {"runs": runs, "events": events}
