-- The published records whose person would differ with links made at the stricter or the
-- looser threshold (source linkage.linkage_alternatives), typed; no rows when the identifiable
-- zone had no linkage sensitivity to publish (upstream-pseudonymised extracts, perfect links).
select
    cast(table_name as {{ dbt.type_string() }})         as table_name,
    cast(record_id as {{ dbt.type_string() }})          as record_id,
    cast(person_id_stricter as {{ dbt.type_string() }}) as person_id_stricter,
    cast(person_id_looser as {{ dbt.type_string() }})   as person_id_looser
from {{ source('linkage', 'linkage_alternatives') }}
