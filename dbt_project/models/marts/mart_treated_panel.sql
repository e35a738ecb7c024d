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
        {{ add_months('t.index_month', 'r.rel_month') }} as calendar_month
    from {{ ref('int_match_pool_filtered_to_eligible') }} t   -- eligible rows; the treated at their index month
    cross join rel r
    where t.is_treated = 1
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
left join {{ ref('int_activity_aggregated_to_person_months') }} pm
  on pm.person_id = tm.person_id and pm.calendar_month = tm.calendar_month
