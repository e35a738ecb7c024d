select
    cast(CareContactId as varchar)                as care_contact_id,
    cast(ServiceRequestId as varchar)             as service_request_id,
    cast(CareContDate as date)                    as care_contact_date,
    cast(AttendOrDNACode as varchar)              as attend_or_dna_code,
    cast(APPTYPE as varchar)                      as appointment_type,
    cast(ConsMechanism as varchar)                as consultation_mechanism,
    cast(IAPTLTCServiceInd as varchar)            as iapt_ltc_service_ind
from {{ source('iapt', 'iapt_care_contact') }}
