
    
      
    

    create  table
      "warehouse"."main"."mart_balance__dbt_tmp"
  
  (
    covariate varchar not null,
    stage varchar not null,
    matched_on boolean not null,
    mean_treated double,
    mean_control double,
    smd double,
    variance_ratio double,
    sd_pooled double,
    n_treated integer,
    n_control integer
    
    )
 ;
    
    
    insert into "warehouse"."main"."mart_balance__dbt_tmp" 
  (
    
      
      
      covariate ,
    
      
      
      stage ,
    
      
      
      matched_on ,
    
      
      
      mean_treated ,
    
      
      
      mean_control ,
    
      
      
      smd ,
    
      
      
      variance_ratio ,
    
      
      
      sd_pooled ,
    
      
      
      n_treated ,
    
      
      
      n_control 
    
  )
 (
      
    select covariate, stage, matched_on, mean_treated, mean_control, smd, variance_ratio, sd_pooled, n_treated, n_control
    from (
        -- Covariate balance before and after matching (SMD with the pre-matching pooled SD as
-- denominator; variance ratio treated/control; controls weighted within matched sets);
-- matched_on = false for covariates shown but deliberately not matched on.
select
    cast(covariate as varchar)        as covariate,
    cast(stage as varchar)            as stage,
    cast(matched_on as boolean)       as matched_on,
    cast(mean_treated as double)      as mean_treated,
    cast(mean_control as double)      as mean_control,
    cast(smd as double)               as smd,
    cast(variance_ratio as double)    as variance_ratio,
    cast(sd_pooled as double)         as sd_pooled,
    cast(n_treated as integer)        as n_treated,
    cast(n_control as integer)        as n_control
from "warehouse"."main"."int_match_balance"
    ) as model_subq
    );
  