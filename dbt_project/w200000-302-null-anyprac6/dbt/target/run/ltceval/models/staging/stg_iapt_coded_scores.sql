
  
  create view "warehouse"."main"."stg_iapt_coded_scores__dbt_tmp" as (
    select
    cast(CodedScoreId as varchar)                 as coded_score_id,
    cast(ServiceRequestId as varchar)             as service_request_id,
    cast(CareActId as varchar)                    as care_activity_id,
    cast(CodedAssToolType as varchar)             as assessment_tool_code,
    cast(PersScore as double)                     as score,
    cast(AssToolCompDate as date)                 as assessment_date
from read_parquet('w200000-302-null-anyprac6/analytical/pseudonymised/iapt_coded_scores.parquet')
  );
