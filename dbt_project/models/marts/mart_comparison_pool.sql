-- Comparison pool (design var `comparison_design`, default not_yet_referred): people with an
-- LTC who were eligible as a control at one or more treated index months, one row a person.
select
    person_id,
    any_value(practice_code)   as practice_code,
    any_value(sex)             as sex,
    count(*)                   as n_eligible_index_months,
    min(index_month)           as first_eligible_index_month,
    max(index_month)           as last_eligible_index_month,
    '{{ var("comparison_design") }}' as comparison_design
from {{ ref('int_match_pool_filtered_to_eligible') }}
where is_treated = 0
group by person_id
