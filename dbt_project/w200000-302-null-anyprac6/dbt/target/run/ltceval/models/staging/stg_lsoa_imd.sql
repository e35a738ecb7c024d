
  
  create view "warehouse"."main"."stg_lsoa_imd__dbt_tmp" as (
    select
    cast(LSOA11 as varchar)                       as lsoa11,
    cast(IMD_Decile as integer)                   as imd_decile
from read_parquet('w200000-302-null-anyprac6/analytical/pseudonymised/lsoa_imd.parquet')
  );
