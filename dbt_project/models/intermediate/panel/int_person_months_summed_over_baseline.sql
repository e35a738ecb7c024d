-- For each person-month m: activity in the baseline before m (months m-12..m-1), its
-- recent trend (months m-6..m-1 minus months m-12..m-7) and activity in the selection window
-- (months m-w..m-1, w = var selection_window_months: where referral decisions are made).
-- The panel is dense, so rows = months.
{%- set outcomes = ['ae_attendances', 'emergency_admissions', 'bed_days', 'outpatient_attendances', 'gp_appointments'] %}
{%- set n = var('baseline_months') | int %}
{%- set half = (n // 2) %}
{%- set w = var('selection_window_months') | int %}
select
    person_id,
    calendar_month,
    {%- for o in outcomes %}
    cast(coalesce(sum({{ o }}) over w_base, 0) as integer) as baseline_{{ o }},
    cast(coalesce(sum({{ o }}) over w_recent, 0) - coalesce(sum({{ o }}) over w_early, 0) as integer) as trend_{{ o }},
    cast(coalesce(sum({{ o }}) over w_selection, 0) as integer) as recent_{{ o }},
    {%- endfor %}
    count(*) over w_base as baseline_months_observed
from {{ ref('int_activity_aggregated_to_person_months') }}
window
    w_base   as (partition by person_id order by calendar_month rows between {{ n }} preceding and 1 preceding),
    w_recent as (partition by person_id order by calendar_month rows between {{ half }} preceding and 1 preceding),
    w_early  as (partition by person_id order by calendar_month rows between {{ n }} preceding and {{ half + 1 }} preceding),
    w_selection as (partition by person_id order by calendar_month rows between {{ w }} preceding and 1 preceding)
