{% macro register_pseudonymised_sources() %}
  {#- Spark: the pseudonymised Parquet tables as external tables named as dbt's sources resolve -#}
  {%- if execute and target.type == 'spark' -%}
    {%- set folder = var('pseudonymised_dir', env_var('LTCEVAL_PSEUDONYMISED_DIR', '')) -%}
    {%- for node in graph.sources.values() -%}
      {%- do run_query('create database if not exists ' ~ node.schema) -%}
      {%- do run_query('create table if not exists ' ~ node.schema ~ '.' ~ node.identifier ~ " using parquet location '" ~ folder ~ '/' ~ node.name ~ ".parquet'") -%}
    {%- endfor -%}
  {%- endif -%}
{% endmacro %}
