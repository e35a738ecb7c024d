-- A&E attendances: consultant-led 24-hour departments (type 01), unplanned first attendance
-- (category 1), one per EC_Ident. Unlinked records (person_id null) are kept: the linkage
-- sensitivity (mart_linkage_sensitivity_deltas) gives them a person under another threshold;
-- the person-month panel joins on person_id, which leaves them out of every person's counts.
select distinct on (ec_ident)
    ec_ident,
    person_id,
    arrival_date,
    date_trunc('month', arrival_date) as activity_month
from {{ ref('stg_ecds__attendances') }}
where try_cast(department_type as integer) = 1
  and try_cast(attendance_category as integer) = 1
  and arrival_date is not null
order by ec_ident, arrival_date
