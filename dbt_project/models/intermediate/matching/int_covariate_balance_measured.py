"""Balance before and after matching, from the persisted matched cohort, computed by the same
function evaluation.methods.matching.match uses (evaluation.methods.matching.balance_table).

Rows for the matching covariates and the propensity logit have matched_on = true; rows for
`balance_shown_covariates` (by default the counts of the baseline year, which holds the DiD's
comparison period) are shown for readers with matched_on = false: the design does not match
on them (see dbt_project.yml), person fixed effects absorb their level differences."""
from core.memory import duckdb_cache_held_down
from evaluation.methods.matching import LOGIT_COLUMN, as_column_list, balance_table, fit_propensity


def model(dbt, session):
    dbt.config(materialized="table")
    covariates = as_column_list(dbt.config.get("matching_covariates"))
    ps_extra = as_column_list(dbt.config.get("matching_ps_extra_terms"))
    shown = [c for c in as_column_list(dbt.config.get("balance_shown_covariates")) if c not in covariates]
    # a stable row order: a parallel scan returns rows in any order, and floating-point sums
    # (and so the last digits of the balance statistics) depend on it; (person_id,
    # index_month) is unique. Only the columns used leave DuckDB (7 million rows at 2 million people).
    # the sort keys stay in DuckDB: 7 million 64-character person ids were a GiB in pandas
    used = list(dict.fromkeys(["is_treated", *covariates, *ps_extra, *shown]))
    candidates = (
        session.sql(f"""select {", ".join(f'"{c}"' for c in used)}
                        from ({dbt.ref("int_match_pool_filtered_to_eligible").sql_query()})
                        order by person_id, index_month""")
        .to_arrow_table().to_pandas(self_destruct=True, split_blocks=True, date_as_object=False)
    )
    matched = dbt.ref("int_controls_matched_to_treated").df().sort_values(["matched_set_id", "is_treated", "person_id"], kind="stable").reset_index(drop=True)
    # while the candidates are in pandas DuckDB gets a small limit (its cached blocks go)
    with duckdb_cache_held_down(session):
        # the "before" sample is every eligible candidate row, with the same propensity model
        logit, _ = fit_propensity(candidates, "is_treated", [*covariates, *ps_extra])
        candidates[LOGIT_COLUMN] = logit
        balance = balance_table(
            candidates, "is_treated", [*covariates, LOGIT_COLUMN, *shown], matched, weight="match_weight"
        )
    balance["matched_on"] = ~balance["covariate"].isin(shown)
    return balance
