select
    cast(person_id as {{ dbt.type_string() }})                    as person_id,
    cast(APCS_Ident as {{ dbt.type_string() }})                   as apcs_ident,
    cast(Admission_Date as date)                  as admission_date,
    cast(Discharge_Date as date)                  as discharge_date,
    cast(Admission_Method as {{ dbt.type_string() }})             as admission_method,
    cast(Patient_Classification as {{ dbt.type_string() }})       as patient_classification,
    cast(Discharge_Method as {{ dbt.type_string() }})             as discharge_method,
    cast(Der_Spell_LoS as integer)                as length_of_stay,
    cast(Der_Diagnosis_All as {{ dbt.type_string() }})            as diagnosis_all,
    cast(Spell_Core_HRG_SUS as {{ dbt.type_string() }})           as core_hrg,
    cast(Age_At_Start_of_Spell_SUS as integer)    as age_at_start,
    cast(GP_Practice_Code as {{ dbt.type_string() }})             as gp_practice_code,
    cast(Der_Provider_Code as {{ dbt.type_string() }})            as provider_code
from {{ source('sus', 'apc') }}
