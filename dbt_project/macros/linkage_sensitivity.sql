-- The linkage sensitivity's two optional source tables (docs/data-contracts.md section 3) are
-- read only when both were published: older outputs and upstream-pseudonymised runs have none.

{% macro linkage_alternatives_published() -%}
{#- True when linkage_alternatives and linkage_scenarios are both in the pseudonymised folder.
    Asked at run time (false while dbt parses: the models' source() calls make the lineage). -#}
{%- if not execute -%}{{ return(false) }}{%- endif -%}
{%- set folder = var('pseudonymised_dir', env_var('LTCEVAL_PSEUDONYMISED_DIR', '')) -%}
{%- set present = [] -%}
{%- for name in ['linkage_alternatives', 'linkage_scenarios'] -%}
{%- if pseudonymised_file_exists(folder ~ '/' ~ name ~ '.parquet') -%}{%- do present.append(name) -%}{%- endif -%}
{%- endfor -%}
{{ return(present | length == 2) }}
{%- endmacro %}


{% macro pseudonymised_file_exists(path) -%}
{{ return(adapter.dispatch('pseudonymised_file_exists')(path)) }}
{%- endmacro %}

{% macro duckdb__pseudonymised_file_exists(path) -%}
{%- set found = run_query("select count(*) from glob('" ~ path | replace("'", "''") ~ "')").columns[0].values()[0] -%}
{{ return(found | int > 0) }}
{%- endmacro %}

{% macro default__pseudonymised_file_exists(path) -%}
{#- Another warehouse (e.g. Spark) needs its own way to ask whether a file is there. -#}
{{ exceptions.raise_compiler_error("pseudonymised_file_exists is not implemented for adapter " ~ adapter.type()
                                   ~ ": add " ~ adapter.type() ~ "__pseudonymised_file_exists to macros/linkage_sensitivity.sql") }}
{%- endmacro %}
