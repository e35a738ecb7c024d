{% macro register_pseudonymised_sources() %}
  {#- Spark: the pseudonymised Parquet tables as external tables named as dbt's sources resolve -#}
  {%- if execute and target.type == 'spark' -%}
    {%- set folder = var('pseudonymised_dir', env_var('LTCEVAL_PSEUDONYMISED_DIR', '')) -%}
    {#- only the pseudonymised sources (an external_location): source `matching` is the matching
        step's managed tables, written between dbt's two selections, never to be dropped here -#}
    {%- for node in graph.sources.values() if (node.meta or {}).get('external_location') or (node.config.meta or {}).get('external_location') -%}
      {%- do run_query('create database if not exists ' ~ node.schema) -%}
      {#- external tables: dropping one leaves its file; made again, it points at this run's folder -#}
      {%- do run_query('drop table if exists ' ~ node.schema ~ '.' ~ node.identifier) -%}
      {%- do run_query('create table ' ~ node.schema ~ '.' ~ node.identifier ~ " using parquet location '" ~ folder ~ '/' ~ node.name ~ ".parquet'") -%}
    {%- endfor -%}
  {%- endif -%}
{% endmacro %}
