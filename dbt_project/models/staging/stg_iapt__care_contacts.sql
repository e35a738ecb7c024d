select
    cast(CareContactId as {{ dbt.type_string() }})                as care_contact_id,
    cast(ServiceRequestId as {{ dbt.type_string() }})             as service_request_id,
    cast(CareContDate as date)                    as care_contact_date,
    cast(AttendOrDNACode as {{ dbt.type_string() }})              as attend_or_dna_code,
    cast(APPTYPE as {{ dbt.type_string() }})                      as appointment_type,
    cast(ConsMechanism as {{ dbt.type_string() }})                as consultation_mechanism,
    cast(IAPTLTCServiceInd as {{ dbt.type_string() }})            as iapt_ltc_service_ind
from {{ source('iapt', 'iapt_care_contact') }}
