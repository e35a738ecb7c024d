select
    cast(person_id as {{ dbt.type_string() }})                        as person_id,
    cast(EC_Ident as {{ dbt.type_string() }})                         as ec_ident,
    cast(Arrival_Date as date)                        as arrival_date,
    cast(EC_Department_Type as {{ dbt.type_string() }})               as department_type,
    cast(EC_AttendanceCategory as {{ dbt.type_string() }})            as attendance_category,
    cast(EC_Arrival_Mode_SNOMED_CT as {{ dbt.type_string() }})        as arrival_mode_snomed,
    cast(EC_Chief_Complaint_SNOMED_CT as {{ dbt.type_string() }})     as chief_complaint_snomed,
    cast(EC_Diagnosis_01 as {{ dbt.type_string() }})                  as diagnosis_01,
    cast(Discharge_Destination_SNOMED_CT as {{ dbt.type_string() }})  as discharge_destination_snomed,
    cast(Age_At_Arrival as integer)                   as age_at_arrival,
    cast(GP_Practice_Code as {{ dbt.type_string() }})                 as gp_practice_code,
    cast(Der_Provider_Code as {{ dbt.type_string() }})                as provider_code
from {{ source('ecds', 'ecds') }}
