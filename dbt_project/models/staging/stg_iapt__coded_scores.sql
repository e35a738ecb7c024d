select
    cast(CodedScoreId as varchar)                 as coded_score_id,
    cast(ServiceRequestId as varchar)             as service_request_id,
    cast(CareActId as varchar)                    as care_activity_id,
    cast(CodedAssToolType as varchar)             as assessment_tool_code,
    cast(PersScore as double)                     as score,
    cast(AssToolCompDate as date)                 as assessment_date
from {{ source('iapt', 'iapt_coded_scores') }}
