-- Covariate balance before and after matching (SMD with the pre-matching pooled SD as
-- denominator; variance ratio treated/control; controls weighted within matched sets);
-- matched_on = false for covariates shown but deliberately not matched on.
select
    cast(covariate as {{ dbt.type_string() }})        as covariate,
    cast(stage as {{ dbt.type_string() }})            as stage,
    cast(matched_on as boolean)       as matched_on,
    cast(mean_treated as double)      as mean_treated,
    cast(mean_control as double)      as mean_control,
    cast(smd as double)               as smd,
    cast(variance_ratio as double)    as variance_ratio,
    cast(sd_pooled as double)         as sd_pooled,
    cast(n_treated as integer)        as n_treated,
    cast(n_control as integer)        as n_control
from {{ source('matching', 'int_covariate_balance_measured') }}
