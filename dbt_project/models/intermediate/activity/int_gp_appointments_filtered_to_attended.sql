-- Attended GP-practice appointments (any clinician type, any mode).
-- A view: its one reader, int_activity_aggregated_to_person_months, counts it once, and copying
-- its rows into a table (about 40 million at 2,000,000 people) took longer than that count.
{{ config(materialized='view') }}
select
    appointment_id,
    person_id,
    practice_code,
    appointment_date,
    hcp_type,
    appt_mode,
    date_trunc('month', appointment_date) as activity_month
from {{ ref('stg_gp__appointments') }}
where person_id is not null
  and lower(appointment_status) = 'attended'
  and appointment_date is not null
