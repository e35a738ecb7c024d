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
from {{ ref('stg_gp__registered_persons') }} p
left join {{ ref('stg_reference__lsoa_imd_deciles') }} imd on imd.lsoa11 = p.lsoa11
where p.person_id is not null
