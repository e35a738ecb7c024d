
    
      
    

    create  table
      "warehouse"."main"."mart_evaluation_panel__dbt_tmp"
  
  (
    matched_set_id bigint not null,
    person_id varchar not null,
    is_treated integer,
    index_month date,
    rel_month integer,
    period varchar not null,
    calendar_month date,
    exposure_months double,
    ae_attendances integer,
    emergency_admissions integer,
    bed_days integer,
    outpatient_attendances integer,
    gp_appointments integer,
    ltc_group varchar,
    practice_code varchar
    
    )
 ;
    
    
    insert into "warehouse"."main"."mart_evaluation_panel__dbt_tmp" 
  (
    
      
      
      matched_set_id ,
    
      
      
      person_id ,
    
      
      
      is_treated ,
    
      
      
      index_month ,
    
      
      
      rel_month ,
    
      
      
      period ,
    
      
      
      calendar_month ,
    
      
      
      exposure_months ,
    
      
      
      ae_attendances ,
    
      
      
      emergency_admissions ,
    
      
      
      bed_days ,
    
      
      
      outpatient_attendances ,
    
      
      
      gp_appointments ,
    
      
      
      ltc_group ,
    
      
      
      practice_code 
    
  )
 (
      
    select matched_set_id, person_id, is_treated, index_month, rel_month, period, calendar_month, exposure_months, ae_attendances, emergency_admissions, bed_days, outpatient_attendances, gp_appointments, ltc_group, practice_code
    from (
        -- Evaluation panel (contract §4): each matched person x relative month around their
-- (treated person's) index month, rel_month -panel_months_before..panel_months_after,
-- 0 = index month. Months outside the study data get exposure 0 and zero counts.
-- period: 'pre' (the DiD comparison period), 'selection' (the last selection_window_months
-- months before the index, where referral decisions are made: matched on, left out of the
-- DiD; see evaluation/panel.py), 'transition' (the index month) or 'post'.
with rel as (
    select cast(r as integer) as rel_month
    from generate_series(-12, 12) as t(r)
),
cohort_months as (
    select
        c.matched_set_id,
        c.person_id,
        c.is_treated,
        c.index_month,
        r.rel_month,
        cast(c.index_month + to_months(r.rel_month) as date) as calendar_month,
        c.ltc_group,
        c.practice_code
    from "warehouse"."main"."mart_matched_cohort" c
    cross join rel r
)
select
    cm.matched_set_id,
    cm.person_id,
    cm.is_treated,
    cm.index_month,
    cm.rel_month,
    case
        when cm.rel_month < -6 then 'pre'
        when cm.rel_month < 0 then 'selection'
        when cm.rel_month = 0 then 'transition'
        else 'post'
    end                                                      as period,
    cm.calendar_month,
    cast(coalesce(pm.exposure_months, 0) as double)          as exposure_months,
    cast(coalesce(pm.ae_attendances, 0) as integer)          as ae_attendances,
    cast(coalesce(pm.emergency_admissions, 0) as integer)    as emergency_admissions,
    cast(coalesce(pm.bed_days, 0) as integer)                as bed_days,
    cast(coalesce(pm.outpatient_attendances, 0) as integer)  as outpatient_attendances,
    cast(coalesce(pm.gp_appointments, 0) as integer)         as gp_appointments,
    cm.ltc_group,
    cm.practice_code
from cohort_months cm
left join "warehouse"."main"."mart_person_month_panel" pm
  on pm.person_id = cm.person_id and pm.calendar_month = cm.calendar_month
    ) as model_subq
    );
  