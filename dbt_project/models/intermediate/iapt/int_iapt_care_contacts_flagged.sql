-- IAPT care contacts with the national flags. A treatment contact is attended (5 arrived on
-- time, 6 arrived late but seen), a treatment appointment type (02, 03, 05) and dated within
-- the referral (on/after referral receipt, on/before discharge when discharged).
select
    c.care_contact_id,
    c.service_request_id,
    r.person_id,
    c.care_contact_date,
    c.attend_or_dna_code,
    c.appointment_type,
    c.consultation_mechanism,
    c.iapt_ltc_service_ind = 'Y'                                          as is_ltc_pathway_contact,
    try_cast(c.attend_or_dna_code as integer) in (5, 6)                   as is_attended,
    try_cast(c.appointment_type as integer) in (2, 3, 5)                  as is_treatment_appointment,
    (
        try_cast(c.attend_or_dna_code as integer) in (5, 6)
        and try_cast(c.appointment_type as integer) in (2, 3, 5)
        and c.care_contact_date >= r.referral_received_date
        and (r.discharge_date is null or c.care_contact_date <= r.discharge_date)
    )                                                                      as is_treatment_contact
from {{ ref('stg_iapt__care_contacts') }} c
join {{ ref('stg_iapt__referrals') }} r using (service_request_id)
