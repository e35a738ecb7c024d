-- Study calendar: every month from the first to the last month with recorded activity.
with bounds as (
    select min(d) as first_date, max(d) as last_date
    from (
        select min(arrival_date) as d from {{ ref('stg_ecds__attendances') }}
        union all select max(arrival_date) from {{ ref('stg_ecds__attendances') }}
        union all select min(admission_date) from {{ ref('stg_sus__apc_spells') }}
        union all select max(admission_date) from {{ ref('stg_sus__apc_spells') }}
        union all select min(appointment_date) from {{ ref('stg_sus__outpatient_appointments') }}
        union all select max(appointment_date) from {{ ref('stg_sus__outpatient_appointments') }}
        union all select min(appointment_date) from {{ ref('stg_gp__appointments') }}
        union all select max(appointment_date) from {{ ref('stg_gp__appointments') }}
        union all select min(care_contact_date) from {{ ref('stg_iapt__care_contacts') }}
        union all select max(care_contact_date) from {{ ref('stg_iapt__care_contacts') }}
    )
)
select
    cast(m as date)                                   as calendar_month,
    cast(m + interval 1 month - interval 1 day as date) as month_end,
    {{ days_between('m', 'cast(m + interval 1 month as date)') }} as days_in_month
from {{ from_month_series('bounds', 'first_date', 'last_date', 't', 'm') }}
