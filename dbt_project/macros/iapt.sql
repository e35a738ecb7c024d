{#- National rule: a finished course of treatment is a referral that has ended with at least
    two treatment contacts. -#}
{% macro finished_course(is_ended, n_treatment_contacts) -%}
    coalesce({{ is_ended }}, false) and coalesce({{ n_treatment_contacts }}, 0) >= 2
{%- endmacro %}

{#- Months from the index month to a calendar month (both truncated to the month). -#}
{% macro rel_month(calendar_date, index_month) -%}
    {{ months_between(index_month, calendar_date) }}
{%- endmacro %}

{#- Whole years of age in a month, from the month of birth. -#}
{% macro age_at(birth_month, at_date) -%}
    cast(floor({{ months_between(birth_month, at_date) }} / 12) as integer)
{%- endmacro %}

{#- Integer banding: band(expr, [65], 18) gives '18-64', '65+'; band(x, [1], 0) gives '0', '1+'. -#}
{% macro band(expr, breaks, lowest) -%}
    {%- set edges = [lowest | int] + (breaks | map('int') | list) -%}
    case
    {%- for i in range(edges | length - 1) %}
        {%- set lo = edges[i] %}{%- set hi = edges[i + 1] - 1 %}
        when {{ expr }} < {{ edges[i + 1] }} then '{{ lo }}{% if hi != lo %}-{{ hi }}{% endif %}'
    {%- endfor %}
        else '{{ edges[-1] }}+'
    end
{%- endmacro %}

{#- The evaluation panels' relative months: -panel_months_before..panel_months_after. -#}
{% macro panel_rel_months() -%}
    select cast(r as integer) as rel_month
    from {{ integer_series(-(var('panel_months_before') | int), var('panel_months_after'), 't', 'r') }}
{%- endmacro %}

{#- Period of a relative month (evaluation/panel.py): 'pre' = the DiD comparison period,
    'selection' = the last selection_window_months months before the index, 'transition' = the
    index month, 'post'. -#}
{% macro panel_period(rel_month) -%}
    {%- set w = var('selection_window_months') | int -%}
    case
        when {{ rel_month }} < -{{ w }} then 'pre'
        when {{ rel_month }} < 0 then 'selection'
        when {{ rel_month }} = 0 then 'transition'
        else 'post'
    end
{%- endmacro %}

{#- Exposure, the five outcome counts and the negative controls' counts of a person-month (alias of
    int_activity_aggregated_to_person_months, left joined), zero-filled and typed: counts
    nothing was recorded for are 0, months outside the study data get exposure 0. -#}
{% macro panel_activity_columns(pm) -%}
    cast(coalesce({{ pm }}.exposure_months, 0) as double)          as exposure_months,
    cast(coalesce({{ pm }}.ae_attendances, 0) as integer)          as ae_attendances,
    cast(coalesce({{ pm }}.emergency_admissions, 0) as integer)    as emergency_admissions,
    cast(coalesce({{ pm }}.bed_days, 0) as integer)                as bed_days,
    cast(coalesce({{ pm }}.outpatient_attendances, 0) as integer)  as outpatient_attendances,
    cast(coalesce({{ pm }}.gp_appointments, 0) as integer)         as gp_appointments
    {%- for nc in negative_controls() %},
    cast(coalesce({{ pm }}.{{ nc }}, 0) as integer)                 as {{ nc }}
    {%- endfor %}
{%- endmacro %}
