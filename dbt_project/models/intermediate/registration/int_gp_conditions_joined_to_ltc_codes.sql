-- LTC register entries from the practice system, grouped (seed ltc_codes; codes not in the
-- seed are kept as group 'other').
select
    g.person_id,
    g.condition_record_id,
    g.snomed_code,
    coalesce(l.condition, 'other: ' || g.snomed_code) as condition,
    coalesce(l.ltc_group, 'other')                    as ltc_group,
    g.diagnosis_date
from {{ ref('stg_gp__conditions') }} g
left join {{ ref('ltc_codes') }} l on l.snomed_code = g.snomed_code
where g.person_id is not null
