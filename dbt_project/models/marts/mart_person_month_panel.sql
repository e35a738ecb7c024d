-- Person x calendar month utilisation panel over the study window (every linked person): the
-- dense person-months with exposure, counts zero-filled where nothing was recorded and typed,
-- as in the evaluation panels (macro panel_activity_columns).
select
    pm.person_id,
    pm.calendar_month,
    {{ panel_activity_columns('pm') }},
    cast(coalesce(pm.iapt_treatment_contacts, 0) as integer) as iapt_treatment_contacts
from {{ ref('int_activity_aggregated_to_person_months') }} pm
