"""Matched cohort: calls the shared evaluation.methods.matching.match on int_match_pool_filtered_to_eligible.

Design (vars in dbt_project.yml, passed through this model's config): exact match on
`matching_exact` and the index month (stacked design), propensity score on
`matching_covariates` plus `matching_ps_extra_terms`, greedy 1:`matching_ratio` nearest neighbour without replacement within
a caliper of `matching_caliper_sd` SDs of the logit of the score; with `matching_refine`,
augmenting paths rescue treated people left without a control and balance swaps (within the
strata and the caliper) run until the largest |SMD| <= `matching_refine_target_smd`.

Only the columns the matching reads leave DuckDB, through Arrow, sorted as `match` sorts them
(so it takes them without a copy); the other columns of the matched rows are joined back in
SQL. At 2 million people the eligible pool is about 7 million rows: the whole table read
into pandas took 10 GiB before matching began.
"""
from core.memory import duckdb_cache_held_down, release_memory
from evaluation.methods.matching import LOGIT_COLUMN, as_column_list, columns_used, match, row_order_columns


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

    pool = dbt.ref("int_match_pool_filtered_to_eligible")
    settings = dict(treatment="is_treated", covariates=covariates, exact=exact, group="index_month", id_col="person_id",
                    ps_covariates=[*covariates, *ps_extra], distance_covariates=distance or None)
    order = row_order_columns(settings["treatment"], exact, settings["group"], settings["id_col"])
    # person ids go to pandas as their rank in person_id order (the same sort, the same sets):
    # 7 million 64-character pseudonyms and their hash table in match were gigabytes
    session.execute(f"""
        create or replace temp table match_person_codes as
        select person_id, (row_number() over (order by person_id) - 1)::bigint as person_code
        from (select distinct person_id from ({pool.sql_query()}))""")
    used = ", ".join('c.person_code as person_id' if col == "person_id" else f'p."{col}"'
                     for col in columns_used(**settings))
    candidates = (
        session.sql(f"""select {used} from ({pool.sql_query()}) p join match_person_codes c using (person_id)
                        order by {", ".join(order)}""")
        .to_arrow_table().to_pandas(self_destruct=True, split_blocks=True, date_as_object=False)
    )
    # while the pool is in pandas DuckDB gets a small limit (its cached blocks go), and its usual
    # one back for the join of the sets to the pool
    with duckdb_cache_held_down(session):
        result = match(
            candidates,
            **settings,
            ratio=ratio,
            caliper=caliper,
            seed=seed,
            refine=refine,
            refine_target_smd=target,
            controls_may_be_treated_later=not_yet_referred,
        )
        sets = result.matched[["matched_set_id", "person_id", "index_month", LOGIT_COLUMN, "propensity_score", "match_weight"]]
        # equipoise of the whole pool the propensity model scored (CohortMethod computes it before
        # matching; only the matched rows' scores are kept), as two counts on every row like the
        # caliper: the evaluation's diagnostics gate reads them (evaluation/diagnostics.py)
        eq = result.info["equipoise"]
        sets = sets.assign(caliper_width_logit=result.info["caliper_width_logit"], pool_rows_scored=eq["n_rows"],
                           pool_rows_in_equipoise=eq["n_in_range"], row_order=range(len(sets)))
        # the pool and the match's working copies go back to the system before DuckDB joins the
        # sets to the pool (2 million people: 5.9 GiB resident before, 4.2 after)
        del candidates, result
        release_memory()
    session.register("matched_sets", sets)
    session.execute("create or replace temp table matched_set_persons as select c.person_id, s.* exclude (person_id) "
                    "from matched_sets s join match_person_codes c on c.person_code = s.person_id")
    session.unregister("matched_sets")
    session.execute("drop table match_person_codes")
    # the propensity model's extra terms stay in the pool; (person_id, index_month) is unique
    # there (its data test), so each matched row joins one pool row
    extra = list(dict.fromkeys([*ps_extra, *(c for c in distance if c not in covariates)]))
    pool_columns = f"p.* exclude ({', '.join(extra)})" if extra else "p.*"
    return session.sql(
        f"""
        select s.matched_set_id, {pool_columns},
               s.{LOGIT_COLUMN}, s.propensity_score, s.match_weight, s.caliper_width_logit,
               s.pool_rows_scored, s.pool_rows_in_equipoise
        from matched_set_persons s
        join ({pool.sql_query()}) p on p.person_id = s.person_id and p.index_month = cast(s.index_month as date)
        order by s.row_order
        """
    )
