"""Every knob of the synthetic population, documented where it is declared.

Defaults aim at realism for a mid-sized English ICS footprint; tests and benchmarks change
them through `SynthParams(...)` or `ltceval synth` options.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import date

from core.contract import NEGATIVE_CONTROLS, SEEDS

OUTCOMES = ("ae_attendances", "emergency_admissions", "outpatient_attendances", "gp_appointments")
# simulated count streams: the outcomes, then the negative controls (core.contract), which
# share the outcomes' frailty, conditions, deprivation, season and spells of poor health (so
# the same selection at a peak) but never the planted effect
STREAMS = OUTCOMES + NEGATIVE_CONTROLS
# random substream of the negative controls' draws (streams.BlockRNG.substream): adding them
# left every draw of the population, its outcomes and referrals as it was
NEGATIVE_CONTROL_STREAM = 1

# SNOMED codes of the long-term-condition groups (GP register and IAPT IDS602).
# MUS has no single national SNOMED concept in the IAPT guidance: a local code stands in
# and is flagged as unverified in the dbt reference seed.
LTC_CODES = {
    "diabetes": ("44054006", "46635009"),
    "copd": ("13645005",),
    "cardiovascular": ("53741008", "84114007"),
    "chronic_pain_msk": ("82423001",),
    "ibs": ("10743008",),
    "chronic_fatigue": ("52702003",),
    "mus": ("LOCAL-MUS",),
}


@dataclass(frozen=True)
class IdentifierErrorRates:
    """Per-source identifier quality: the share of a person's records in that source with each fault."""

    nhs_missing: float
    nhs_invalid: float  # fails Modulus 11 (keying error)
    nhs_wrong_person: float  # a valid NHS number belonging to somebody else
    name_typo: float
    nickname: float
    dob_day_month_swap: float
    postcode_changed: float  # an old or new address
    duplicate_record: float  # the same person held twice in the source
    # faults of the harder profile only (0 in the default one, whose data they leave unchanged)
    surname_changed: float = 0.0  # a woman's record under another surname (marriage or divorce)
    names_swapped: float = 0.0  # forename and surname transposed


# Rates as reported for local extracts: ECDS worst for missing numbers, GP lists nearly complete.
DEFAULT_ERROR_RATES = {
    "gp_patients": IdentifierErrorRates(0.002, 0.001, 0.0, 0.01, 0.0, 0.002, 0.02, 0.003),
    "iapt_ids001_mpi": IdentifierErrorRates(0.04, 0.01, 0.002, 0.03, 0.04, 0.01, 0.08, 0.02),
    "ecds": IdentifierErrorRates(0.06, 0.01, 0.002, 0.04, 0.05, 0.01, 0.10, 0.0),
    "apc": IdentifierErrorRates(0.015, 0.005, 0.001, 0.02, 0.03, 0.005, 0.08, 0.0),
    "opa": IdentifierErrorRates(0.02, 0.005, 0.001, 0.02, 0.03, 0.005, 0.08, 0.0),
}


# An opt-in harder profile (tests of the linkage sensitivity, docs/linkage.md): NHS numbers
# missing eight times as often (at most half), names mistyped and day/month swapped five times
# as often, addresses changed four times as often (at most half), and, in every source, 5% of
# women's records under another surname and 1% of records with the names transposed. More
# records fall to splink, and some land between the stricter and looser thresholds.
HARD_ERROR_RATES = {
    source: replace(e, nhs_missing=min(0.5, e.nhs_missing * 8), name_typo=e.name_typo * 5,
                    dob_day_month_swap=e.dob_day_month_swap * 5, postcode_changed=min(0.5, e.postcode_changed * 4),
                    surname_changed=0.05, names_swapped=0.01)
    for source, e in DEFAULT_ERROR_RATES.items()}


@dataclass(frozen=True)
class SynthParams:
    persons: int = 20_000
    seed: int = SEEDS.synthetic
    start: date = date(2019, 4, 1)  # first month of the data period
    months: int = 60  # five financial years, April 2019 to March 2024
    practice_list_size: int = 8_000  # mean registered list per GP practice (England: about 10,000)
    min_practices: int = 20  # small populations are samples of 20+ practices' lists, so that
    # implementer and comparison practices overlap in deprivation as they do across an ICS
    practice_imd_spread: tuple[float, float] = (2.5, 8.5)  # range of practice deprivation centres
    lsoa_imd_sd: float = 2.0  # spread of LSOA deprivation around its practice's centre
    share_practices_ltc: float = 0.5  # early implementers of the IAPT-LTC pathway
    ltc_launch_months: tuple[int, int] = (12, 30)  # staggered launch window (month index)

    # Long-term condition prevalence among adults aged 50 (scaled by age and deprivation).
    ltc_prevalence: dict = field(default_factory=lambda: {
        "diabetes": 0.10, "copd": 0.035, "cardiovascular": 0.063, "chronic_pain_msk": 0.14,
        "ibs": 0.056, "chronic_fatigue": 0.008, "mus": 0.042,
    })
    frailty_shape: float = 2.0  # Gamma shape of person-level utilisation heterogeneity (mean 1)

    # Monthly base rates per person (adult aged 50, no LTC, middle deprivation).
    base_rates: dict = field(default_factory=lambda: {
        "ae_attendances": 0.022, "emergency_admissions": 0.007,
        "outpatient_attendances": 0.10, "gp_appointments": 0.33,
    })
    ltc_rate_multiplier: float = 1.35  # per long-term condition held
    deprivation_gradient: float = 0.04  # rate change per IMD decile towards most deprived
    winter_multiplier: float = 1.15  # December to February
    summer_multiplier: float = 0.92  # June to August

    # Spells of poor health: everybody can have them; they raise every outcome for a few months.
    spell_monthly_onset: float = 0.012  # per month, times 1.5 with an LTC
    spell_length_months: tuple[int, int] = (1, 2)  # short: a spell that outlasts referral would
    # carry unobserved poor health into the follow-up of the treated only (see README, Evaluation)
    spell_multiplier: float = 3.0

    # Referral to talking therapies: the monthly hazard rises with recent utilisation, so
    # referred people are caught near a peak and regress to the mean afterwards.
    referral_base_logit: float = -8.6
    referral_ltc_logit: float = 1.4  # added when the person has any LTC
    referral_util_logit: float = 0.7  # per log(1 + weighted events in the last 6 months)
    referral_ltc_pathway_logit: float = 2.4  # LTC pathway live at the practice: more referrals
    share_ltc_referrals_to_pathway: float = 0.9
    share_not_treated: float = 0.25  # referrals ending before a course of treatment
    mean_treatment_sessions: float = 6.0

    # Planted effect of an IAPT-LTC course on monthly rates, from the month of the first
    # treatment contact onwards. 1.0 means no effect.
    planted_rate_ratio: dict = field(default_factory=lambda: {
        "ae_attendances": 0.85, "emergency_admissions": 0.85,
        "outpatient_attendances": 1.0, "gp_appointments": 1.0,
    })

    # Negative-control outcomes (core.contract.NEGATIVE_CONTROL_OUTCOMES): monthly base rates
    # per person (adult aged 50, no LTC, middle deprivation; same multipliers as the outcomes)
    # and the change in log rate per year of age. Orders of magnitude from HES: ophthalmology is
    # about 8% of outpatient attendances, cataract surgery about 400,000 spells a year in England,
    # mostly over 65s; inguinal hernia repair about 70,000.
    negative_control_base_rates: dict = field(default_factory=lambda: {
        "ophthalmology_attendances": 0.010, "ent_attendances": 0.005, "oral_surgery_attendances": 0.004,
        "audiology_attendances": 0.004, "plastic_surgery_attendances": 0.004,
        "cataract_admissions": 0.0004, "hernia_repair_admissions": 0.0003,
    })
    negative_control_age_slope: dict = field(default_factory=lambda: {
        "ophthalmology_attendances": 0.03, "ent_attendances": 0.01, "oral_surgery_attendances": 0.0,
        "audiology_attendances": 0.04, "plastic_surgery_attendances": 0.01,
        "cataract_admissions": 0.08, "hernia_repair_admissions": 0.02,
    })
    # Residual confounding (systematic error, not an effect of therapy): from the index month,
    # every rate of a treated person (outcomes and negative controls alike) is multiplied by
    # this, as if they got better or worse for a reason the matching cannot see. 1.0 = none.
    residual_confounding_rate_ratio: float = 1.0

    # People in A&E who are not on any GP list of the footprint (visitors, students, the
    # unregistered): this share of the people attending A&E, with their own identities (a
    # fifth share a surname and postcode with a registered person, a tenth a surname and date
    # of birth). Ground truth gives them person ids >= persons; linkage must leave them
    # unlinked (precision is tested against them).
    share_ecds_unregistered: float = 0.015

    monthly_deregistration: float = 0.003
    share_registering_during_period: float = 0.08
    error_rates: dict = field(default_factory=lambda: dict(DEFAULT_ERROR_RATES))

    def with_null_effect(self) -> "SynthParams":
        from dataclasses import replace

        return replace(self, planted_rate_ratio={k: 1.0 for k in self.planted_rate_ratio})

    def to_json(self) -> dict:
        d = asdict(self)
        d["start"] = self.start.isoformat()
        return d
