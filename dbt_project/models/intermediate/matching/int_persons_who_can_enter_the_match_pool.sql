-- People who can have a matching-pool row not excluded for want of an LTC (has_ltc needs an
-- entry on the GP LTC register by the index month), and the treated whatever their
-- eligibility (the attrition table and the treated cohort count them). Baseline sums and
-- stacked control rows are worked out for these people only: the rest can never be matched,
-- and summing all 120 million person-months at 2,000,000 people took 571 s.
select person_id from {{ ref('int_gp_conditions_joined_to_ltc_codes') }}
union
select person_id from {{ ref('int_iapt_referrals_filtered_to_treated') }}
