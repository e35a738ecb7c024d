-- Person x calendar month utilisation panel over the study window (every linked person).
select
    person_id,
    calendar_month,
    exposure_months,
    ae_attendances,
    emergency_admissions,
    bed_days,
    outpatient_attendances,
    gp_appointments,
    iapt_treatment_contacts
from {{ ref('int_activity_aggregated_to_person_months') }}
