-- IAPT referrals with the national derived measures (nhs-datasets.md, "Derived outcome
-- definitions"). Last scores need a second score; missing last scores count as not recovered.
with contacts as (
    select
        service_request_id,
        count(*) filter (where is_treatment_contact)                    as n_treatment_contacts,
        count(*) filter (where is_attended)                             as n_attended_contacts,
        min(care_contact_date) filter (where is_treatment_contact)      as first_treatment_contact_date,
        max(care_contact_date) filter (where is_treatment_contact)      as last_treatment_contact_date,
        bool_or(is_ltc_pathway_contact)                                 as is_ltc_pathway,
        min(care_contact_date) filter (where is_ltc_pathway_contact)    as first_ltc_pathway_contact_date
    from {{ ref('int_iapt_care_contacts_flagged') }}
    group by service_request_id
),
base as (
    select
        r.service_request_id,
        r.person_id,
        r.referral_received_date,
        r.discharge_date,
        r.end_code,
        coalesce(c.n_treatment_contacts, 0)                 as n_treatment_contacts,
        coalesce(c.n_attended_contacts, 0)                  as n_attended_contacts,
        c.first_treatment_contact_date,
        c.last_treatment_contact_date,
        coalesce(c.is_ltc_pathway, false)                   as is_ltc_pathway,
        c.first_ltc_pathway_contact_date,
        r.discharge_date is not null                        as is_ended,
        s.phq9_first, s.phq9_last, s.gad7_first, s.gad7_last
    from {{ ref('stg_iapt__referrals') }} r
    left join contacts c using (service_request_id)
    left join {{ ref('int_iapt_scores_pivoted_to_referrals') }} s using (service_request_id)
),
flags as (
    select *,
        {{ finished_course('is_ended', 'n_treatment_contacts') }}            as finished_course,
        (coalesce(phq9_first >= 10, false) or coalesce(gad7_first >= 8, false)) as at_caseness_start,
        (coalesce(phq9_last >= 10, false) or coalesce(gad7_last >= 8, false))   as at_caseness_end,
        (phq9_last is not null or gad7_last is not null)                        as has_last_score,
        phq9_last - phq9_first                                                  as phq9_change,
        gad7_last - gad7_first                                                  as gad7_change
    from base
)
select *,
    finished_course and at_caseness_start and has_last_score and not at_caseness_end      as recovered,
    finished_course
        and (coalesce(phq9_change <= -6, false) or coalesce(gad7_change <= -4, false))
        and not (coalesce(phq9_change >= 6, false) or coalesce(gad7_change >= 4, false))  as reliable_improvement,
    finished_course
        and (coalesce(phq9_change >= 6, false) or coalesce(gad7_change >= 4, false))
        and not (coalesce(phq9_change <= -6, false) or coalesce(gad7_change <= -4, false)) as reliable_deterioration
from flags
