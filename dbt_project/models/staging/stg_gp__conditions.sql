select
    cast(person_id as {{ dbt.type_string() }})            as person_id,
    cast(ConditionRecordId as {{ dbt.type_string() }})    as condition_record_id,
    cast(SNOMEDCode as {{ dbt.type_string() }})           as snomed_code,
    cast(DiagnosisDate as date)           as diagnosis_date
from {{ source('gp', 'gp_conditions') }}
