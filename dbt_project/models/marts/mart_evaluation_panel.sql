-- Evaluation panel (contract §4): each matched person x relative month around their
-- (treated person's) index month, rel_month -panel_months_before..panel_months_after,
-- 0 = index month. Months outside the study data get exposure 0 and zero counts.
-- period: 'pre' (the DiD comparison period), 'selection' (the last selection_window_months
-- months before the index, where referral decisions are made: matched on, left out of the
-- DiD; see evaluation/panel.py), 'transition' (the index month) or 'post'.
with rel as (
    {{ panel_rel_months() }}
),
matched as (
    -- the matched sets, keys typed as in mart_matched_cohort (the matching's Python output
    -- has wider types, e.g. a timestamp index month)
    select
        cast(matched_set_id as bigint) as matched_set_id,
        cast(person_id as {{ dbt.type_string() }})     as person_id,
        cast(is_treated as integer)    as is_treated,
        cast(index_month as date)      as index_month,
        cast(ltc_group as {{ dbt.type_string() }})     as ltc_group,
        cast(practice_code as {{ dbt.type_string() }}) as practice_code
    from {{ source('matching', 'int_controls_matched_to_treated') }}
),
cohort_months as (
    select
        c.matched_set_id,
        c.person_id,
        c.is_treated,
        c.index_month,
        r.rel_month,
        {{ add_months('c.index_month', 'r.rel_month') }} as calendar_month,
        c.ltc_group,
        c.practice_code
    from matched c
    cross join rel r
)
select
    cm.matched_set_id,
    cm.person_id,
    cm.is_treated,
    cm.index_month,
    cm.rel_month,
    {{ panel_period('cm.rel_month') }} as period,
    cm.calendar_month,
    {{ panel_activity_columns('pm') }},
    cm.ltc_group,
    cm.practice_code
from cohort_months cm
left join {{ ref('int_activity_aggregated_to_person_months') }} pm
  on pm.person_id = cm.person_id and pm.calendar_month = cm.calendar_month
