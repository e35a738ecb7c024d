select
    cast(person_id as {{ dbt.type_string() }})                    as person_id,
    cast(ATTENDKEY as {{ dbt.type_string() }})                    as attend_key,
    cast(APPTDATE as date)                        as appointment_date,
    cast(ATTENDED as {{ dbt.type_string() }})                     as attended_code,
    cast(FIRSTATT as {{ dbt.type_string() }})                     as first_attendance,
    cast(TRETSPEF as {{ dbt.type_string() }})                     as treatment_specialty,
    cast(PROCODE3 as {{ dbt.type_string() }})                     as provider_code,
    cast(APPTAGE as integer)                      as age_at_appointment,
    cast(LSOA11 as {{ dbt.type_string() }})                       as lsoa11,
    cast(GPPRAC as {{ dbt.type_string() }})                       as gp_practice_code
from {{ source('sus', 'opa') }}
