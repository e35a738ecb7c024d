
    

    create  table
      "warehouse"."main"."int_match_pool__dbt_tmp"
  
    
    as (
      -- Every (person, index month) row that could enter matching, with its baseline features and
-- eligibility flags: the treated at their own index month, and each possible comparison
-- person at every index month of a treated person (stacked design: a control candidate is
-- given the treated person's index month and must be eligible then).
with study as (
    select min(calendar_month) as first_month from "warehouse"."main"."int_calendar_months"
),
treated as (
    select person_id, index_month, 1 as is_treated from "warehouse"."main"."int_treated_referrals"
),
index_months as (
    select distinct index_month from treated
),
first_iapt_treatment as (
    select person_id, min(care_contact_date) as first_treatment_date
    from "warehouse"."main"."int_iapt_contacts"
    where is_treatment_contact and person_id is not null
    group by person_id
),
first_ltc_pathway as (
    select person_id, min(care_contact_date) as first_ltc_pathway_date
    from "warehouse"."main"."int_iapt_contacts"
    where is_ltc_pathway_contact and person_id is not null
    group by person_id
),
controls as (
    select p.person_id, m.index_month, 0 as is_treated
    from "warehouse"."main"."int_persons" p
    cross join index_months m
    left join first_iapt_treatment ft on ft.person_id = p.person_id
    left join first_ltc_pathway fl on fl.person_id = p.person_id
    left join "warehouse"."main"."int_ltc_practices" lp on lp.practice_code = p.practice_code
    where p.person_id not in (select person_id from treated)
      and (ft.first_treatment_date is null or ft.first_treatment_date >= m.index_month)
      and (fl.first_ltc_pathway_date is null or fl.first_ltc_pathway_date >= m.index_month)
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
    join "warehouse"."main"."int_ltc_register" l
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
        cast(floor(datediff('month', p.birth_month, date_trunc('month', r.index_month)) / 12) as integer) as age,
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
        cast(floor(datediff('month', p.birth_month, date_trunc('month', r.index_month)) / 12) as integer) >= 18            as is_adult,
        coalesce(p.registration_start <= r.index_month - interval 12 month, true)       as registered_whole_baseline,
        coalesce(p.censor_date >= r.index_month, true)                                       as registered_alive_at_index,
        r.index_month - interval 12 month >= s.first_month                              as baseline_in_study_data,
        coalesce(l.n_ltcs, 0) > 0                                                            as has_ltc,
        p.imd_decile is not null                                                             as has_imd
    from rows_ r
    join "warehouse"."main"."int_persons" p on p.person_id = r.person_id
    cross join study s
    left join ltc_at_index l on l.person_id = r.person_id and l.index_month = r.index_month
    left join "warehouse"."main"."int_person_month_baseline" b
      on b.person_id = r.person_id and b.calendar_month = r.index_month
)
select
    *,
    case
        when age < 65 then '18-64'
        else '65+'
    end as age_band,
    case
        when coalesce(baseline_ae_attendances, 0) + coalesce(baseline_emergency_admissions, 0) < 1 then '0'
        else '1+'
    end as baseline_util_band,
    case
        when coalesce(recent_ae_attendances, 0) + coalesce(recent_emergency_admissions, 0) < 1 then '0'
        else '1+'
    end as recent_util_band,
    case
        when not is_adult then 'under 18 at index'
        when not baseline_in_study_data then 'baseline starts before the study data'
        when not registered_whole_baseline then 'not registered for the whole baseline'
        when not registered_alive_at_index then 'not registered and alive at index'
        when not has_ltc then 'no LTC on the GP register by the index month'
        when not has_imd then 'no IMD decile'
    end as exclusion_reason
from features
    );
    
  