-- Rows eligible for matching (no exclusion reason): the input of evaluation.methods.matching.match.
-- ps_* columns are extra terms of the propensity model only (var matching_ps_extra_terms):
-- log(1 + baseline count) for the skewed counts, log(1 + count in the selection window, the
-- last selection_window_months months) because referral follows recent use, and squared centred age and IMD decile.
select
    {{ star_except(ref('int_match_pool_stacked_by_index_month'), ['exclusion_reason']) }},
    ln(1 + baseline_ae_attendances)         as ps_log_baseline_ae_attendances,
    ln(1 + baseline_emergency_admissions)   as ps_log_baseline_emergency_admissions,
    ln(1 + baseline_bed_days)               as ps_log_baseline_bed_days,
    ln(1 + baseline_outpatient_attendances) as ps_log_baseline_outpatient_attendances,
    ln(1 + baseline_gp_appointments)        as ps_log_baseline_gp_appointments,
    {%- for o in ['ae_attendances', 'emergency_admissions', 'bed_days', 'outpatient_attendances', 'gp_appointments'] %}
    ln(1 + recent_{{ o }}) as ps_log_recent_{{ o }},
    {%- endfor %}
    power(age - 55, 2)                      as ps_age_sq,
    power(imd_decile - 5.5, 2)              as ps_imd_sq
from {{ ref('int_match_pool_stacked_by_index_month') }}
where exclusion_reason is null
