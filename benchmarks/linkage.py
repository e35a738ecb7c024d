"""Benchmark of the identifiable zone's linkage against the synthetic ground truth.

    uv run --frozen python benchmarks/linkage.py [--persons 20000] [--seed 1] [--model train|current|FILE]

Generates the population (default 20,000 persons, unregistered A&E visitors included), runs
validate + link exactly as the DAG does, and prints precision, recall (overall, per source,
per subgroup: age band, sex, ethnic category, deprivation decile), cluster purity, time and
peak memory. Targets: precision >= 0.999, recall >= 0.995. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from identifiable_zone import link as lk  # noqa: E402
from identifiable_zone import pipeline  # noqa: E402
from core.settings import Paths  # noqa: E402
from synthetic.generate import generate  # noqa: E402
from synthetic.params import SynthParams  # noqa: E402


def _age_band(dob: pd.Series, at: str) -> pd.Series:
    age = (pd.Timestamp(at) - pd.to_datetime(dob)).dt.days // 365.25
    return pd.cut(age, [-1, 17, 34, 49, 64, 79, 200],
                  labels=["0-17", "18-34", "35-49", "50-64", "65-79", "80+"]).astype(str)


def quality_against_truth(paths: Paths, params: SynthParams) -> dict:
    """``identifiable_zone.link.linkage_quality`` of a run's links against the generator's ground
    truth, with the subgroups (age band at the start of the data, sex, ethnic category,
    deprivation decile; unregistered visitors as a group of their own). Also used by
    ``benchmarks/scale.py``."""
    # only the columns scored: at 2,000,000 people these are 21 million records
    rp = pd.read_parquet(paths.identifiable / "links" / "record_person.parquet",
                         columns=["source", "record_id", "person_key"])
    truth = pd.read_parquet(paths.ground_truth / "record_person.parquet",
                            columns=["source", "record_id", "true_person_id"])
    persons = pd.read_parquet(paths.ground_truth / "persons.parquet")
    unreg = pd.read_parquet(paths.ground_truth / "unregistered_persons.parquet")
    at = params.start.isoformat()
    attrs = pd.concat([
        pd.DataFrame({"true_person_id": persons["person"], "age_band": _age_band(persons["date_of_birth"], at),
                      "sex": persons["sex"], "ethnic_category": persons["ethnic_category"],
                      "imd_decile": persons["imd_decile"].astype(str)}),
        pd.DataFrame({"true_person_id": unreg["person"], "age_band": _age_band(unreg["date_of_birth"], at),
                      "sex": unreg["sex"], "ethnic_category": "unregistered", "imd_decile": "unregistered"}),
    ], ignore_index=True)
    return lk.linkage_quality(rp, truth, attrs)


def _row(name: str, m: dict) -> str:
    return (f"  {name:<22} records {m['records']:>8,}  links {m['links']:>8,}  wrong {m['wrong_links']:>5,}  "
            f"precision {m['precision']:.5f}  recall {m['recall']:.5f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--model", default="train")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        params = SynthParams(persons=args.persons, seed=args.seed)
        t0 = time.perf_counter()
        generate(params, out)
        t_gen = time.perf_counter() - t0
        paths = Paths(out)
        t0 = time.perf_counter()
        pipeline.validate_all(paths, run_id="benchmark")
        t_val = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = pipeline.link_all(paths, model=args.model)
        t_link = time.perf_counter() - t0
        q = quality_against_truth(paths, params)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    o = q["overall"]
    print(f"persons                 {args.persons:>10,}   (seed {args.seed})")
    print(f"records linked to spine {o['records']:>10,}   distinct identifier tuples {summary['distinct_tuples']:,}")
    print(f"rules (tuples)          deterministic {summary['deterministic_tuples']:,}  probabilistic "
          f"{summary['probabilistic_tuples']:,}  unlinked {summary['unlinked_tuples']:,}  "
          f"(scored pairs {summary['scored_pairs']:,}, threshold {summary['threshold']})")
    print(f"model                   {summary['model']['file']}  trained={summary['model']['trained']}  "
          f"tf-adjusted={summary['model']['term_frequency_adjusted']}")
    print(f"PRECISION               {o['precision']:.5f}   (target >= 0.999; wrong links {o['wrong_links']:,})")
    print(f"RECALL                  {o['recall']:.5f}   (target >= 0.995; linkable {o['linkable']:,})")
    print(f"unregistered records    {q['unregistered_records']:,}, linked to a spine person: {q['unregistered_linked']}")
    print(f"impure clusters         {q['impure_clusters']} of {q['clusters']:,}")
    print("per source:")
    for s, m in q["by_source"].items():
        print(_row(s, m))
    for dim, groups in q["by_subgroup"].items():
        print(f"by {dim}:")
        for v, m in sorted(groups.items()):
            print(_row(v, m))
    print(f"seconds                 generate {t_gen:.1f}  validate {t_val:.1f}  link {t_link:.1f}  "
          f"(validate+link {t_val + t_link:.1f})")
    print(f"peak memory (MiB)       {peak_mib:,.0f}")


if __name__ == "__main__":
    main()
