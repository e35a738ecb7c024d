select
    cast(person_id as varchar)                    as person_id,
    cast(ServiceRequestId as varchar)             as service_request_id,
    cast(OrgIDProv as varchar)                    as org_id_prov,
    cast(ReferralRequestReceivedDate as date)     as referral_received_date,
    cast(SourceOfReferralIAPT as varchar)         as source_of_referral,
    cast(ServDischDate as date)                   as discharge_date,
    cast(ENDCODE as varchar)                      as end_code
from {{ source('iapt', 'iapt_referral') }}
