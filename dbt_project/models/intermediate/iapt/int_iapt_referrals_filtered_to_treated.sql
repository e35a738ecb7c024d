-- Referrals that make a person "treated": on the IAPT-LTC pathway and either a finished
-- course or at least `min_treatment_contacts` treatment contacts. One row per person: the
-- earliest qualifying referral by index date. Index date = first treatment contact
-- (var index_date_rule = first_treatment_contact) or referral receipt (= referral_date).
with qualifying as (
    select
        r.*,
        {% if var('index_date_rule') == 'referral_date' -%}
        r.referral_received_date
        {%- else -%}
        coalesce(r.first_treatment_contact_date, r.referral_received_date)
        {%- endif %} as index_date
    from {{ ref('int_iapt_referrals_flagged_with_outcomes') }} r
    where r.is_ltc_pathway
      and (r.finished_course or r.n_treatment_contacts >= {{ var('min_treatment_contacts') }})
      and r.person_id is not null
),
ranked as (  -- the earliest qualifying referral (no QUALIFY: Spark has none)
    select *, row_number() over (partition by person_id order by index_date, service_request_id) as referral_rank
    from qualifying
)
select
    person_id,
    service_request_id,
    index_date,
    cast(date_trunc('month', index_date) as date) as index_month,
    referral_received_date,
    first_treatment_contact_date,
    n_treatment_contacts,
    finished_course,
    at_caseness_start,
    recovered,
    reliable_improvement,
    reliable_deterioration
from ranked
where referral_rank = 1
