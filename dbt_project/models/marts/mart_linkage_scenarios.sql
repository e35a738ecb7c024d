-- The linkage thresholds of the sensitivity (source linkage.linkage_scenarios): main (the
-- configured fixed threshold), stricter and looser, each with the expected precision of the
-- probabilistic links accepted at it. No counts. No rows when no linkage sensitivity was
-- published (macro linkage_alternatives_published): the report then says it is unavailable.
{%- set scenarios = source('linkage', 'linkage_scenarios') %}
{%- if linkage_alternatives_published() %}
select
    cast(scenario as {{ dbt.type_string() }})                  as scenario,
    cast(target_expected_precision as double)  as target_expected_precision,
    cast(threshold as double)                  as threshold,
    cast(expected_precision as double)         as expected_precision
from {{ scenarios }}
{%- else %}
select
    cast(null as {{ dbt.type_string() }}) as scenario,
    cast(null as double)  as target_expected_precision,
    cast(null as double)  as threshold,
    cast(null as double)  as expected_precision
where 1 = 0
{%- endif %}
