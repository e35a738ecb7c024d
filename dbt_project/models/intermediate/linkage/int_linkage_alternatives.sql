-- The published records whose person would differ with links made at the stricter or the
-- looser threshold (source linkage.linkage_alternatives), typed; no rows when the identifiable
-- zone published no linkage sensitivity (macro linkage_alternatives_published).
{%- set alternatives = source('linkage', 'linkage_alternatives') %}
{%- if linkage_alternatives_published() %}
select
    cast(table_name as {{ dbt.type_string() }})         as table_name,
    cast(record_id as {{ dbt.type_string() }})          as record_id,
    cast(person_id_stricter as {{ dbt.type_string() }}) as person_id_stricter,
    cast(person_id_looser as {{ dbt.type_string() }})   as person_id_looser
from {{ alternatives }}
{%- else %}
select
    cast(null as {{ dbt.type_string() }}) as table_name,
    cast(null as {{ dbt.type_string() }}) as record_id,
    cast(null as {{ dbt.type_string() }}) as person_id_stricter,
    cast(null as {{ dbt.type_string() }}) as person_id_looser
where 1 = 0
{%- endif %}
