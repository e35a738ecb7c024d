-- What the design of this build was (contract §4), one row: the dbt vars the treated cohort,
-- the comparison pool, matching and the panels were built with. The evaluation reads its
-- window from here (evaluation.design.load_design) rather than re-deriving it from the panel;
-- the window and matching seed arrive as vars from Python (core.dbt.dbt_vars).
select
    cast('{{ var("comparison_design") }}' as {{ dbt.type_string() }})            as comparison_design,
    cast('{{ var("index_date_rule") }}' as {{ dbt.type_string() }})              as index_date_rule,
    cast({{ var('adult_age') }} as integer)                      as adult_age,
    cast({{ var('min_treatment_contacts') }} as integer)         as min_treatment_contacts,
    cast({{ var('baseline_months') }} as integer)                as baseline_months,
    cast({{ var('selection_window_months') }} as integer)        as selection_window_months,
    cast({{ var('panel_months_before') }} as integer)            as panel_months_before,
    cast({{ var('panel_months_after') }} as integer)             as panel_months_after,
    cast({{ var('matching_ratio') }} as integer)                 as matching_ratio,
    cast({{ var('matching_caliper_sd') }} as double)             as matching_caliper_sd,
    cast({{ var('matching_seed') }} as bigint)                   as matching_seed,
    cast({{ var('matching_refine') }} as boolean)                as matching_refine,
    cast('{{ var("matching_covariates") | join(",") }}' as {{ dbt.type_string() }}) as matching_covariates,
    cast('{{ var("matching_exact") | join(",") }}' as {{ dbt.type_string() }})   as matching_exact
