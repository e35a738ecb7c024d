{#- National rule: a finished course of treatment is a referral that has ended with at least
    two treatment contacts. -#}
{% macro finished_course(is_ended, n_treatment_contacts) -%}
    coalesce({{ is_ended }}, false) and coalesce({{ n_treatment_contacts }}, 0) >= 2
{%- endmacro %}

{#- Months from the index month to a calendar month (both truncated to the month). -#}
{% macro rel_month(calendar_date, index_month) -%}
    datediff('month', date_trunc('month', {{ index_month }}), date_trunc('month', {{ calendar_date }}))
{%- endmacro %}

{#- Whole years of age in a month, from the month of birth. -#}
{% macro age_at(birth_month, at_date) -%}
    cast(floor(datediff('month', {{ birth_month }}, date_trunc('month', {{ at_date }})) / 12) as integer)
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
