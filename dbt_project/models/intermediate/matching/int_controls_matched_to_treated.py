"""Matched cohort: calls the shared evaluation.methods.matching.match on int_match_pool_filtered_to_eligible.

Design (vars in dbt_project.yml, passed through this model's config): exact match on
`matching_exact` and the index month (stacked design), propensity score on
`matching_covariates` plus `matching_ps_extra_terms`, greedy 1:`matching_ratio` nearest neighbour without replacement within
a caliper of `matching_caliper_sd` SDs of the logit of the score; with `matching_refine`,
augmenting paths rescue treated people left without a control and balance swaps (within the
strata and the caliper) run until the largest |SMD| <= `matching_refine_target_smd`.
"""
from evaluation.methods.matching import as_column_list, match


def model(dbt, session):
    dbt.config(materialized="table")
    covariates = as_column_list(dbt.config.get("matching_covariates"))
    exact = as_column_list(dbt.config.get("matching_exact"))
    ps_extra = as_column_list(dbt.config.get("matching_ps_extra_terms"))
    ratio = int(dbt.config.get("matching_ratio"))
    caliper = float(dbt.config.get("matching_caliper_sd"))
    seed = int(dbt.config.get("matching_seed"))
    refine = str(dbt.config.get("matching_refine")).strip().lower() in ("true", "1", "yes")
    target = float(dbt.config.get("matching_refine_target_smd"))
    distance = as_column_list(dbt.config.get("matching_distance_covariates"))
    # not-yet-referred design: people referred later are controls until then (int_match_pool_stacked_by_index_month)
    not_yet_referred = dbt.config.get("comparison_design") == "not_yet_referred"

    candidates = dbt.ref("int_match_pool_filtered_to_eligible").df()
    result = match(
        candidates,
        treatment="is_treated",
        covariates=covariates,
        exact=exact,
        ratio=ratio,
        caliper=caliper,
        group="index_month",
        id_col="person_id",
        seed=seed,
        ps_covariates=[*covariates, *ps_extra],
        refine=refine,
        refine_target_smd=target,
        distance_covariates=distance or None,
        controls_may_be_treated_later=not_yet_referred,
    )
    extra = set(ps_extra) | {c for c in distance if c not in covariates}
    matched = result.matched.drop(columns=[c for c in extra if c in result.matched.columns])
    matched["caliper_width_logit"] = result.info["caliper_width_logit"]
    return matched
