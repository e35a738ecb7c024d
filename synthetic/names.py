"""Forenames and surnames with the frequency structure of a real English population.

No published name-frequency list with a suitable licence is available offline here, so the
names are generated, deterministically (the lists and their frequencies never depend on the
seed of a population):

* Head: the real common names of ``identifiers.py`` (SMITH, JONES, ... ; OLIVER, DAVID, ...,
  AISHA, FATIMA) keep the top ranks, so nicknames, the West Yorkshire and South Asian names
  and every test that names a name keep working. The ten commonest surnames get shares close
  to England and Wales (SMITH 1.2%, JONES 0.9%, ... ; together 5.7%).
* Tail: names composed from parts. Surnames: English toponymic and occupational stems (a
  syllable: onset, vowel, coda, e.g. BRAD, HOL, WHIT) with a suffix (-LEY, -TON, -FORD,
  -ROYD, -THWAITE, -SON, ...); South Asian surnames from two syllables and an ending
  (e.g. RA + SH + ID); Gaelic MC-/O- forms. Forenames: two syllables with female or male
  endings. Ranks are dealt out to these families at fixed shares (surnames 80% English, 13%
  South Asian, 7% Gaelic), in a fixed shuffled order.
* Frequencies: a Zipf-Mandelbrot law with an exponential cut-off, share(rank r) proportional
  to (r + q)^-a * exp(-r / R), over a finite universe; the surname head shares above replace
  ranks 1-10 and the rest is rescaled to sum to one (q is set so that rank 11, 0.26%, stays
  below rank 10, 0.30%).

Targets (England and Wales) and what the model gives (expected values, checked by
tests/synthetic/test_names.py at small N and in the README section "Synthetic names"):

======================================  ==============  ==========================
statistic                               target          model
======================================  ==============  ==========================
commonest surname                       about 1.2%      1.20% (SMITH)
ten commonest surnames                  about 5-6%      5.70%
hundred commonest surnames              not targeted    18.1%
distinct surnames, 200,000 people       tens of 1,000s  about 38,900
distinct surnames, 2,000,000 people     tens of 1,000s  about 94,500
commonest forename (per sex)            a few %         2.8%
ten commonest forenames (per sex)       not targeted    18.3%
distinct forenames per sex, 100,000     thousands       about 10,900
distinct forenames per sex, 1,000,000   thousands       about 19,700 (of 20,000)
======================================  ==============  ==========================

Forename and surname are drawn independently, so among N distinct people the pairs sharing
sex, forename and surname number about N^2/4 * sum(p_f^2) * sum(p_s^2) = 9.4e-7 N^2 (sum p_f^2
= 0.0054 per sex, sum p_s^2 = 0.0007): about 380 at 20,000 people and 3.8 M at 2,000,000
(0.02 and 1.9 per person), against 1.9 M at 20,000 with the old 112 surnames. Record pairs in
linkage blocking are then dominated by the same person's records in several sources, which
grow linearly.

Sampling is by inverse CDF (``np.searchsorted``) on uniforms, so it is vectorised and works
with any source of uniforms (see ``synthetic.streams.BlockRNG``).
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np

# Head shares of the ten commonest surnames of England and Wales (ONS-like order of size).
SURNAME_HEAD_SHARES = (0.0120, 0.0090, 0.0062, 0.0055, 0.0055, 0.0042, 0.0040, 0.0040, 0.0036, 0.0030)
SURNAME_LAW = dict(a=0.85, q=20.0, cutoff=40_000, universe=200_000)  # rank 11 below rank 10 (0.26%)
FORENAME_LAW = dict(a=1.2, q=8.0, cutoff=10 ** 9, universe=20_000)
UNIVERSE_SEED = 20_240_401  # fixes the composed lists and their order, whatever the population seed
# Forenames the generator uses for a special purpose (unregistered namesakes): never composed.
RESERVED_FORENAMES = frozenset({"HARRIET", "BERNARD"})

_HERE = Path(__file__).resolve().parent

_ONSETS = ("B BR BL C CR CL CH D DR F FR FL G GR GL H J K L M N P PR PL R S SH ST SW SP T TR TH "
           "W WH WR Y").split()
_VOWELS = "A E I O U EA OO AI AR OR ER".split()
_CODAS = ["", "L", "LL", "N", "R", "RN", "RT", "M", "D", "T", "CK", "ST", "NT", "RD", "B", "G", "SH", "TT"]
_EN_SUFFIXES = ("BY TON LEY FORD FIELD WORTH WOOD SHAW HURST HAM STEAD BURY WELL BROOK DALE GATE HILL "
                "HOLME ROYD CLIFFE THWAITE THORPE COTT COMBE DEN DON LOW MORE RIDGE STONE WICK WAY LAND "
                "INGTON INGHAM SON ER MAN S ING ES ISON ETT INS").split()
_SA_SYLLABLES = ("RA RAH SHA SA MA MAH NA HA KA KHA JA ZA TA FA BA DA PA GA IQ AH AK AL AM AN AR AS AZ "
                 "SI SU MU HU KU RU CHA CHAU BHA DHA GHA").split()
_SA_MIDDLES = "SH D Z M N R L H B Q K T J".split()
_SA_ENDINGS = "ID IM IR AN AR AD ANI ESH AL EEM ARI OOR IQ AM UL AH".split()
_FEMALE_ENDINGS = "A IA INA ELLA ETTE EEN Y IE ANNE ISE ICE LYN ISHA IKA ARA ENE ELLE ANA ITA ONA".split()
_MALE_ENDINGS = "O AN EN IN ON US EL IEL AM ER AS ID IM IR AR OS EY LEY TON RIC VIN BERT DEN".split()


def _syllables() -> list[str]:
    return [o + v + c for o in _ONSETS for v in _VOWELS for c in _CODAS]


_AWKWARD = re.compile(r"(.)\1\1|[^AEIOUY]{4}|^[^AEIOUY]*$")


def _plausible(name: str) -> bool:
    """No letter three times running, no four consonants in a row, at least one vowel."""
    return 3 <= len(name) <= 14 and not _AWKWARD.search(name)


def _deal(families: list[list[str]], shares: list[float], exclude: set, n: int, rng: np.random.Generator) -> list[str]:
    """n distinct names, the family of each rank drawn at the given shares, each family in a
    shuffled order (so no rank range is alphabetical or one pattern)."""
    pools = []
    for fam in families:
        fam = [x for x in dict.fromkeys(fam) if x not in exclude and _plausible(x)]
        pools.append(iter(rng.permutation(np.array(fam, dtype=object)).tolist()))
    out, seen = [], set(exclude)
    fam_of = rng.choice(len(families), size=4 * n, p=np.asarray(shares) / np.sum(shares))
    for f in fam_of:
        name = next(pools[f], None)
        if name is None or name in seen:
            continue
        seen.add(name)
        out.append(name)
        if len(out) == n:
            return out
    raise ValueError(f"name parts give fewer than {n} distinct names")


def _law(n: int, a: float, q: float, cutoff: float, universe: int) -> np.ndarray:
    r = np.arange(1, n + 1, dtype=float)
    w = (r + q) ** -a * np.exp(-r / cutoff)
    return w / w.sum()


def _surname_families() -> list[list[str]]:
    """Composed surname candidates: English, South Asian and Gaelic families."""
    syl = _syllables()
    english = [s + x for s in syl for x in _EN_SUFFIXES]
    south_asian = [a + m + e for a in _SA_SYLLABLES for m in _SA_MIDDLES for e in _SA_ENDINGS]
    south_asian += [a + b + e for a in _SA_SYLLABLES for b in _SA_SYLLABLES for e in _SA_ENDINGS]
    gaelic = ["MC" + s + x for s in syl[::3] for x in ("", "AN", "ER", "IE", "EN", "ALL")]
    gaelic += ["O" + s + x for s in syl[::5] for x in ("AN", "ELL", "ARA", "EY")]
    return [english, south_asian, gaelic]


def _forename_candidates(sex: str) -> list[str]:
    first = [o + v for o in _ONSETS + ["", "EL", "AL", "IS", "AM"] for v in _VOWELS]
    mid = ["", "L", "N", "R", "M", "S", "V", "D", "TH", "NN", "LL"]
    ends = _FEMALE_ENDINGS if sex == "F" else _MALE_ENDINGS
    return [f + m + e for f in first for m in mid for e in ends]


@lru_cache(maxsize=None)
def ordinary_words() -> frozenset[str]:
    """Composed candidates that are ordinary English words (WARNING, LEADER, HEAVY): never used
    as names, since a real surname list hardly holds them and the identifier scan of the
    outputs would find them in the project's own text. See ordinary_words.txt for the source."""
    lines = (_HERE / "ordinary_words.txt").read_text().splitlines()
    return frozenset(x for x in lines if x and not x.startswith("#"))


def all_candidates() -> set[str]:
    """Every name the composition rules can make, before filtering and dealing."""
    out = {x for fam in _surname_families() for x in fam}
    for sex in ("F", "M"):
        out.update(_forename_candidates(sex))
    return {x for x in out if _plausible(x)}


@lru_cache(maxsize=None)
def surname_universe() -> tuple[np.ndarray, np.ndarray]:
    """(names, cumulative shares) of every surname the generator can give, commonest first."""
    from .identifiers import SURNAMES

    rng = np.random.default_rng([UNIVERSE_SEED, 1])
    n = SURNAME_LAW["universe"]
    head = list(SURNAMES)
    exclude = set(head) | ordinary_words()
    tail = _deal(_surname_families(), [0.80, 0.13, 0.07], exclude, n - len(head), rng)
    names = np.array(head + tail, dtype=object)
    p = _law(n, **SURNAME_LAW)
    k = len(SURNAME_HEAD_SHARES)
    p[k:] *= (1 - sum(SURNAME_HEAD_SHARES)) / p[k:].sum()
    p[:k] = SURNAME_HEAD_SHARES
    return names, _cdf(p)


@lru_cache(maxsize=None)
def forename_universe(sex: str) -> tuple[np.ndarray, np.ndarray]:
    """(names, cumulative shares) of the forenames of one sex ("F" or "M"), commonest first."""
    from .identifiers import FEMALE_NAMES, MALE_NAMES

    if sex not in ("F", "M"):
        raise ValueError(f"sex must be 'F' or 'M', not {sex!r}")
    head = list(FEMALE_NAMES if sex == "F" else MALE_NAMES)
    rng = np.random.default_rng([UNIVERSE_SEED, 2 if sex == "F" else 3])
    # the other sex's real names stay out of this sex's tail
    other = set(MALE_NAMES if sex == "F" else FEMALE_NAMES)
    n = FORENAME_LAW["universe"]
    exclude = set(head) | other | RESERVED_FORENAMES | ordinary_words()
    tail = _deal([_forename_candidates(sex)], [1.0], exclude, n - len(head), rng)
    return np.array(head + tail, dtype=object), _cdf(_law(n, **FORENAME_LAW))


def _cdf(p: np.ndarray) -> np.ndarray:
    c = np.cumsum(p)
    c /= c[-1]
    return c


def pick(universe: tuple[np.ndarray, np.ndarray], u: np.ndarray) -> np.ndarray:
    """Names for uniforms u in [0, 1): the inverse CDF of the universe's shares."""
    names, cdf = universe
    return names[np.minimum(np.searchsorted(cdf, u, side="right"), len(names) - 1)]


def pick_forenames(sex: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Forenames for people of the given sexes ("F"/"M") from uniforms u."""
    return np.where(sex == "F", pick(forename_universe("F"), u), pick(forename_universe("M"), u))


def expected_distinct(universe: tuple[np.ndarray, np.ndarray], n: int) -> float:
    """Expected number of distinct names among n people: sum over names of 1 - exp(-n p)."""
    p = np.diff(universe[1], prepend=0.0)
    return float(np.sum(-np.expm1(-n * p)))


WORD_LIST_SOURCE = Path("/usr/share/dict/british-english")  # Debian package wbritish (SCOWL)


def dictionary_words(dictionary: Path = WORD_LIST_SOURCE) -> set[str]:
    """The dictionary's lower-case words (proper nouns, capitalised there, may be names), upper-cased."""
    return {w.upper() for w in dictionary.read_text(encoding="utf-8", errors="replace").split()
            if re.fullmatch(r"[a-z]+", w)}


def words_among_candidates(dictionary: Path = WORD_LIST_SOURCE) -> list[str]:
    """The composed candidates that the dictionary holds as ordinary words, sorted."""
    return sorted(all_candidates() & dictionary_words(dictionary))


def write_ordinary_words(dictionary: Path = WORD_LIST_SOURCE) -> Path:
    """Regenerate ordinary_words.txt from the dictionary (after the composition rules change)."""
    header = [
        "# Composed name candidates that are ordinary English words: the generator never uses them.",
        "# Written by synthetic.names.write_ordinary_words() from /usr/share/dict/british-english",
        "# (Debian package wbritish, from SCOWL: Copyright 2000-2011 by Kevin Atkinson. Permission to",
        "# use, copy, modify, distribute and sell these word lists, the associated scripts, the output",
        "# created from the scripts, and its documentation for any purpose is hereby granted without",
        "# fee, provided that the above copyright notice appears in all copies and that both that",
        "# copyright notice and this permission notice appear in supporting documentation. Kevin",
        "# Atkinson makes no representations about the suitability of this array for any purpose. It",
        "# is provided \"as is\" without express or implied warranty.)",
    ]
    path = _HERE / "ordinary_words.txt"
    path.write_text("\n".join(header + words_among_candidates(dictionary)) + "\n", encoding="utf-8")
    ordinary_words.cache_clear()
    return path


if __name__ == "__main__":
    print(write_ordinary_words())
