-- PHQ-9 and GAD-7 totals per referral (scores reach a referral directly or through their
-- care activity and contact), first and last by assessment date.
with scores as (
    select
        coalesce(s.service_request_id, c.service_request_id) as service_request_id,
        case s.assessment_tool_code
            when '720433000' then 'phq9'
            when '445455005' then 'gad7'
        end as measure,
        s.score,
        s.assessment_date,
        s.coded_score_id
    from {{ ref('stg_iapt__coded_scores') }} s
    left join {{ ref('stg_iapt__care_activities') }} a on a.care_activity_id = s.care_activity_id
    left join {{ ref('stg_iapt__care_contacts') }} c on c.care_contact_id = a.care_contact_id
    where s.assessment_tool_code in ('720433000', '445455005') and s.score is not null
),
ranked as (
    select *,
        row_number() over (partition by service_request_id, measure order by assessment_date, coded_score_id) as rn_first,
        row_number() over (partition by service_request_id, measure order by assessment_date desc, coded_score_id desc) as rn_last,
        count(*) over (partition by service_request_id, measure) as n_scores
    from scores
    where service_request_id is not null
)
select
    service_request_id,
    max(case when measure = 'phq9' and rn_first = 1 then score end)                     as phq9_first,
    max(case when measure = 'phq9' and rn_last = 1 and n_scores >= 2 then score end)    as phq9_last,
    max(case when measure = 'gad7' and rn_first = 1 then score end)                     as gad7_first,
    max(case when measure = 'gad7' and rn_last = 1 and n_scores >= 2 then score end)    as gad7_last
from ranked
group by service_request_id
