{{ config(materialized="view") }}
-- Person x calendar month utilisation panel over the study window (every linked person): the
-- dense person-months with exposure, counts zero-filled where nothing was recorded and typed,
-- as in the evaluation panels (macro panel_activity_columns). A view: the dense panel is
-- stored once (int_activity_aggregated_to_person_months); a second copy of its 120 million
-- rows at 2,000,000 people took 148 s to write and nothing in the chain reads it.
select
    pm.person_id,
    pm.calendar_month,
    {{ panel_activity_columns('pm') }},
    cast(coalesce(pm.iapt_treatment_contacts, 0) as integer) as iapt_treatment_contacts
from {{ ref('int_activity_aggregated_to_person_months') }} pm
