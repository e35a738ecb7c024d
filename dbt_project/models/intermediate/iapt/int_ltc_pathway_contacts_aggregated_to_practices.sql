-- Practices offering the IAPT-LTC pathway: practices with a registered patient who had an
-- LTC-pathway contact; launch month = the month of the first such contact.
select
    p.practice_code,
    cast(date_trunc('month', min(c.care_contact_date)) as date) as ltc_pathway_launch_month,
    count(distinct p.person_id)                                   as n_ltc_pathway_patients
from {{ ref('int_iapt_care_contacts_flagged') }} c
join {{ ref('int_persons_joined_to_imd') }} p on p.person_id = c.person_id
where c.is_ltc_pathway_contact
  and p.practice_code is not null
group by p.practice_code
