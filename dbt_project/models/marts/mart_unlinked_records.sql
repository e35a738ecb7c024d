-- Records that could not be linked to a registered person (person_id null): dropped from the
-- person-level models; counted here per source table.
{%- set tables = ['stg_gp_conditions', 'stg_gp_appointments', 'stg_iapt_referral', 'stg_ecds', 'stg_apc', 'stg_opa'] %}
{%- for t in tables %}
select '{{ t[4:] }}' as source_table,
       count(*) as n_records,
       count(*) filter (where person_id is null) as n_unlinked
from {{ ref(t) }}
{% if not loop.last %}union all{% endif %}
{%- endfor %}
