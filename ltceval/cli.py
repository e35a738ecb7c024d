"""`ltceval`: the command line of the pipeline."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.contract import SEEDS
from core.errors import LtcevalError
from core.settings import ENGINE_ENV, ENGINES


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + traceback
        raise LtcevalError(f"{self.prog}: {message}")


def _number(convert, noun: str, wanted: str, ok):
    """An argparse type: ``convert(text)`` (else "expected <noun>"), then ``ok(value)`` (else
    "expected <wanted>")."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text}")
        return value
    return parse


_positive_int = _number(int, "a whole number", "a positive number", lambda v: v > 0)
_non_negative_int = _number(int, "a whole number", "zero or a positive number", lambda v: v >= 0)
_probability = _number(float, "a probability", "a probability between 0 and 1", lambda v: 0 < v < 1)
_positive_float = _number(float, "a number", "a positive number", lambda v: 0 < v < float("inf"))
_probability_or_one = _number(float, "a share", "a share above 0 and at most 1", lambda v: 0 < v <= 1)
_rate_ratio = _number(float, "a rate ratio", "a rate ratio between 0 and 1 (a reduction)", lambda v: 0 < v < 1)
_non_negative_float = _number(float, "a number", "zero or a positive number", lambda v: 0 <= v < float("inf"))


def _cmd_synth(args: argparse.Namespace) -> int:
    from synthetic.generate import generate
    from synthetic.params import SynthParams

    params = SynthParams(persons=args.persons, seed=args.seed)
    if args.null_effect:
        params = params.with_null_effect()
    mps = None
    if args.mps:
        from synthetic.mps import MpsOptions

        if args.upstream_pseudonymised:
            raise LtcevalError("synth: --mps writes the MPS fields on identifiable extracts, not with "
                               "--upstream-pseudonymised")
        mps = MpsOptions()
    summary = generate(params, Path(args.out), fmt=args.format, upstream_pseudonymised=args.upstream_pseudonymised,
                       monthly_from=args.monthly_from, mps=mps,
                       **({"chunk_persons": args.chunk_persons} if args.chunk_persons else {}))
    if args.pseudonymised_fixture:
        import os

        from core.settings import KEY_ENV, env_value
        from synthetic.fixture import write_pseudonymised_fixture

        key = env_value(KEY_ENV) or os.urandom(32).hex()
        write_pseudonymised_fixture(Path(args.out), key.encode())
        print(f"wrote perfect-linkage pseudonymised fixture to {Path(args.out) / 'analytical' / 'pseudonymised'} (tests only)")
    if args.mps:
        from identifiable_zone.sources import DEFAULT_SOURCES_CONFIG
        from synthetic.mps import sources_config

        cfg = sources_config(str(DEFAULT_SOURCES_CONFIG), str(Path(args.out) / "sources_mps.yml"))
        print(f"wrote NHS England MPS Person_ID fields on ecds, apc and opa; read them with the sources config {cfg}")
    total = sum(summary["rows"].values())
    print(f"wrote {total:,} rows in {len(summary['rows'])} extracts to {Path(args.out) / 'landing'} "
          f"({summary['seconds']} s); ground truth in {Path(args.out) / 'ground_truth'}")
    return 0


def _cmd_link(args: argparse.Namespace) -> int:
    """Link two files with the pipeline's own linker (identifiable_zone.link_files)."""
    from identifiable_zone.link_files import link_two_files

    out = Path(args.out)
    summary = link_two_files(Path(args.left), Path(args.right), args.id_column, args.map, args.compare,
                             args.threshold, out, one_to_one=args.one_to_one, target_precision=args.target_precision)
    th = summary["thresholds"]
    print(f"linked {summary['links']['left_records_linked']:,} of {summary['records']['left']:,} left records "
          f"({summary['links']['pairs']:,} pairs) in {summary['seconds']} s at match probability "
          f">= {th['match_probability']:.6g} ({th['chosen_by']}; expected precision {th['expected_precision']:.4f}, "
          f"recall {th['expected_recall']:.4f}); wrote {out / 'links.csv'} and {out / 'summary.json'}")
    return 0


def _chunk_persons(text: str) -> int:
    from synthetic.streams import RNG_BLOCK

    n = _positive_int(text)
    if n % RNG_BLOCK:
        raise argparse.ArgumentTypeError(f"must be a multiple of {RNG_BLOCK:,}, not {n:,}")
    return n


def _period(text: str) -> str:
    from core.errors import PublishError
    from core.periods import parse_period

    try:
        return parse_period(text)
    except PublishError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _cmd_run(args: argparse.Namespace) -> int:
    from .run import run_pipeline

    report = run_pipeline(out=Path(args.out), persons=args.persons, seed=args.seed,
                          config=Path(args.config) if args.config else None, period=args.period,
                          engine=args.engine)
    print(f"business-case report: {report}")
    note = blinded_note(report)
    if note:
        print(note)
    return 0


def blinded_note(report: Path) -> str | None:
    """What to say when the run's report is blinded (a diagnostic gate failed): which gates,
    and where the reason to show the estimates anyway goes (evaluation/diagnostics.py)."""
    import json

    path = Path(report).parent / "diagnostics.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("blinded"):
        return ("the report is BLINDED (diagnostics only, no estimates): failed gate(s): "
                + "; ".join(doc["failed_gates"]) + ". What to change is in its diagnostics table; "
                "LTCEVAL_UNBLIND_REASON=\"<why>\" shows the estimates anyway, printing the reason.")
    if doc.get("override"):
        return (f"the report shows estimates although gate(s) failed ({'; '.join(doc['failed_gates'])}): "
                f"override reason printed in it: {doc['override']['reason']}")
    return None


def _cmd_did(args: argparse.Namespace) -> int:
    """Group-time ATTs for staggered adoption (evaluation.methods.staggered) on a long panel file."""
    import json

    from core.tables import read_table, require_columns
    from evaluation.methods.staggered import estimate_att_gt

    path = Path(args.panel)
    df = read_table(path, "panel file")
    covariates = [c.strip() for c in (args.covariates or "").split(",") if c.strip()]
    require_columns(df, [args.unit, args.time, args.cohort, args.outcome, *covariates], f"panel file {path}")
    try:
        res = estimate_att_gt(df, unit=args.unit, time=args.time, cohort=args.cohort,
                              outcome=args.outcome, control=args.control, covariates=covariates,
                              bootstrap=args.bootstrap, seed=args.seed)
    except ValueError as e:
        raise LtcevalError(f"panel file {path}: {e}") from None
    out = Path(args.json)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    doc = res.to_dict()
    honest_line = ""
    if args.honest:
        from evaluation.methods.common import json_safe
        from evaluation.methods.honest import dynamic_sensitivity, honest_block

        doc["honest"] = json_safe(honest_block(dynamic_sensitivity(res), aggregation="dynamic"))
        avg = doc["honest"]["post_average"]
        if avg:
            honest_line = (f"; parallel-trends breakdown of the dynamic ATT: Mbar {_breakdown_text(avg['breakdown_mbar'])}, "
                           f"M {_breakdown_text(avg['breakdown_m'])}")
    out.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    simple = res.aggregate("simple")
    print(f"{len(res.cells)} group-time ATTs for {args.outcome} ({res.n_units:,} units, control "
          f"{args.control}); simple ATT {simple.estimate:+.4g} (95% CI {simple.ci[0]:.4g} to "
          f"{simple.ci[1]:.4g}); pre-trend p = {res.pretrend.p_value:.3g}{honest_line}; wrote {out}")
    return 0


def _breakdown_text(value) -> str:
    return "beyond the grid" if value is None else f"{value:g}"


def _cmd_match(args: argparse.Namespace) -> int:
    """Propensity-score matching on one table (evaluation.table_matching): balance and matched ATT."""
    import json

    from evaluation.table_matching import MatchSettings, match_table, warning_text

    def cols(text: str | None) -> tuple[str, ...]:
        return tuple(c.strip() for c in (text or "").split(",") if c.strip())

    res = match_table(Path(args.data), MatchSettings(
        treatment=args.treatment, covariates=cols(args.covariates), exact=cols(args.exact), group=args.group,
        id=args.id, ratio=args.ratio, caliper=args.caliper, refine=args.refine,
        refine_target_smd=args.refine_target_smd, outcome=args.outcome, seed=args.seed))
    doc = res.document
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    smd = doc["max_abs_smd_after"]
    msg = (f"matched {res.n_matched_treated:,} of {res.n_treated:,} treated rows (1:{args.ratio}); max |SMD| after "
           f"{smd if smd is not None else float('nan'):.3f}")
    att = res.att
    if att:
        msg += (f"; ATT on {args.outcome} {att['estimate']:+.4g} (95% CI {att['ci_low']:.4g} to "
                f"{att['ci_high']:.4g}, set-clustered SE {att['se']:.3g})")
    print(f"{msg}; wrote {out}")
    if doc["balance_warnings"]:
        advice = ("try --refine (the pipeline's default), a narrower --caliper, more --exact columns or propensity "
                  "terms (e.g. squares) of the covariates named" if not args.refine else
                  "try a narrower --caliper, a lower --refine-target-smd, more --exact columns or propensity terms "
                  "(e.g. squares) of the covariates named")
        for line in warning_text(doc["balance_warnings"]).splitlines():
            print(f"ltceval: warning: {line}", file=sys.stderr)
        print(f"ltceval: warning: {advice} (balance_warnings in {out})", file=sys.stderr)
    return 0


def _outcome_values(pairs: list[str] | None, flag: str) -> dict[str, float]:
    """``OUTCOME=NUMBER`` flags as a dict, with one-line errors naming the flag."""
    from core.contract import COUNT_OUTCOMES

    out = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or name not in COUNT_OUTCOMES:
            raise LtcevalError(f"{flag} {pair!r}: expected OUTCOME=NUMBER with OUTCOME one of {', '.join(COUNT_OUTCOMES)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise LtcevalError(f"{flag} {pair!r}: {value!r} is not a number") from None
    return out


def _site_plan(args: argparse.Namespace):
    """The site's numbers: the file (--site), then the flags over it."""
    import json

    from core.contract import COUNT_OUTCOMES
    from evaluation.power import site_plan_from_mapping

    doc: dict = {}
    if args.site:
        path = Path(args.site)
        if not path.is_file():
            raise LtcevalError(f"site file {path}: no such file")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() == ".json":
                doc = json.loads(text)
            else:
                import yaml
                doc = yaml.safe_load(text)
        except Exception as e:  # malformed YAML or JSON: one line
            raise LtcevalError(f"site file {path}: cannot read ({str(e).strip().splitlines()[0][:200]})") from None
        if doc is None or not isinstance(doc, dict):
            raise LtcevalError(f"site file {path}: expected a mapping (treated_per_year, years, outcomes, ...)")
    doc = dict(doc)
    for key in ("treated_per_year", "years", "matching_ratio", "pre_months", "post_months", "matched_share"):
        value = getattr(args, key)
        if value is not None:
            doc[key] = value
    where = f"site file {args.site}" if args.site else "site numbers"
    outcomes = doc.get("outcomes") or {}
    if not isinstance(outcomes, dict):
        raise LtcevalError(f"{where}: outcomes must map each outcome to its rate per person a year")
    outcomes = dict(outcomes)
    for key, values in (("rate_per_person_year", _outcome_values(args.rate, "--rate")),
                        ("dispersion", _outcome_values(args.dispersion, "--dispersion")),
                        ("post_change", _outcome_values(args.post_change, "--post-change"))):
        for o, v in values.items():
            entry = outcomes.get(o)
            entry = dict(entry) if isinstance(entry, dict) else ({} if entry is None else {"rate_per_person_year": entry})
            entry[key] = v
            outcomes[o] = entry
    doc["outcomes"] = outcomes
    try:
        return site_plan_from_mapping(doc, COUNT_OUTCOMES)
    except ValueError as e:
        raise LtcevalError(f"{where}: {e}; see ltceval plan --help") from None


def _cmd_plan(args: argparse.Namespace) -> int:
    """Minimum detectable rate ratio per outcome and treated people needed (evaluation.power)."""
    import json
    import math

    from core.contract import COUNT_OUTCOMES
    from evaluation.disclosure import suppress_count
    from evaluation.methods.common import json_safe
    from evaluation.power import design_from_panel, plan_table, treated_per_year

    site_flags = [f for f in ("site", "treated_per_year", "years", "rate", "dispersion", "post_change",
                              "matching_ratio", "pre_months", "post_months", "matched_share")
                  if getattr(args, f) not in (None, [])]
    if args.from_run and site_flags:
        raise LtcevalError(f"--from-run reads the site's numbers from the run; leave out --{site_flags[0].replace('_', '-')}")
    if args.from_run:
        from core.settings import Paths
        from evaluation.panel import load_panel, table_names

        warehouse = Paths(Path(args.from_run)).warehouse
        if not warehouse.is_file():
            raise LtcevalError(f"--from-run {args.from_run}: no warehouse at {warehouse} "
                               "(the output folder of `ltceval run`, after its analytical zone)")
        if "mart_evaluation_panel" not in table_names(warehouse):
            raise LtcevalError(f"--from-run {args.from_run}: the warehouse has no mart_evaluation_panel")
        panel = load_panel(warehouse)
        if not len(panel):
            raise LtcevalError(f"--from-run {args.from_run}: the evaluation panel has no matched sets")
        designs = design_from_panel(panel, COUNT_OUTCOMES)
        per_year = treated_per_year(panel)
        n = designs[0].n_treated
        basis = {"source": "run", "run": str(args.from_run), "treated_people_analysed": suppress_count(int(n)),
                 "treated_per_year": per_year}
        head = (f"From the run in {args.from_run}: about {suppress_count(int(n))} treated people analysed"
                + (f" ({per_year:.0f} a year of index months)" if per_year else "")
                + "; rates, matching and follow-up as observed, dispersion estimated from the controls.")
    else:
        if not site_flags:
            raise LtcevalError("give a site's numbers (--treated-per-year, --years, --rate OUTCOME=RATE ..., "
                               "or --site FILE) or --from-run OUT")
        plan = _site_plan(args)
        designs = plan.designs()
        per_year = plan.treated_per_year * plan.matched_share
        basis = {"source": "site numbers", "treated_per_year": plan.treated_per_year, "years": plan.years,
                 "matched_share": plan.matched_share, "matching_ratio": plan.matching_ratio,
                 "pre_months": plan.pre_months, "post_months": plan.post_months,
                 "rates_per_person_year": {o: r * 12 for o, r in plan.rates.items()}}
        head = (f"{plan.n_treated:,.0f} treated people analysed ({plan.treated_per_year:g} a year x {plan.years:g} "
                f"year(s) x matched share {plan.matched_share:g}), {plan.matching_ratio:g} control(s) each, "
                f"comparison period {plan.pre_months:g} months, follow-up {plan.post_months:g} months.")
    table = plan_table(designs, alpha=args.alpha, power=args.power, target_rate_ratio=args.target_rr,
                       per_year=per_year)
    print(head)
    print(f"{args.power:.0%} power, {args.alpha:g} two-sided; MDRR = the smallest reduction (rate ratio below 1) "
          f"detected that often; needed = treated people for RR {args.target_rr:g}.")
    rows = [("Outcome", "MDRR", f"Power at {args.target_rr:g}", f"Needed for {args.target_rr:g}", "Years",
             "Dispersion")]
    for r in table.itertuples():
        rows.append((r.label,
                     "none" if math.isnan(r.mdrr) else f"{r.mdrr:.3f}",
                     "n/a" if math.isnan(r.power_at_target) else f"{r.power_at_target:.0%}",
                     "n/a" if math.isnan(r.treated_needed_for_target) else f"{r.treated_needed_for_target:,.0f}",
                     "n/a" if math.isnan(r.years_needed_for_target) else f"{r.years_needed_for_target:.1f}",
                     "n/a" if math.isnan(r.dispersion) else
                     f"{r.dispersion:.2f}{' (assumed)' if r.dispersion_source.startswith('assumed') else ''}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    if any(d.dispersion_source.startswith("assumed") for d in designs):
        print("Dispersion assumed 1 (Poisson) where not given: optimistic; --from-run estimates it, "
              "or give --dispersion OUTCOME=PHI.")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"alpha": args.alpha, "power": args.power, "target_rate_ratio": args.target_rr, "basis": basis,
               "outcomes": table.drop(columns=["n_treated"] if args.from_run else []).to_dict(orient="records")}
        out.write_text(json.dumps(json_safe(doc), indent=2), encoding="utf-8")
        print(f"wrote {out}")
    return 0


def _cmd_clerical_review(args: argparse.Namespace) -> int:
    """Export a stratified sample of candidate pairs for clerical review, or read the decisions
    back into estimates (identifiable_zone.clerical_review); prints counts and paths only."""
    from core.settings import Paths
    from identifiable_zone import clerical_review as cr

    paths = Paths(Path(args.out).resolve())
    if args.action == "export":
        done = cr.export_sample(paths, seed=args.seed,
                                **({"per_stratum": args.per_stratum} if args.per_stratum else {}))
        print(f"wrote the clerical-review sample (export {done['export_id']}) to {done['sample']} "
              "(identifiable zone: reviewers with access only)")
        for s in done["strata"]:
            print(f"  {s['stratum']:<22} {s['sample_pairs']:>5} of {s['population_pairs']:>7} pairs")
        print("fill its decision column (match, non-match or unsure), then run "
              f"`ltceval clerical-review import --out {args.out} <decisions.csv>`")
        return 0
    done = cr.import_decisions(paths, Path(args.decisions))
    print(f"read {done['decided_pairs']} decided pairs ({done['unsure_pairs']} unsure and "
          f"{done['not_reviewed_pairs']} not reviewed, left out) of export {done['export_id']}")

    def show(name: str, figure: dict | None, scale: float = 100.0, unit: str = "%") -> None:
        if figure is None or figure.get("estimate") is None:
            print(f"  {name}: no pairs to estimate it from")
            return
        lo, hi = figure["ci95"]
        print(f"  {name}: {scale * figure['estimate']:.3g}{unit} (95% interval {scale * lo:.3g}-{scale * hi:.3g}{unit})")

    show("precision of the probabilistic links", done["precision_probabilistic"])
    show("false-match rate (all links)", done["false_match_rate"])
    show("missed-match rate (scored candidates)", done["missed_match_rate"])
    show("recall (deterministic links taken as right)", done["recall"])
    report = _refresh_ig_report(paths)
    print(f"wrote {done['estimate_file']}" + (f"; IG report updated: {report}" if report else
                                              "; the IG report shows it when it is next written"))
    return 0


def _refresh_ig_report(paths) -> str | None:
    """Write the run's IG report again (it reads the clerical estimate): as a new published
    version of the run's period when the pipeline published it (ltceval.publish), else in place
    where the zone wrote it. None when no report of this run was found."""
    import json

    from identifiable_zone import pipeline
    from ltceval import publish

    run = json.loads((paths.identifiable / "run.json").read_text(encoding="utf-8"))

    def report_of_run(folder: Path) -> bool:
        f = folder / "ig_report.json"
        return f.is_file() and json.loads(f.read_text(encoding="utf-8")).get("run_id") == run.get("run_id")

    published = publish.published_period(paths, run["period"]) if run.get("period") else None
    if published is not None and report_of_run(published):
        return str(publish.republish_with(paths, run["period"], published,
                                          lambda staged: pipeline.write_ig_report(staged)))
    if report_of_run(paths.reports_root):
        pipeline.write_ig_report(paths)
        return str(paths.reports_root / "ig_report.html")
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ltceval", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("synth", help="write synthetic identifiable extracts and their ground truth")
    p.add_argument("--persons", type=_positive_int, default=20_000)
    p.add_argument("--seed", type=int, default=SEEDS.synthetic, help="seed of the synthetic population")
    p.add_argument("--out", required=True, help="output folder (landing/ and ground_truth/ are written inside)")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--null-effect", action="store_true", help="plant no effect of therapy on any outcome")
    p.add_argument("--pseudonymised-fixture", action="store_true",
                   help="also write analytical/pseudonymised/ straight from the ground truth "
                        "(perfect linkage; a test fixture for the analytical zone, never used by the pipeline)")
    p.add_argument("--upstream-pseudonymised", action="store_true",
                   help="write person extracts as pseudonymised upstream: identifiers replaced by a "
                        "Der_Pseudo_NHS_Number keyed hash (read with config/sources_pseudonymised_upstream.yml)")
    p.add_argument("--mps", action="store_true",
                   help="also write NHS England's MPS Person_ID fields (Person_ID, Person_ID_Type, MPS_Confidence) "
                        "on the SUS and ECDS extracts, and <out>/sources_mps.yml, a sources config that reads them")
    p.add_argument("--monthly-from", type=_period, metavar="YYYY-MM",
                   help="write activity extracts as monthly deliveries: one file a month from this month "
                        "(e.g. ecds.2024-01.csv) and one file for everything before it")
    p.add_argument("--chunk-persons", type=_chunk_persons, metavar="N",
                   help="people made and written at a time, a multiple of 1,000 (default: the generator's, "
                        "synthetic.generate.DEFAULT_CHUNK_PERSONS): it bounds memory and changes no output")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("link", help="link the records of two files (CSV or Parquet) with the pipeline's linker")
    p.add_argument("left", help="left file (.csv or .parquet); each of its records is linked to the right file")
    p.add_argument("right", help="right file (.csv or .parquet); records sharing NHS number and birth date are one person")
    p.add_argument("--id-column", required=True, help="unique record id: COL, or LEFTCOL:RIGHTCOL")
    p.add_argument("--map", required=True,
                   help="FIELD=COL,... with FIELD in nhs_number, forename, surname, date_of_birth, sex, "
                        "postcode; COL or LEFTCOL:RIGHTCOL")
    p.add_argument("--compare", help="other free-text columns (street, locality, ...) compared by exact match "
                   "(term-frequency adjusted), spaces ignored and Jaro-Winkler levels: COL or LEFTCOL:RIGHTCOL, ...")
    p.add_argument("--threshold", type=_probability,
                   help="match probability for a link (default: chosen from the trained model, the lowest at which "
                        "the expected precision of the links is at least --target-precision)")
    p.add_argument("--target-precision", type=_probability, default=0.999,
                   help="expected precision the model-chosen threshold keeps (default 0.999)")
    p.add_argument("--one-to-one", action="store_true",
                   help="both files are deduplicated: each record links to at most one on the other side, "
                        "best match weights first")
    p.add_argument("--out", required=True, help="output folder: links.csv and summary.json")
    p.set_defaults(func=_cmd_link)

    p = sub.add_parser("clerical-review", help="clerical review of the linkage: export a stratified sample of "
                                               "candidate pairs, import the reviewers' decisions")
    review = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
    q = review.add_parser("export", help="write a stratified sample of candidate pairs around the threshold into "
                                         "identifiable/clerical_review/<run id>/ (for reviewers with access)")
    q.add_argument("--out", required=True, help="output folder of the run (its identifiable/ zone is read)")
    q.add_argument("--per-stratum", type=_positive_int,
                   help="pairs drawn at random from each stratum (default: clerical_review.DEFAULT_PER_STRATUM, "
                        "30; all when fewer)")
    q.add_argument("--seed", type=int, default=1, help="seed of the random sample (default %(default)s)")
    q.set_defaults(func=_cmd_clerical_review)
    q = review.add_parser("import", help="read the reviewers' decisions: precision, false-match and missed-match "
                                         "rates with 95%% intervals into estimate.json and the IG report")
    q.add_argument("--out", required=True, help="output folder of the run")
    q.add_argument("decisions", help="the sample CSV with its decision column filled (match, non-match, unsure)")
    q.set_defaults(func=_cmd_clerical_review)

    p = sub.add_parser("run", help="run the three DAGs end to end on an embedded Airflow")
    p.add_argument("--persons", type=_positive_int, default=20_000)
    p.add_argument("--seed", type=int, default=SEEDS.synthetic,
                   help="seed of the synthetic population; the analysis seeds are fixed (core/contract.py Seeds)")
    p.add_argument("--out", default="ltceval-out", help="output folder (default ./ltceval-out)")
    p.add_argument("--config", help="sources config naming real extracts; synthetic data are generated when omitted")
    p.add_argument("--period", type=_period,
                   help="data period YYYY-MM the run is for (default: the last month with activity in the "
                        "extracts); the run fails if the extracts do not end in it")
    p.add_argument("--engine", choices=ENGINES, default=None,
                   help=f"duckdb (one machine) or spark (a local Spark here; README, Scaling out); default: "
                        f"${ENGINE_ENV}, else duckdb")
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("did", help="group-time ATTs for staggered adoption (Callaway & Sant'Anna 2021) on a long panel")
    p.add_argument("panel", help="long panel file (.csv or .parquet): one row per unit and integer period")
    p.add_argument("--unit", required=True, help="unit id column")
    p.add_argument("--time", required=True, help="period column (whole numbers)")
    p.add_argument("--cohort", required=True, help="first treated period column (0 or empty = never treated)")
    p.add_argument("--outcome", required=True, help="outcome column")
    p.add_argument("--control", choices=("never", "notyet"), default="never",
                   help="control group: never treated (default) or not yet treated")
    p.add_argument("--covariates", help="time-invariant covariates a,b,... (doubly robust estimator)")
    p.add_argument("--bootstrap", type=_non_negative_int, default=999,
                   help="multiplier-bootstrap draws for uniform bands (default 999; 0 = none)")
    p.add_argument("--seed", type=int, default=SEEDS.staggered_bootstrap, help="seed of the multiplier bootstrap")
    p.add_argument("--json", required=True, help="output JSON: group-time estimates, aggregations, pre-trend test, "
                                                 "and the parallel-trends sensitivity (\"honest\")")
    p.add_argument("--no-honest", dest="honest", action="store_false",
                   help="skip the parallel-trends sensitivity of the dynamic aggregation (Rambachan and Roth "
                        "robust intervals; about 20 s for six post periods)")
    p.set_defaults(func=_cmd_did)

    from core.dbt import matching_defaults

    md = matching_defaults()
    p = sub.add_parser(
        "match", help="propensity-score matching on one table: balance, counts and matched ATT",
        description="Propensity-score matching of one table, with the pipeline's defaults (the matching vars of "
                    "dbt_project/dbt_project.yml: 1:%d, caliper %g, refinement %s to |SMD| <= %g). Balance is "
                    "judged as the pipeline's diagnostics gate judges it (evaluation/diagnostics.py): a warning on "
                    "standard error and balance_warnings in the JSON name the covariates whose |SMD| after "
                    "matching is 0.1 or more or whose variance ratio is outside 0.5-2."
                    % (md["ratio"], md["caliper"], "on" if md["refine"] else "off", md["refine_target_smd"]))
    p.add_argument("data", help="table (.csv or .parquet): one row per unit (treated or candidate control)")
    p.add_argument("--treatment", required=True, help="treatment column (0/1)")
    p.add_argument("--covariates", help="a,b,...: propensity model and balance (default: every numeric column "
                                        "other than treatment, outcome, exact, group and id)")
    p.add_argument("--exact", help="c,d,...: columns that must be equal within a matched set")
    p.add_argument("--group", help="a further exact column, e.g. index month in a stacked design")
    p.add_argument("--id", help="unit id column: a control unit is used at most once; ever-treated units never control")
    p.add_argument("--ratio", type=_positive_int, default=md["ratio"],
                   help="controls per treated unit, 1:k (default %(default)s, the pipeline's matching_ratio)")
    p.add_argument("--caliper", type=_non_negative_float, default=md["caliper"],
                   help="caliper in SDs of the logit of the propensity score (default %(default)s, the pipeline's "
                        "matching_caliper_sd; 0 = none)")
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=md["refine"],
                   help="after greedy matching: rescue unmatched treated and make balance-improving swaps "
                        "within the caliper (default: %(default)s, the pipeline's matching_refine; --no-refine: "
                        "plain greedy matching)")
    p.add_argument("--refine-target-smd", type=_non_negative_float, default=md["refine_target_smd"],
                   help="refinement stops once the largest |SMD| is at or below this (default %(default)s, the "
                        "pipeline's matching_refine_target_smd; 0: until no swap helps)")
    p.add_argument("--outcome", help="outcome column: matched ATT with a set-clustered SE and 95%% CI")
    p.add_argument("--seed", type=int, default=SEEDS.matching, help="breaks ties in the order treated are served")
    p.add_argument("--json", required=True, help="output JSON: counts, balance before/after, ATT")
    p.set_defaults(func=_cmd_match)

    p = sub.add_parser(
        "plan", help="could this evaluation detect the effect? minimum detectable rate ratio per outcome",
        description="Planning mode: per outcome, the minimum detectable rate ratio (MDRR: the smallest "
                    "reduction the matched difference-in-differences detects with the given power, two-sided) "
                    "and the treated people needed to detect a 15% reduction (--target-rr). Either a site's "
                    "expected numbers (flags, or --site FILE in YAML or JSON; flags win) or --from-run OUT, "
                    "the output folder of `ltceval run` (its evaluation panel). Method and assumptions: "
                    "evaluation/power.py.")
    p.add_argument("--from-run", metavar="OUT", help="output folder of a run: rates, matching, follow-up and "
                                                     "dispersion estimated from its evaluation panel")
    p.add_argument("--site", metavar="FILE", help="site numbers, YAML or JSON: treated_per_year, years, outcomes "
                                                  "(outcome: rate per person a year, or {rate_per_person_year, "
                                                  "dispersion, post_change}), optional matching_ratio, pre_months, "
                                                  "post_months, matched_share")
    p.add_argument("--treated-per-year", type=_positive_float, help="people treated (referred and eligible) a year")
    p.add_argument("--years", type=_positive_float, help="years of index months in the data (each with a year "
                                                          "before and a year after in the extracts)")
    p.add_argument("--rate", action="append", metavar="OUTCOME=RATE",
                   help="expected events per person a year in the comparison period, e.g. ae_attendances=0.7 "
                        "(repeat per outcome)")
    p.add_argument("--dispersion", action="append", metavar="OUTCOME=PHI",
                   help="variance of a person's before/after contrast over Poisson, >= 1 (default 1, optimistic; "
                        "`--from-run` estimates it; bed days: about the mean of stay^2 over the mean stay)")
    p.add_argument("--post-change", action="append", metavar="OUTCOME=RATIO",
                   help="controls' rate after the index over their comparison-period rate (default 1)")
    p.add_argument("--matching-ratio", type=_positive_float, help="controls per treated person (default 1, "
                                                                   "the pipeline's matching_ratio)")
    p.add_argument("--pre-months", type=_positive_int, help="months of the comparison period (default 6: months "
                                                            "-12 to -7, the default selection window left out)")
    p.add_argument("--post-months", type=_positive_int, help="months of follow-up after the index month (default 12)")
    p.add_argument("--matched-share", type=_probability_or_one, help="share of treated people who find a control "
                                                                     "(default 1; 0.9 on the demo population)")
    p.add_argument("--target-rr", type=_rate_ratio, default=0.85, help="reduction to plan for (default 0.85)")
    p.add_argument("--alpha", type=_probability, default=0.05, help="two-sided significance level (default 0.05)")
    p.add_argument("--power", type=_probability, default=0.8, help="power (default 0.8)")
    p.add_argument("--json", help="also write the table and its basis as JSON here")
    p.set_defaults(func=_cmd_plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except LtcevalError as exc:
        print(f"ltceval: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        print(f"ltceval: error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ltceval: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
