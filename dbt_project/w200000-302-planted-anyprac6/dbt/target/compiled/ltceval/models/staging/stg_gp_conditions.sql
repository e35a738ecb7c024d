select
    cast(person_id as varchar)            as person_id,
    cast(ConditionRecordId as varchar)    as condition_record_id,
    cast(SNOMEDCode as varchar)           as snomed_code,
    cast(DiagnosisDate as date)           as diagnosis_date
from read_parquet('w200000-302-planted-anyprac6/analytical/pseudonymised/gp_conditions.parquet')