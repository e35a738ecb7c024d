select
    cast(CareActId as varchar)                    as care_activity_id,
    cast(CareContactId as varchar)                as care_contact_id,
    cast(CodeProcAndProcStatus as varchar)        as procedure_code
from read_parquet('w200000-302-null-anyprac6/analytical/pseudonymised/iapt_care_activity.parquet')