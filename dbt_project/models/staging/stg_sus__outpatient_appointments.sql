select
    cast(person_id as varchar)                    as person_id,
    cast(ATTENDKEY as varchar)                    as attend_key,
    cast(APPTDATE as date)                        as appointment_date,
    cast(ATTENDED as varchar)                     as attended_code,
    cast(FIRSTATT as varchar)                     as first_attendance,
    cast(TRETSPEF as varchar)                     as treatment_specialty,
    cast(PROCODE3 as varchar)                     as provider_code,
    cast(APPTAGE as integer)                      as age_at_appointment,
    cast(LSOA11 as varchar)                       as lsoa11,
    cast(GPPRAC as varchar)                       as gp_practice_code
from {{ source('sus', 'opa') }}
