select
    cast(person_id as varchar)            as person_id,
    cast(ConditionRecordId as varchar)    as condition_record_id,
    cast(SNOMEDCode as varchar)           as snomed_code,
    cast(DiagnosisDate as date)           as diagnosis_date
from {{ source('gp', 'gp_conditions') }}
