-- Outpatient attendances: ATTENDED 5 (seen on time) or 6 (late but seen). Unlinked records
-- (person_id null) are kept for the linkage sensitivity, as in int_ae_attendances_filtered_to_type_01.
-- A view: its one reader, int_activity_aggregated_to_person_months, counts it once, and copying
-- its rows into a table (about 13 million at 2,000,000 people) took longer than that count.
{{ config(materialized='view') }}
select
    attend_key,
    person_id,
    appointment_date,
    first_attendance,
    treatment_specialty,
    date_trunc('month', appointment_date) as activity_month
from {{ ref('stg_sus__outpatient_appointments') }}
where try_cast(attended_code as integer) in (5, 6)
  and appointment_date is not null
