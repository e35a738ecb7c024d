select
    cast(person_id as {{ dbt.type_string() }})                    as person_id,
    cast(ServiceRequestId as {{ dbt.type_string() }})             as service_request_id,
    cast(OrgIDProv as {{ dbt.type_string() }})                    as org_id_prov,
    cast(ReferralRequestReceivedDate as date)     as referral_received_date,
    cast(SourceOfReferralIAPT as {{ dbt.type_string() }})         as source_of_referral,
    cast(ServDischDate as date)                   as discharge_date,
    cast(ENDCODE as {{ dbt.type_string() }})                      as end_code
from {{ source('iapt', 'iapt_referral') }}
