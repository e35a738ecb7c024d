-- Every treated person eligible for matching x relative month around their index month, matched
-- or not: the NAIVE before/after a site would compute without a comparison group. The people
-- matching cannot place (often those with the highest use just before referral, whose fall
-- after it is largest) stay in, so the naive figure is not shrunk by matching.
{%- set w = var('selection_window_months') | int %}
with rel as (
    select cast(r as integer) as rel_month
    from generate_series(-{{ var('panel_months_before') }}, {{ var('panel_months_after') }}) as t(r)
),
treated_months as (
    select
        t.person_id,
        t.index_month,
        r.rel_month,
        cast(t.index_month + to_months(r.rel_month) as date) as calendar_month
    from {{ ref('mart_treated_cohort') }} t
    cross join rel r
    where t.eligible_for_matching
)
select
    tm.person_id,
    1                                                        as is_treated,
    tm.index_month,
    tm.rel_month,
    case
        when tm.rel_month < -{{ w }} then 'pre'
        when tm.rel_month < 0 then 'selection'
        when tm.rel_month = 0 then 'transition'
        else 'post'
    end                                                      as period,
    tm.calendar_month,
    cast(coalesce(pm.exposure_months, 0) as double)          as exposure_months,
    cast(coalesce(pm.ae_attendances, 0) as integer)          as ae_attendances,
    cast(coalesce(pm.emergency_admissions, 0) as integer)    as emergency_admissions,
    cast(coalesce(pm.bed_days, 0) as integer)                as bed_days,
    cast(coalesce(pm.outpatient_attendances, 0) as integer)  as outpatient_attendances,
    cast(coalesce(pm.gp_appointments, 0) as integer)         as gp_appointments
from treated_months tm
left join {{ ref('mart_person_month_panel') }} pm
  on pm.person_id = tm.person_id and pm.calendar_month = tm.calendar_month
