select
    cast(LSOA11 as varchar)                       as lsoa11,
    cast(IMD_Decile as integer)                   as imd_decile
from {{ source('reference', 'lsoa_imd') }}
