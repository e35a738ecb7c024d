select
    cast(LongTermConditionId as {{ dbt.type_string() }})          as long_term_condition_id,
    cast(ServiceRequestId as {{ dbt.type_string() }})             as service_request_id,
    cast(LongTermCondition as {{ dbt.type_string() }})            as long_term_condition
from {{ source('iapt', 'iapt_ltc') }}
