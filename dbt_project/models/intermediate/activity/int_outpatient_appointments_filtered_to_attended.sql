-- Outpatient attendances: ATTENDED 5 (seen on time) or 6 (late but seen).
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
where person_id is not null
  and try_cast(attended_code as integer) in (5, 6)
  and appointment_date is not null
