"""The evaluation contract, defined once: the outcomes, their labels, the panel window and the
seeds.

The evaluation panel (``mart_evaluation_panel``, docs/data-contracts.md section 4) has one
count column per outcome and a row per relative month ``-PANEL_MONTHS_BEFORE ..
PANEL_MONTHS_AFTER`` around the index month; each month falls in one of ``PERIODS``. The
evaluation DAG, the panel reader, the report and the GX suite of the marts read them from here;
dbt receives the window and the matching seed as vars from here (``core.dbt.dbt_vars``) and
writes what its design was into ``mart_design``; its macros spell the outcome columns, which
tests/core/test_contract.py holds to this module.
"""
from __future__ import annotations

from dataclasses import dataclass



@dataclass(frozen=True)
class Seeds:
    """Every random seed of a run, in one place. ``--seed`` of ``ltceval synth`` and ``ltceval
    run`` chooses the synthetic data; the analysis seeds are fixed, so that a rerun on the same
    extracts gives the same numbers: the matching seed is in ``mart_design``, the linkage and
    bootstrap seeds in the run's provenance and costing configuration."""

    synthetic: int = 1  # the default synthetic population (`ltceval synth/run --seed`)
    linkage: int = 1  # splink's random sampling of pairs for its u probabilities
    matching: int = 20240101  # ties in the order treated people are served (dbt var matching_seed)
    bootstrap: int = 20240601  # cluster bootstrap of the costed saving (CostingConfig.bootstrap_seed)
    staggered_bootstrap: int = 20240501  # multiplier bootstrap of `ltceval did`


SEEDS = Seeds()

# outcome column -> label, in report order
OUTCOMES: dict[str, str] = {
    "ae_attendances": "A&E attendances",
    "emergency_admissions": "Emergency admissions",
    "bed_days": "Bed days (emergency)",
    "outpatient_attendances": "Outpatient attendances",
    "gp_appointments": "GP appointments",
}
COUNT_OUTCOMES: tuple[str, ...] = tuple(OUTCOMES)
# Negative-control outcomes: activity the therapy should not change (why each: docs/negative-
# controls.md). Estimated exactly as the outcomes, their rate ratios measure the design's
# systematic error (empirical calibration, EASE); in the panels after the outcomes, in this order.
NEGATIVE_CONTROL_OUTCOMES: dict[str, str] = {
    "ophthalmology_attendances": "Ophthalmology outpatient attendances",
    "ent_attendances": "ENT outpatient attendances",
    "oral_surgery_attendances": "Oral surgery and dental outpatient attendances",
    "audiology_attendances": "Audiology outpatient attendances",
    "plastic_surgery_attendances": "Plastic surgery outpatient attendances",
    "cataract_admissions": "Planned cataract admissions",
    "hernia_repair_admissions": "Planned hernia repair admissions",
}
NEGATIVE_CONTROLS: tuple[str, ...] = tuple(NEGATIVE_CONTROL_OUTCOMES)
PANEL_COUNTS: tuple[str, ...] = COUNT_OUTCOMES + NEGATIVE_CONTROLS
COST_OUTCOME = "cost_gbp"
OUTCOME_LABELS: dict[str, str] = {**OUTCOMES, **NEGATIVE_CONTROL_OUTCOMES, COST_OUTCOME: "Costed utilisation (GBP)"}


def outcome_label(outcome: str) -> str:
    """The label of an outcome column; another column's own name."""
    return OUTCOME_LABELS.get(outcome, outcome)

PANEL_MONTHS_BEFORE = 12
PANEL_MONTHS_AFTER = 12
TRANSITION_MONTH = 0  # the index month: the effect is taken to start the month after it
PRE_MONTHS = tuple(range(-PANEL_MONTHS_BEFORE, TRANSITION_MONTH))
POST_MONTHS = tuple(range(TRANSITION_MONTH + 1, PANEL_MONTHS_AFTER + 1))
# what each relative month is: the comparison period, the selection window just before the
# index (its width is a design choice, dbt var selection_window_months), the index month, after
PERIODS = ("pre", "selection", "transition", "post")
