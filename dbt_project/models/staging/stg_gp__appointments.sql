select
    cast(person_id as {{ dbt.type_string() }})            as person_id,
    cast(AppointmentId as {{ dbt.type_string() }})        as appointment_id,
    cast(PracticeCode as {{ dbt.type_string() }})         as practice_code,
    cast(BookedDate as date)              as booked_date,
    cast(AppointmentDate as date)         as appointment_date,
    cast(AppointmentStatus as {{ dbt.type_string() }})    as appointment_status,
    cast(HCPType as {{ dbt.type_string() }})              as hcp_type,
    cast(ApptMode as {{ dbt.type_string() }})             as appt_mode,
    cast(NationalCategory as {{ dbt.type_string() }})     as national_category
from {{ source('gp', 'gp_appointments') }}
