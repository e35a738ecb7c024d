select
    cast(person_id as varchar)            as person_id,
    cast(AppointmentId as varchar)        as appointment_id,
    cast(PracticeCode as varchar)         as practice_code,
    cast(BookedDate as date)              as booked_date,
    cast(AppointmentDate as date)         as appointment_date,
    cast(AppointmentStatus as varchar)    as appointment_status,
    cast(HCPType as varchar)              as hcp_type,
    cast(ApptMode as varchar)             as appt_mode,
    cast(NationalCategory as varchar)     as national_category
from {{ source('gp', 'gp_appointments') }}
