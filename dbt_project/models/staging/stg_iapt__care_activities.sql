select
    cast(CareActId as {{ dbt.type_string() }})                    as care_activity_id,
    cast(CareContactId as {{ dbt.type_string() }})                as care_contact_id,
    cast(CodeProcAndProcStatus as {{ dbt.type_string() }})        as procedure_code
from {{ source('iapt', 'iapt_care_activity') }}
