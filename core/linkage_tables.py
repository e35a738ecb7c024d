"""The two pseudonymised tables of the linkage sensitivity (docs/data-contracts.md section 3),
defined once: the identifiable zone publishes them from its links, the synthetic fixture (perfect
linkage) publishes them empty, and dbt reads them as sources. Always published, with no rows when
there is no sensitivity (upstream-pseudonymised extracts, or perfect links): every engine can
read a table that is there, not every engine can ask whether a file is."""
from __future__ import annotations

import pyarrow as pa

ALTERNATIVES = "linkage_alternatives"  # records whose person moves with the threshold
SCENARIOS = "linkage_scenarios"  # the thresholds of the main, stricter and looser links
SCENARIO_NAMES = ("main", "stricter", "looser")

ALTERNATIVES_SCHEMA = pa.schema([("table_name", pa.string()), ("record_id", pa.string()),
                                 ("person_id_stricter", pa.string()), ("person_id_looser", pa.string())])
SCENARIOS_SCHEMA = pa.schema([("scenario", pa.string()), ("target_expected_precision", pa.float64()),
                              ("threshold", pa.float64()), ("expected_precision", pa.float64())])


def scenarios_table(scenarios: dict | None) -> pa.Table:
    """``linkage_scenarios`` from ``identifiable_zone.link.threshold_scenarios``; no rows for None."""
    if not scenarios:
        return SCENARIOS_SCHEMA.empty_table()
    return pa.table({
        "scenario": list(SCENARIO_NAMES),
        "target_expected_precision": [scenarios[n]["target_expected_precision"] for n in SCENARIO_NAMES],
        "threshold": [float(scenarios[n]["threshold"]) for n in SCENARIO_NAMES],
        "expected_precision": [scenarios[n]["expected_precision"] for n in SCENARIO_NAMES]}, schema=SCENARIOS_SCHEMA)
