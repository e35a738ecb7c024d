{% test value_between(model, column_name, min_value, max_value) %}
select * from {{ model }}
where {{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }}
{% endtest %}

{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{% test treated_not_in_controls(model) %}
-- no matched control is a treated person (of the treated cohort or of this table)
select c.person_id
from {{ model }} c
where c.is_treated = 0
  and (c.person_id in (select person_id from {{ ref('mart_treated_cohort') }})
       or c.person_id in (select person_id from {{ model }} where is_treated = 1))
{% endtest %}
