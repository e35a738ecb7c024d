-- Negative-control events (seed negative_control_codes; docs/negative-controls.md): attended
-- outpatient appointments in the listed specialties, and planned spells (Admission_Method
-- 11-13) whose primary diagnosis (the first ICD-10 code of Der_Diagnosis_All) is in the listed
-- categories. One row per event, counted in the month of the appointment or admission.
with codes as (
    select negative_control, source, upper(trim(code)) as code
    from {{ ref('negative_control_codes') }}
),
outpatient as (
    select o.person_id, o.activity_month, c.negative_control
    from {{ ref('int_outpatient_appointments_filtered_to_attended') }} o
    join codes c on c.source = 'opa' and c.code = upper(trim(o.treatment_specialty))
    where o.person_id is not null  -- the outpatient model keeps unlinked records
),
planned_spells as (
    select person_id, date_trunc('month', admission_date) as activity_month,
           -- the ICD-10 category (letter and two digits) of the first code listed
           regexp_extract(upper(diagnosis_all), '([A-Z][0-9]{2})', 1) as diagnosis_category
    from {{ ref('stg_sus__apc_spells') }}
    where person_id is not null
      and admission_method in ('11', '12', '13')
      and admission_date is not null
)
select person_id, activity_month, negative_control
from outpatient
union all
select s.person_id, s.activity_month, c.negative_control
from planned_spells s
join codes c on c.source = 'apc' and c.code = s.diagnosis_category
