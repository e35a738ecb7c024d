-- How the matched cohort's monthly outcome counts change when activity records are attributed
-- with the stricter or the looser links (docs/data-contracts.md section 4). Deltas against the
-- main panel, not a second panel: only the records whose person changes contribute, so the
-- model is as small as int_linkage_alternatives at any population and the panel is not copied
-- per scenario. A record counts -1 for its main person and +1 for its alternative person (each
-- when not null and in the matched cohort); the outcomes are those of the activity models, the
-- one definition of each. The design is held fixed: iapt_referral records that move would
-- change who is treated, and are not used here (no re-matching). GP appointments reach their
-- person through the GP list, never through probabilistic links: their delta is 0.
with alternatives as (
    select * from {{ ref('int_linkage_alternatives') }}
),
scenarios as (
    select 'stricter' as scenario
    union all
    select 'looser' as scenario
),
activity as (
    -- the published record id, the main person, the month and the record's contribution
    select 'ecds' as table_name, ec_ident as record_id, person_id, activity_month,
           1 as ae, 0 as em, 0 as bed_days, 0 as op
    from {{ ref('int_ae_attendances_filtered_to_type_01') }}
    union all
    select 'apc', apcs_ident, person_id, activity_month, 0, 1, cast(coalesce(bed_days, 0) as integer), 0
    from {{ ref('int_apc_spells_filtered_to_emergency') }}
    union all
    select 'opa', attend_key, person_id, activity_month, 0, 0, 0, 1
    from {{ ref('int_outpatient_appointments_filtered_to_attended') }}
),
moved as (
    select
        s.scenario,
        a.person_id as main_person_id,
        case when s.scenario = 'stricter' then alt.person_id_stricter else alt.person_id_looser end
            as alternative_person_id,
        a.activity_month, a.ae, a.em, a.bed_days, a.op
    from alternatives alt
    join activity a on a.table_name = alt.table_name and a.record_id = alt.record_id
    cross join scenarios s
),
signed as (
    select scenario, main_person_id as person_id, activity_month,
           -ae as ae, -em as em, -bed_days as bed_days, -op as op
    from moved
    where main_person_id is not null
      and alternative_person_id is distinct from main_person_id
    union all
    select scenario, alternative_person_id, activity_month, ae, em, bed_days, op
    from moved
    where alternative_person_id is not null
      and alternative_person_id is distinct from main_person_id
),
cohort as (
    select distinct cast(person_id as {{ dbt.type_string() }}) as person_id
    from {{ source('matching', 'int_controls_matched_to_treated') }}
)
select
    d.scenario,
    d.person_id,
    cast(d.activity_month as date)            as calendar_month,
    cast(sum(d.ae) as integer)                as ae_attendances,
    cast(sum(d.em) as integer)                as emergency_admissions,
    cast(sum(d.bed_days) as integer)          as bed_days,
    cast(sum(d.op) as integer)                as outpatient_attendances,
    cast(0 as integer)                        as gp_appointments
from signed d
join cohort c on c.person_id = d.person_id
group by d.scenario, d.person_id, d.activity_month
