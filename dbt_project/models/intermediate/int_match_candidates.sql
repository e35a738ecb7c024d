-- Rows eligible for matching (no exclusion reason): the input of evaluation.matching.match.
select * exclude (exclusion_reason)
from {{ ref('int_match_pool') }}
where exclusion_reason is null
