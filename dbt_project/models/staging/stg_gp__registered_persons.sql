select
    cast(person_id as {{ dbt.type_string() }})            as person_id,
    cast(sex as {{ dbt.type_string() }})                  as sex,
    cast(year_of_birth as integer)        as year_of_birth,
    cast(month_of_birth as integer)       as month_of_birth,
    cast(ethnic_category as {{ dbt.type_string() }})      as ethnic_category,
    cast(lsoa11 as {{ dbt.type_string() }})               as lsoa11,
    cast(practice_code as {{ dbt.type_string() }})        as practice_code,
    cast(registration_start as date)      as registration_start,
    cast(registration_end as date)        as registration_end,
    cast(date_of_death as date)           as date_of_death
from {{ source('gp', 'person') }}
