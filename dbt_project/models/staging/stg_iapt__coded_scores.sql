select
    cast(CodedScoreId as {{ dbt.type_string() }})                 as coded_score_id,
    cast(ServiceRequestId as {{ dbt.type_string() }})             as service_request_id,
    cast(CareActId as {{ dbt.type_string() }})                    as care_activity_id,
    cast(CodedAssToolType as {{ dbt.type_string() }})             as assessment_tool_code,
    cast(PersScore as double)                     as score,
    cast(AssToolCompDate as date)                 as assessment_date
from {{ source('iapt', 'iapt_coded_scores') }}
