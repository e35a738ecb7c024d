"""Matched cohort: calls the shared evaluation.matching.match on int_match_candidates.

Design (vars in dbt_project.yml, passed through this model's config): exact match on
`matching_exact` and the index month (stacked design), propensity score on
`matching_covariates` plus `matching_ps_extra_terms`, greedy 1:`matching_ratio` nearest neighbour without replacement within
a caliper of `matching_caliper_sd` SDs of the logit of the score; with `matching_refine`,
augmenting paths rescue treated people left without a control and balance swaps (within the
strata and the caliper) run until the largest |SMD| <= `matching_refine_target_smd`.
"""
from evaluation.matching import as_column_list, match


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

    candidates = dbt.ref("int_match_candidates").df()
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
    )
    extra = set(ps_extra) | {c for c in distance if c not in covariates}
    matched = result.matched.drop(columns=[c for c in extra if c in result.matched.columns])
    matched["caliper_width_logit"] = result.info["caliper_width_logit"]
    return matched


# This part is user provided model code
# you will need to copy the next section to run the code
# COMMAND ----------
# this part is dbt logic for get ref work, do not modify

def ref(*args, **kwargs):
    refs = {"int_match_candidates": "\"warehouse\".\"main\".\"int_match_candidates\""}
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


config_dict = {'matching_covariates': ['age', 'imd_decile', 'n_ltcs', 'recent_ae_attendances', 'recent_emergency_admissions', 'recent_bed_days', 'recent_outpatient_attendances', 'recent_gp_appointments'], 'matching_exact': ['sex', 'ltc_group', 'age_band', 'recent_util_band'], 'matching_ps_extra_terms': ['ps_log_recent_ae_attendances', 'ps_log_recent_emergency_admissions', 'ps_log_recent_bed_days', 'ps_log_recent_outpatient_attendances', 'ps_log_recent_gp_appointments', 'ps_age_sq', 'ps_imd_sq'], 'matching_ratio': 1, 'matching_caliper_sd': 0.2, 'matching_seed': 20240101, 'matching_refine': True, 'matching_refine_target_smd': 0.05, 'matching_distance_covariates': []}
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
    identifier = "int_matched_cohort"
    
    def __repr__(self):
        return '"warehouse"."main"."int_matched_cohort"'


class dbtObj:
    def __init__(self, load_df_function) -> None:
        self.source = lambda *args: source(*args, dbt_load_df_function=load_df_function)
        self.ref = lambda *args, **kwargs: ref(*args, **kwargs, dbt_load_df_function=load_df_function)
        self.config = config
        self.this = this()
        self.is_incremental = False

# COMMAND ----------




def materialize(df, con):
    try:
        import pyarrow
        pyarrow_available = True
    except ImportError:
        pyarrow_available = False
    finally:
        if pyarrow_available and isinstance(df, pyarrow.Table):
            # https://github.com/duckdb/duckdb/issues/6584
            import pyarrow.dataset
    tmp_name = '__dbt_python_model_df_' + 'int_matched_cohort__dbt_tmp'
    con.register(tmp_name, df)
    
    con.execute('create table "warehouse"."main"."int_matched_cohort__dbt_tmp" as select * from ' + tmp_name)
    
    con.unregister(tmp_name)
