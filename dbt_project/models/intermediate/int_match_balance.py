"""Balance before and after matching, from the persisted matched cohort, computed by the same
function evaluation.matching.match uses (evaluation.matching.balance_table)."""
from evaluation.matching import LOGIT_COLUMN, as_column_list, balance_table, fit_propensity


def model(dbt, session):
    dbt.config(materialized="table")
    covariates = as_column_list(dbt.config.get("matching_covariates"))
    ps_extra = as_column_list(dbt.config.get("matching_ps_extra_terms"))
    # a stable row order: a parallel scan returns rows in any order, and floating-point sums
    # (and so the last digits of the balance statistics) depend on it
    candidates = dbt.ref("int_match_candidates").df().sort_values(["person_id", "index_month"], kind="stable").reset_index(drop=True)
    matched = dbt.ref("int_matched_cohort").df().sort_values(["matched_set_id", "is_treated", "person_id"], kind="stable").reset_index(drop=True)
    # the "before" sample is every eligible candidate row, with the same propensity model
    logit, _ = fit_propensity(candidates, "is_treated", [*covariates, *ps_extra])
    candidates[LOGIT_COLUMN] = logit
    return balance_table(
        candidates, "is_treated", [*covariates, LOGIT_COLUMN], matched, weight="match_weight"
    )
