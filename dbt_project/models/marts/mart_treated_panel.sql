-- Every treated person eligible for matching x relative month around their index month, matched
-- or not: the NAIVE before/after a site would compute without a comparison group. The people
-- matching cannot place (often those with the highest use just before referral, whose fall
-- after it is largest) stay in, so the naive figure is not shrunk by matching.
with rel as (
    {{ panel_rel_months() }}
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
    {{ panel_period('tm.rel_month') }} as period,
    tm.calendar_month,
    {{ panel_activity_columns('pm') }}
from treated_months tm
left join {{ ref('mart_person_month_panel') }} pm
  on pm.person_id = tm.person_id and pm.calendar_month = tm.calendar_month
