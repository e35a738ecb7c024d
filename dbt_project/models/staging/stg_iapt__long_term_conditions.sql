select
    cast(LongTermConditionId as varchar)          as long_term_condition_id,
    cast(ServiceRequestId as varchar)             as service_request_id,
    cast(LongTermCondition as varchar)            as long_term_condition
from {{ source('iapt', 'iapt_ltc') }}
