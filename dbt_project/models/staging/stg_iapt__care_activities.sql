select
    cast(CareActId as varchar)                    as care_activity_id,
    cast(CareContactId as varchar)                as care_contact_id,
    cast(CodeProcAndProcStatus as varchar)        as procedure_code
from {{ source('iapt', 'iapt_care_activity') }}
