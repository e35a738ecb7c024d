
    

    create  table
      "warehouse"."main"."int_outpatient_attendances__dbt_tmp"
  
    
    as (
      -- Outpatient attendances: ATTENDED 5 (seen on time) or 6 (late but seen).
select
    attend_key,
    person_id,
    appointment_date,
    first_attendance,
    treatment_specialty,
    date_trunc('month', appointment_date) as activity_month
from "warehouse"."main"."stg_opa"
where person_id is not null
  and try_cast(attended_code as integer) in (5, 6)
  and appointment_date is not null
    );
    
  