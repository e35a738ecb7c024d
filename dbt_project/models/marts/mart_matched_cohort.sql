-- Matched cohort (contract §4): one row per matched person, treated and controls, from
-- evaluation.methods.matching.match (the matching step's table int_controls_matched_to_treated, source `matching`). referred_in_followup: an IAPT referral
-- in months 1..panel_months_after after the index (controls of the not_yet_referred design
-- who were referred later stay controls: intention to treat; the report gives their share).
with followup_referrals as (
    select distinct m.matched_set_id, m.person_id
    from {{ source('matching', 'int_controls_matched_to_treated') }} m
    join {{ ref('int_iapt_referrals_flagged_with_outcomes') }} r on r.person_id = m.person_id
    where r.referral_received_date >= m.index_month + interval 1 month
      and r.referral_received_date < {{ add_months('m.index_month', var('panel_months_after') ~ ' + 1') }}
)
select
    cast(matched_set_id as bigint)                  as matched_set_id,
    cast(person_id as {{ dbt.type_string() }})                      as person_id,
    cast(is_treated as integer)                     as is_treated,
    cast(index_month as date)                       as index_month,
    cast(propensity_score as double)                as propensity_score,
    cast(propensity_logit as double)                as propensity_logit,
    cast(match_weight as double)                    as match_weight,
    cast(sex as {{ dbt.type_string() }})                            as sex,
    cast(ltc_group as {{ dbt.type_string() }})                      as ltc_group,
    cast(age_band as {{ dbt.type_string() }})                       as age_band,
    cast(baseline_util_band as {{ dbt.type_string() }})             as baseline_util_band,
    cast(practice_code as {{ dbt.type_string() }})                  as practice_code,
    cast(age as integer)                            as age,
    cast(imd_decile as integer)                     as imd_decile,
    cast(n_ltcs as integer)                         as n_ltcs,
    cast(baseline_ae_attendances as integer)        as baseline_ae_attendances,
    cast(baseline_emergency_admissions as integer)  as baseline_emergency_admissions,
    cast(baseline_bed_days as integer)              as baseline_bed_days,
    cast(baseline_outpatient_attendances as integer) as baseline_outpatient_attendances,
    cast(baseline_gp_appointments as integer)       as baseline_gp_appointments,
    cast(trend_ae_attendances as integer)           as trend_ae_attendances,
    cast(trend_emergency_admissions as integer)     as trend_emergency_admissions,
    cast(trend_bed_days as integer)                 as trend_bed_days,
    cast(trend_outpatient_attendances as integer)   as trend_outpatient_attendances,
    cast(trend_gp_appointments as integer)          as trend_gp_appointments,
    f.person_id is not null                          as referred_in_followup
from {{ source('matching', 'int_controls_matched_to_treated') }} m
left join followup_referrals f using (matched_set_id, person_id)
