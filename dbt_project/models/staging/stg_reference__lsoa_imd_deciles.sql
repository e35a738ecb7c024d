select
    cast(LSOA11 as {{ dbt.type_string() }})                       as lsoa11,
    cast(IMD_Decile as integer)                   as imd_decile
from {{ source('reference', 'lsoa_imd') }}
