-- Treated cohort: adults (at index) on the IAPT-LTC pathway with a finished course or at
-- least `min_treatment_contacts` treatment contacts, one row per person (earliest qualifying
-- referral). eligible_for_matching / exclusion_reason say whether they can enter matching.
select
    t.person_id,
    t.service_request_id                      as {{ adapter.quote('ServiceRequestId') }},
    t.index_date,
    t.index_month,
    p.ltc_group,
    cast(p.n_ltcs as integer)                 as n_ltcs,
    p.sex,
    p.age                                     as age_at_index,
    p.practice_code,
    t.referral_received_date,
    t.first_treatment_contact_date,
    cast(t.n_treatment_contacts as integer)   as n_treatment_contacts,
    t.finished_course,
    t.at_caseness_start,
    t.recovered,
    t.reliable_improvement,
    t.reliable_deterioration,
    p.exclusion_reason is null                as eligible_for_matching,
    p.exclusion_reason
from {{ ref('int_iapt_referrals_filtered_to_treated') }} t
join {{ ref('int_match_pool_stacked_by_index_month') }} p
  on p.person_id = t.person_id and p.index_month = t.index_month and p.is_treated = 1
where p.is_adult
