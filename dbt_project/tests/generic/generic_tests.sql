{% test value_between(model, column_name, min_value, max_value) %}
select * from {{ model }}
where {{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }}
{% endtest %}

{% test unique_combination(model, columns) %}
-- grouped on a 64-bit hash of the columns first: grouping tens of millions of rows on the
-- text ids themselves spilled (305 s for the 2,000,000-person panel); a repeated combination
-- always shares its hash, and the exact grouping then runs only on the rows whose hash repeats
with repeated_hashes as (
    select hash({{ columns | join(', ') }}) as h
    from {{ model }}
    group by 1
    having count(*) > 1
)
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
where hash({{ columns | join(', ') }}) in (select h from repeated_hashes)
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{% test controls_untreated_at_index(model) %}
-- Every matched control was still a possible control at its index month. Design
-- not_yet_referred: no IAPT referral by the end of the index month, and a treated person is a
-- control only at an index month before their own. Other designs: never a treated person, and
-- no IAPT treatment before the index month.
{%- if var('comparison_design') == 'not_yet_referred' %}
select c.person_id, c.index_month
from {{ model }} c
join {{ ref('int_iapt_referrals_flagged_with_outcomes') }} r on r.person_id = c.person_id
where c.is_treated = 0
  and r.referral_received_date < c.index_month + interval 1 month
union all
select c.person_id, c.index_month
from {{ model }} c
join {{ model }} t on t.person_id = c.person_id and t.is_treated = 1
where c.is_treated = 0
  and t.index_month <= c.index_month
{%- else %}
select c.person_id, c.index_month
from {{ model }} c
where c.is_treated = 0
  and (c.person_id in (select person_id from {{ ref('mart_treated_cohort') }})
       or c.person_id in (select person_id from {{ model }} where is_treated = 1)
       or c.person_id in (select person_id from {{ ref('int_iapt_care_contacts_flagged') }}
                          where is_treatment_contact and care_contact_date < c.index_month))
{%- endif %}
{% endtest %}

{% test exactly_one_row(model) %}
select count(*) as n from {{ model }} having count(*) <> 1
{% endtest %}
