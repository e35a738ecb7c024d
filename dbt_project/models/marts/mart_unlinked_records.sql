-- Records that could not be linked to a registered person (person_id null): dropped from the
-- person-level models; counted here per source table (the identifiable zone's table names).
{%- set tables = {
    'gp_conditions': 'stg_gp__conditions',
    'gp_appointments': 'stg_gp__appointments',
    'iapt_referral': 'stg_iapt__referrals',
    'ecds': 'stg_ecds__attendances',
    'apc': 'stg_sus__apc_spells',
    'opa': 'stg_sus__outpatient_appointments',
} %}
{%- for source_table, model in tables.items() %}
select '{{ source_table }}' as source_table,
       count(*) as n_records,
       count(*) filter (where person_id is null) as n_unlinked
from {{ ref(model) }}
{% if not loop.last %}union all{% endif %}
{%- endfor %}
