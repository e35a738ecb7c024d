
    

    create  table
      "warehouse"."main"."int_person_month_baseline__dbt_tmp"
  
    
    as (
      -- For each person-month m: activity in the baseline before m (months m-12..m-1), its
-- recent trend (months m-6..m-1 minus months m-12..m-7) and activity in the selection window
-- (months m-w..m-1, w = var selection_window_months: where referral decisions are made).
-- The panel is dense, so rows = months.
select
    person_id,
    calendar_month,
    cast(coalesce(sum(ae_attendances) over w_base, 0) as integer) as baseline_ae_attendances,
    cast(coalesce(sum(ae_attendances) over w_recent, 0) - coalesce(sum(ae_attendances) over w_early, 0) as integer) as trend_ae_attendances,
    cast(coalesce(sum(ae_attendances) over w_selection, 0) as integer) as recent_ae_attendances,
    cast(coalesce(sum(emergency_admissions) over w_base, 0) as integer) as baseline_emergency_admissions,
    cast(coalesce(sum(emergency_admissions) over w_recent, 0) - coalesce(sum(emergency_admissions) over w_early, 0) as integer) as trend_emergency_admissions,
    cast(coalesce(sum(emergency_admissions) over w_selection, 0) as integer) as recent_emergency_admissions,
    cast(coalesce(sum(bed_days) over w_base, 0) as integer) as baseline_bed_days,
    cast(coalesce(sum(bed_days) over w_recent, 0) - coalesce(sum(bed_days) over w_early, 0) as integer) as trend_bed_days,
    cast(coalesce(sum(bed_days) over w_selection, 0) as integer) as recent_bed_days,
    cast(coalesce(sum(outpatient_attendances) over w_base, 0) as integer) as baseline_outpatient_attendances,
    cast(coalesce(sum(outpatient_attendances) over w_recent, 0) - coalesce(sum(outpatient_attendances) over w_early, 0) as integer) as trend_outpatient_attendances,
    cast(coalesce(sum(outpatient_attendances) over w_selection, 0) as integer) as recent_outpatient_attendances,
    cast(coalesce(sum(gp_appointments) over w_base, 0) as integer) as baseline_gp_appointments,
    cast(coalesce(sum(gp_appointments) over w_recent, 0) - coalesce(sum(gp_appointments) over w_early, 0) as integer) as trend_gp_appointments,
    cast(coalesce(sum(gp_appointments) over w_selection, 0) as integer) as recent_gp_appointments,
    count(*) over w_base as baseline_months_observed
from "warehouse"."main"."int_person_months"
window
    w_base   as (partition by person_id order by calendar_month rows between 12 preceding and 1 preceding),
    w_recent as (partition by person_id order by calendar_month rows between 6 preceding and 1 preceding),
    w_early  as (partition by person_id order by calendar_month rows between 12 preceding and 7 preceding),
    w_selection as (partition by person_id order by calendar_month rows between 6 preceding and 1 preceding)
    );
    
  