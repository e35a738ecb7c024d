
    

    create  table
      "warehouse"."main"."int_persons__dbt_tmp"
  
    
    as (
      -- One row per linked person with the attributes used for eligibility and matching.
-- censor_date: the earlier of de-registration and death (null = still registered and alive).
select
    p.person_id,
    coalesce(p.sex, 'U')                                         as sex,
    p.year_of_birth,
    p.month_of_birth,
    make_date(p.year_of_birth, coalesce(p.month_of_birth, 7), 1) as birth_month,
    p.ethnic_category,
    p.lsoa11,
    imd.imd_decile,
    p.practice_code,
    p.registration_start,
    p.registration_end,
    p.date_of_death,
    least(p.registration_end, p.date_of_death)                   as censor_date
from "warehouse"."main"."stg_person" p
left join "warehouse"."main"."stg_lsoa_imd" imd on imd.lsoa11 = p.lsoa11
where p.person_id is not null
    );
    
  