"""General estimation methods: propensity-score matching (`matching`), staggered-adoption DiD
(`staggered`), conditional fixed-effects Poisson (`poisson_fe`) and the constants they share
(`common`).

These modules import only numpy, pandas, scipy and statsmodels (and each other), never the
rest of the project, so dbt Python models and the CLI can use them on their own. This file
imports nothing: import the module you need.
"""
