"""Balance before and after matching, from the persisted matched cohort, computed by the same
function evaluation.matching.match uses (evaluation.matching.balance_table).

Rows for the matching covariates and the propensity logit have matched_on = true; rows for
`balance_shown_covariates` (by default the counts of the baseline year, which holds the DiD's
comparison period) are shown for readers with matched_on = false: the design does not match
on them (see dbt_project.yml), person fixed effects absorb their level differences."""
from evaluation.matching import LOGIT_COLUMN, as_column_list, balance_table, fit_propensity


def model(dbt, session):
    dbt.config(materialized="table")
    covariates = as_column_list(dbt.config.get("matching_covariates"))
    ps_extra = as_column_list(dbt.config.get("matching_ps_extra_terms"))
    shown = [c for c in as_column_list(dbt.config.get("balance_shown_covariates")) if c not in covariates]
    # a stable row order: a parallel scan returns rows in any order, and floating-point sums
    # (and so the last digits of the balance statistics) depend on it
    candidates = dbt.ref("int_match_candidates").df().sort_values(["person_id", "index_month"], kind="stable").reset_index(drop=True)
    matched = dbt.ref("int_matched_cohort").df().sort_values(["matched_set_id", "is_treated", "person_id"], kind="stable").reset_index(drop=True)
    # the "before" sample is every eligible candidate row, with the same propensity model
    logit, _ = fit_propensity(candidates, "is_treated", [*covariates, *ps_extra])
    candidates[LOGIT_COLUMN] = logit
    balance = balance_table(
        candidates, "is_treated", [*covariates, LOGIT_COLUMN, *shown], matched, weight="match_weight"
    )
    balance["matched_on"] = ~balance["covariate"].isin(shown)
    return balance


# This part is user provided model code
# you will need to copy the next section to run the code
# COMMAND ----------
# this part is dbt logic for get ref work, do not modify

def ref(*args, **kwargs):
    refs = {"int_match_candidates": "\"warehouse\".\"main\".\"int_match_candidates\"", "int_matched_cohort": "\"warehouse\".\"main\".\"int_matched_cohort\""}
    key = '.'.join(args)
    version = kwargs.get("v") or kwargs.get("version")
    if version:
        key += f".v{version}"
    dbt_load_df_function = kwargs.get("dbt_load_df_function")
    return dbt_load_df_function(refs[key])


def source(*args, dbt_load_df_function):
    sources = {}
    key = '.'.join(args)
    return dbt_load_df_function(sources[key])


config_dict = {'matching_covariates': ['age', 'imd_decile', 'n_ltcs', 'recent_ae_attendances', 'recent_emergency_admissions', 'recent_bed_days', 'recent_outpatient_attendances', 'recent_gp_appointments'], 'matching_ps_extra_terms': ['ps_log_recent_ae_attendances', 'ps_log_recent_emergency_admissions', 'ps_log_recent_bed_days', 'ps_log_recent_outpatient_attendances', 'ps_log_recent_gp_appointments', 'ps_age_sq', 'ps_imd_sq'], 'balance_shown_covariates': ['baseline_ae_attendances', 'baseline_emergency_admissions', 'baseline_bed_days', 'baseline_outpatient_attendances', 'baseline_gp_appointments']}
meta_dict = {}


class config:
    def __init__(self, *args, **kwargs):
        pass

    @staticmethod
    def get(key, default=None):
        return config_dict.get(key, default)

    @staticmethod
    def meta_get(key, default=None):
        return meta_dict.get(key, default)

class this:
    """dbt.this() or dbt.this.identifier"""
    database = "warehouse"
    schema = "main"
    identifier = "int_match_balance"
    
    def __repr__(self):
        return '"warehouse"."main"."int_match_balance"'


class dbtObj:
    def __init__(self, load_df_function) -> None:
        self.source = lambda *args: source(*args, dbt_load_df_function=load_df_function)
        self.ref = lambda *args, **kwargs: ref(*args, **kwargs, dbt_load_df_function=load_df_function)
        self.config = config
        self.this = this()
        self.is_incremental = False

# COMMAND ----------


