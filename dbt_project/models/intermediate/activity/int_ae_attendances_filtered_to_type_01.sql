-- A&E attendances: consultant-led 24-hour departments (type 01), unplanned first attendance
-- (category 1), one per EC_Ident. Unlinked records (person_id null) are kept: the linkage
-- sensitivity (mart_linkage_sensitivity_deltas) gives them a person under another threshold;
-- the person-month panel joins on person_id, which leaves them out of every person's counts.
with ranked as (  -- one row per EC_Ident, its first arrival (no DISTINCT ON: Spark has none)
    select
        ec_ident,
        person_id,
        arrival_date,
        cast(date_trunc('month', arrival_date) as date) as activity_month,
        row_number() over (partition by ec_ident order by arrival_date) as arrival_rank
    from {{ ref('stg_ecds__attendances') }}
    where try_cast(department_type as integer) = 1
      and try_cast(attendance_category as integer) = 1
      and arrival_date is not null
)
select ec_ident, person_id, arrival_date, activity_month
from ranked
where arrival_rank = 1
