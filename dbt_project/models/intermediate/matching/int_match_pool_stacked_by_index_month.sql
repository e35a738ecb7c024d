-- Every (person, index month) row that could enter matching, with its baseline features and
-- eligibility flags: the treated at their own index month, and each possible comparison
-- person at every index month of a treated person (stacked design: a control candidate is
-- given the treated person's index month and must be eligible then). Control candidates are
-- the people who can enter the pool (int_persons_who_can_enter_the_match_pool) only.
{%- set n = var('baseline_months') | int %}
with study as (
    select min(calendar_month) as first_month from {{ ref('int_calendar_months_spanned_by_activity') }}
),
treated as (
    select person_id, index_month, 1 as is_treated from {{ ref('int_iapt_referrals_filtered_to_treated') }}
),
index_months as (
    select distinct index_month from treated
),
first_iapt_treatment as (
    select person_id, min(care_contact_date) as first_treatment_date
    from {{ ref('int_iapt_care_contacts_flagged') }}
    where is_treatment_contact and person_id is not null
    group by person_id
),
first_referral as (
    select person_id, min(referral_received_date) as first_referral_date
    from {{ ref('int_iapt_referrals_flagged_with_outcomes') }}
    where person_id is not null
    group by person_id
),
first_ltc_pathway as (
    select person_id, min(care_contact_date) as first_ltc_pathway_date
    from {{ ref('int_iapt_care_contacts_flagged') }}
    where is_ltc_pathway_contact and person_id is not null
    group by person_id
),
candidate_persons as (
    -- people never on the LTC register would only be rows excluded for it
    select * from {{ ref('int_persons_joined_to_imd') }}
    where person_id in (select person_id from {{ ref('int_persons_who_can_enter_the_match_pool') }})
),
controls as (
    select p.person_id, m.index_month, 0 as is_treated
    from candidate_persons p
    cross join index_months m
    left join first_iapt_treatment ft on ft.person_id = p.person_id
    left join first_ltc_pathway fl on fl.person_id = p.person_id
    left join first_referral fr on fr.person_id = p.person_id
    left join {{ ref('int_ltc_pathway_contacts_aggregated_to_practices') }} lp on lp.practice_code = p.practice_code
    {%- if var('comparison_design') == 'not_yet_referred' %}
    where lp.ltc_pathway_launch_month <= m.index_month
      and (fr.first_referral_date is null or fr.first_referral_date >= m.index_month + interval 1 month)
    {%- else %}
    where p.person_id not in (select person_id from treated)
      and (ft.first_treatment_date is null or ft.first_treatment_date >= m.index_month)
    {%- endif %}
      {%- if var('comparison_design') == 'not_yet_referred' %}
      {%- elif var('comparison_design') == 'non_ltc_practices' %}
      and lp.practice_code is null
      {%- elif var('comparison_design') == 'untreated_any_practice' %}
      and (fl.first_ltc_pathway_date is null or fl.first_ltc_pathway_date >= m.index_month)
      {%- else %}
      and {{ exceptions.raise_compiler_error("unknown comparison_design: " ~ var('comparison_design')) }}
      {%- endif %}
),
rows_ as (
    select * from treated
    union all
    select * from controls
),
ltc_at_index as (
    select
        r.person_id,
        r.index_month,
        count(distinct l.snomed_code)                                                as n_ltcs,
        case when count(distinct l.ltc_group) > 1 then 'multiple' else max(l.ltc_group) end as ltc_group
    from rows_ r
    join {{ ref('int_gp_conditions_joined_to_ltc_codes') }} l
      on l.person_id = r.person_id
     and (l.diagnosis_date is null or l.diagnosis_date < r.index_month + interval 1 month)
    group by r.person_id, r.index_month
),
features as (
    select
        r.person_id,
        r.index_month,
        r.is_treated,
        p.sex,
        p.practice_code,
        p.imd_decile,
        {{ age_at('p.birth_month', 'r.index_month') }} as age,
        coalesce(l.n_ltcs, 0)                        as n_ltcs,
        l.ltc_group,
        b.baseline_ae_attendances,
        b.baseline_emergency_admissions,
        b.baseline_bed_days,
        b.baseline_outpatient_attendances,
        b.baseline_gp_appointments,
        b.trend_ae_attendances,
        b.trend_emergency_admissions,
        b.trend_bed_days,
        b.trend_outpatient_attendances,
        b.trend_gp_appointments,
        b.recent_ae_attendances,
        b.recent_emergency_admissions,
        b.recent_bed_days,
        b.recent_outpatient_attendances,
        b.recent_gp_appointments,
        -- eligibility at the index month
        {{ age_at('p.birth_month', 'r.index_month') }} >= {{ var('adult_age') }}            as is_adult,
        coalesce(p.registration_start <= r.index_month - interval {{ n }} month, true)       as registered_whole_baseline,
        coalesce(p.censor_date >= r.index_month, true)                                       as registered_alive_at_index,
        r.index_month - interval {{ n }} month >= s.first_month                              as baseline_in_study_data,
        coalesce(l.n_ltcs, 0) > 0                                                            as has_ltc,
        p.imd_decile is not null                                                             as has_imd
    from rows_ r
    join {{ ref('int_persons_joined_to_imd') }} p on p.person_id = r.person_id
    cross join study s
    left join ltc_at_index l on l.person_id = r.person_id and l.index_month = r.index_month
    left join {{ ref('int_person_months_summed_over_baseline') }} b
      on b.person_id = r.person_id and b.calendar_month = r.index_month
)
select
    *,
    {{ band('age', var('age_band_breaks'), var('adult_age')) }} as age_band,
    {{ band('coalesce(baseline_ae_attendances, 0) + coalesce(baseline_emergency_admissions, 0)', var('util_band_breaks'), 0) }} as baseline_util_band,
    {{ band('coalesce(recent_ae_attendances, 0) + coalesce(recent_emergency_admissions, 0)', var('util_band_breaks'), 0) }} as recent_util_band,
    case
        when not is_adult then 'under {{ var("adult_age") }} at index'
        when not baseline_in_study_data then 'baseline starts before the study data'
        when not registered_whole_baseline then 'not registered for the whole baseline'
        when not registered_alive_at_index then 'not registered and alive at index'
        when not has_ltc then 'no LTC on the GP register by the index month'
        when not has_imd then 'no IMD decile'
    end as exclusion_reason
from features
