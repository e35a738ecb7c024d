select
    cast(person_id as varchar)                    as person_id,
    cast(APCS_Ident as varchar)                   as apcs_ident,
    cast(Admission_Date as date)                  as admission_date,
    cast(Discharge_Date as date)                  as discharge_date,
    cast(Admission_Method as varchar)             as admission_method,
    cast(Patient_Classification as varchar)       as patient_classification,
    cast(Discharge_Method as varchar)             as discharge_method,
    cast(Der_Spell_LoS as integer)                as length_of_stay,
    cast(Der_Diagnosis_All as varchar)            as diagnosis_all,
    cast(Spell_Core_HRG_SUS as varchar)           as core_hrg,
    cast(Age_At_Start_of_Spell_SUS as integer)    as age_at_start,
    cast(GP_Practice_Code as varchar)             as gp_practice_code,
    cast(Der_Provider_Code as varchar)            as provider_code
from {{ source('sus', 'apc') }}
