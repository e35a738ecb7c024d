select
    cast(person_id as varchar)                        as person_id,
    cast(EC_Ident as varchar)                         as ec_ident,
    cast(Arrival_Date as date)                        as arrival_date,
    cast(EC_Department_Type as varchar)               as department_type,
    cast(EC_AttendanceCategory as varchar)            as attendance_category,
    cast(EC_Arrival_Mode_SNOMED_CT as varchar)        as arrival_mode_snomed,
    cast(EC_Chief_Complaint_SNOMED_CT as varchar)     as chief_complaint_snomed,
    cast(EC_Diagnosis_01 as varchar)                  as diagnosis_01,
    cast(Discharge_Destination_SNOMED_CT as varchar)  as discharge_destination_snomed,
    cast(Age_At_Arrival as integer)                   as age_at_arrival,
    cast(GP_Practice_Code as varchar)                 as gp_practice_code,
    cast(Der_Provider_Code as varchar)                as provider_code
from {{ source('ecds', 'ecds') }}
