{#- SQL that DuckDB and Spark spell differently, written once here (adapter.dispatch); dbt's own
    cross-database macros are used where they fit (type_string), but spark__datediff fails on a
    null date, which these columns hold. -#}

{#- Days from date a to date b (b - a), null when either is null. -#}
{% macro days_between(a, b) -%}{{ return(adapter.dispatch('days_between')(a, b)) }}{%- endmacro %}
{% macro default__days_between(a, b) -%}datediff('day', {{ a }}, {{ b }}){%- endmacro %}
{% macro spark__days_between(a, b) -%}datediff({{ b }}, {{ a }}){%- endmacro %}

{#- Calendar months from the month of a to the month of b (the same expression on every engine). -#}
{% macro months_between(a, b) -%}
    ((year({{ b }}) - year({{ a }})) * 12 + month({{ b }}) - month({{ a }}))
{%- endmacro %}

{#- A FROM item: the integers lo..hi as column `name` of table `alias`. -#}
{% macro integer_series(lo, hi, alias, name) -%}{{ return(adapter.dispatch('integer_series')(lo, hi, alias, name)) }}{%- endmacro %}
{% macro default__integer_series(lo, hi, alias, name) -%}generate_series({{ lo }}, {{ hi }}) as {{ alias }}({{ name }}){%- endmacro %}
{% macro spark__integer_series(lo, hi, alias, name) -%}explode(sequence({{ lo }}, {{ hi }})) as {{ alias }}({{ name }}){%- endmacro %}

{#- A FROM clause: each row of `source` with the first days of the months from the month of
    `first` to that of `last` (columns of `source`) as column `name`. -#}
{% macro from_month_series(source, first, last, alias, name) -%}{{ return(adapter.dispatch('from_month_series')(source, first, last, alias, name)) }}{%- endmacro %}
{% macro default__from_month_series(source, first, last, alias, name) -%}
    {{ source }}, generate_series(date_trunc('month', {{ first }}), date_trunc('month', {{ last }}), interval 1 month) as {{ alias }}({{ name }})
{%- endmacro %}
{% macro spark__from_month_series(source, first, last, alias, name) -%}
    {{ source }} lateral view explode(sequence(cast(date_trunc('month', {{ first }}) as date),
                                               cast(date_trunc('month', {{ last }}) as date), interval 1 month)) {{ alias }} as {{ name }}
{%- endmacro %}

{#- A CTE computed once (DuckDB's hint; Spark decides for itself). -#}
{% macro materialized_cte() -%}{{ return(adapter.dispatch('materialized_cte')()) }}{%- endmacro %}
{% macro default__materialized_cte() -%}{%- endmacro %}
{% macro duckdb__materialized_cte() -%}materialized{%- endmacro %}

{#- Every column of `relation` but `excluded`, quoted (DuckDB's `* exclude (...)`; Spark names
    them as its `* except` does not on every version). -#}
{% macro star_except(relation, excluded) -%}
    {%- if not execute -%}*{%- else -%}
    {%- set cols = adapter.get_columns_in_relation(relation) | map(attribute='name') | reject('in', excluded) | list -%}
    {{ cols | map('lower') | join(', ') if target.type == 'spark' else cols | join(', ') }}
    {%- endif -%}
{%- endmacro %}

{#- The date `d` moved by `n` whole months (an expression): a DATE on every engine. -#}
{% macro add_months(d, n) -%}{{ return(adapter.dispatch('add_months')(d, n)) }}{%- endmacro %}
{% macro default__add_months(d, n) -%}cast({{ d }} + to_months({{ n }}) as date){%- endmacro %}
{% macro spark__add_months(d, n) -%}add_months({{ d }}, {{ n }}){%- endmacro %}
