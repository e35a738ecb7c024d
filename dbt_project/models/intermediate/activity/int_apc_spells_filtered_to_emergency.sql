-- Emergency admissions (spells whose Admission_Method starts with 2). Bed days = length of
-- stay (Der_Spell_LoS, else discharge - admission), counted in the month of admission.
-- Unlinked spells (person_id null) are kept for the linkage sensitivity, as in
-- int_ae_attendances_filtered_to_type_01.
select
    apcs_ident,
    person_id,
    admission_date,
    discharge_date,
    admission_method,
    coalesce(length_of_stay, {{ days_between('admission_date', 'discharge_date') }}, 0) as bed_days,
    date_trunc('month', admission_date) as activity_month
from {{ ref('stg_sus__apc_spells') }}
where admission_method like '2%'
  and admission_date is not null
