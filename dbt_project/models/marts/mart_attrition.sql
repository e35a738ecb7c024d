-- Attrition (flow) table: persons remaining after each step, treated then control side.
{%- set exact = var('matching_exact') %}
with referrals as (
    select * from {{ ref('int_iapt_referrals_flagged_with_outcomes') }} where person_id is not null
),
treated_pool as (
    select p.*
    from {{ ref('int_match_pool_stacked_by_index_month') }} p
    join {{ ref('int_iapt_referrals_filtered_to_treated') }} t
      on t.person_id = p.person_id and t.index_month = p.index_month
    where p.is_treated = 1
),
candidates as (
    select * from {{ ref('int_match_pool_filtered_to_eligible') }}
),
with_stratum as (
    select count(distinct t.person_id) as n
    from candidates t
    where t.is_treated = 1
      and exists (
          select 1 from candidates c
          where c.is_treated = 0
            and c.index_month = t.index_month
            {%- for col in exact %}
            and c.{{ col }} = t.{{ col }}
            {%- endfor %}
      )
),
matched as (
    select
        count(distinct person_id) filter (where is_treated = 1) as n_treated,
        count(distinct person_id) filter (where is_treated = 0) as n_control
    from {{ source('matching', 'int_controls_matched_to_treated') }}
),
full_sets as (
    select count(*) as n
    from (
        select matched_set_id
        from {{ source('matching', 'int_controls_matched_to_treated') }}
        group by matched_set_id
        having count(*) filter (where is_treated = 0) >= {{ var('matching_ratio') }}
    )
),
steps as (
    select 1 as step_order, 'treated' as cohort, 'persons linked on the GP registered list' as step,
           (select count(*) from {{ ref('int_persons_joined_to_imd') }}) as n_persons
    union all select 2, 'treated', 'with an IAPT referral', (select count(distinct person_id) from referrals)
    union all select 3, 'treated', 'with a referral on the IAPT-LTC pathway',
           (select count(distinct person_id) from referrals where is_ltc_pathway)
    union all select 4, 'treated', 'finished course or >= {{ var("min_treatment_contacts") }} treatment contacts',
           (select count(*) from {{ ref('int_iapt_referrals_filtered_to_treated') }})
    union all select 5, 'treated', 'adult at index', (select count(*) from treated_pool where is_adult)
    union all select 6, 'treated', 'baseline within the study data',
           (select count(*) from treated_pool where is_adult and baseline_in_study_data)
    union all select 7, 'treated', 'registered for the whole baseline',
           (select count(*) from treated_pool where is_adult and baseline_in_study_data and registered_whole_baseline)
    union all select 8, 'treated', 'registered and alive at index',
           (select count(*) from treated_pool where is_adult and baseline_in_study_data and registered_whole_baseline
                                               and registered_alive_at_index)
    union all select 9, 'treated', 'LTC on the GP register by the index month',
           (select count(*) from treated_pool where is_adult and baseline_in_study_data and registered_whole_baseline
                                               and registered_alive_at_index and has_ltc)
    union all select 10, 'treated', 'IMD decile known (eligible for matching)',
           (select count(*) from candidates where is_treated = 1)
    union all select 11, 'treated', 'a comparison candidate in the same exact stratum and index month',
           (select n from with_stratum)
    union all select 12, 'treated', 'matched (>= 1 control within the caliper)', (select n_treated from matched)
    union all select 13, 'treated', 'matched with the full {{ var("matching_ratio") }} controls', (select n from full_sets)
    union all select 21, 'control', 'comparison pool ({{ var("comparison_design") }}): eligible at >= 1 index month',
           (select count(distinct person_id) from candidates where is_treated = 0)
    union all select 22, 'control', 'matched controls', (select n_control from matched)
)
select cast(step_order as integer) as step_order,
       cast(step as {{ dbt.type_string() }})       as step,
       cast(n_persons as bigint)   as n_persons,
       cast(cohort as {{ dbt.type_string() }})     as cohort
from steps
