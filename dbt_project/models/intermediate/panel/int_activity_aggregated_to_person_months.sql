-- Dense person x calendar month panel of the study window: exposure (fraction of the month
-- registered and alive) and monthly activity counts, activity bucketed by its date's month.
-- A count is null where nothing was recorded: the panels (mart_person_month_panel and the
-- evaluation panels) zero-fill and type them with the macro panel_activity_columns.
with persons as (
    select person_id, registration_start, censor_date from {{ ref('int_persons_joined_to_imd') }}
),
ae as (
    select person_id, activity_month, count(*) as n from {{ ref('int_ae_attendances_filtered_to_type_01') }} group by all
),
em as (
    select person_id, activity_month, count(*) as n, sum(bed_days) as bed_days
    from {{ ref('int_apc_spells_filtered_to_emergency') }} group by all
),
op as (
    select person_id, activity_month, count(*) as n from {{ ref('int_outpatient_appointments_filtered_to_attended') }} group by all
),
gp as (
    select person_id, activity_month, count(*) as n from {{ ref('int_gp_appointments_filtered_to_attended') }} group by all
),
iapt as (
    select person_id, date_trunc('month', care_contact_date) as activity_month, count(*) as n
    from {{ ref('int_iapt_care_contacts_flagged') }}
    where is_treatment_contact and person_id is not null
    group by all
),
grid as (
    select
        p.person_id,
        m.calendar_month,
        m.days_in_month,
        greatest(
            0,
            datediff(
                'day',
                greatest(coalesce(p.registration_start, m.calendar_month), m.calendar_month),
                least(coalesce(p.censor_date, m.month_end), m.month_end)
            ) + 1
        ) as days_exposed
    from persons p
    cross join {{ ref('int_calendar_months_spanned_by_activity') }} m
)
select
    g.person_id,
    g.calendar_month,
    cast(least(1.0, g.days_exposed / g.days_in_month) as double)  as exposure_months,
    ae.n                                                           as ae_attendances,
    em.n                                                           as emergency_admissions,
    em.bed_days                                                    as bed_days,
    op.n                                                           as outpatient_attendances,
    gp.n                                                           as gp_appointments,
    iapt.n                                                         as iapt_treatment_contacts
from grid g
left join ae   on ae.person_id = g.person_id   and ae.activity_month = g.calendar_month
left join em   on em.person_id = g.person_id   and em.activity_month = g.calendar_month
left join op   on op.person_id = g.person_id   and op.activity_month = g.calendar_month
left join gp   on gp.person_id = g.person_id   and gp.activity_month = g.calendar_month
left join iapt on iapt.person_id = g.person_id and iapt.activity_month = g.calendar_month
