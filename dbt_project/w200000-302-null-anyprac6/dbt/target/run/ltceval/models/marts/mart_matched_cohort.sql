
    
      
    

    create  table
      "warehouse"."main"."mart_matched_cohort__dbt_tmp"
  
  (
    matched_set_id bigint not null,
    person_id varchar not null,
    is_treated integer not null,
    index_month date,
    propensity_score double,
    propensity_logit double,
    match_weight double,
    sex varchar,
    ltc_group varchar,
    age_band varchar,
    baseline_util_band varchar,
    practice_code varchar,
    age integer,
    imd_decile integer,
    n_ltcs integer,
    baseline_ae_attendances integer,
    baseline_emergency_admissions integer,
    baseline_bed_days integer,
    baseline_outpatient_attendances integer,
    baseline_gp_appointments integer,
    trend_ae_attendances integer,
    trend_emergency_admissions integer,
    trend_bed_days integer,
    trend_outpatient_attendances integer,
    trend_gp_appointments integer
    
    )
 ;
    
    
    insert into "warehouse"."main"."mart_matched_cohort__dbt_tmp" 
  (
    
      
      
      matched_set_id ,
    
      
      
      person_id ,
    
      
      
      is_treated ,
    
      
      
      index_month ,
    
      
      
      propensity_score ,
    
      
      
      propensity_logit ,
    
      
      
      match_weight ,
    
      
      
      sex ,
    
      
      
      ltc_group ,
    
      
      
      age_band ,
    
      
      
      baseline_util_band ,
    
      
      
      practice_code ,
    
      
      
      age ,
    
      
      
      imd_decile ,
    
      
      
      n_ltcs ,
    
      
      
      baseline_ae_attendances ,
    
      
      
      baseline_emergency_admissions ,
    
      
      
      baseline_bed_days ,
    
      
      
      baseline_outpatient_attendances ,
    
      
      
      baseline_gp_appointments ,
    
      
      
      trend_ae_attendances ,
    
      
      
      trend_emergency_admissions ,
    
      
      
      trend_bed_days ,
    
      
      
      trend_outpatient_attendances ,
    
      
      
      trend_gp_appointments 
    
  )
 (
      
    select matched_set_id, person_id, is_treated, index_month, propensity_score, propensity_logit, match_weight, sex, ltc_group, age_band, baseline_util_band, practice_code, age, imd_decile, n_ltcs, baseline_ae_attendances, baseline_emergency_admissions, baseline_bed_days, baseline_outpatient_attendances, baseline_gp_appointments, trend_ae_attendances, trend_emergency_admissions, trend_bed_days, trend_outpatient_attendances, trend_gp_appointments
    from (
        -- Matched cohort (contract §4): one row per matched person, treated and controls, from
-- evaluation.matching.match (model int_matched_cohort).
select
    cast(matched_set_id as bigint)                  as matched_set_id,
    cast(person_id as varchar)                      as person_id,
    cast(is_treated as integer)                     as is_treated,
    cast(index_month as date)                       as index_month,
    cast(propensity_score as double)                as propensity_score,
    cast(propensity_logit as double)                as propensity_logit,
    cast(match_weight as double)                    as match_weight,
    cast(sex as varchar)                            as sex,
    cast(ltc_group as varchar)                      as ltc_group,
    cast(age_band as varchar)                       as age_band,
    cast(baseline_util_band as varchar)             as baseline_util_band,
    cast(practice_code as varchar)                  as practice_code,
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
    cast(trend_gp_appointments as integer)          as trend_gp_appointments
from "warehouse"."main"."int_matched_cohort"
    ) as model_subq
    );
  