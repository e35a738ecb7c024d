-- The linkage thresholds of the sensitivity (source linkage.linkage_scenarios): main (the
-- configured fixed threshold), stricter and looser, each with the expected precision of the
-- probabilistic links accepted at it. No counts. No rows when the identifiable zone had no
-- linkage sensitivity to publish: the report then says it is unavailable.
select
    cast(scenario as {{ dbt.type_string() }})  as scenario,
    cast(target_expected_precision as double)  as target_expected_precision,
    cast(threshold as double)                  as threshold,
    cast(expected_precision as double)         as expected_precision
from {{ source('linkage', 'linkage_scenarios') }}
