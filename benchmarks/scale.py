"""Scale benchmark of the whole chain: time, memory and throughput per stage, under a memory guard.

    uv run --frozen python benchmarks/scale.py --persons N [--seed 1] [--workdir DIR]
        [--memory-limit-gib 14] [--keep] [--json FILE] [--balance-report-only] [--via-airflow]
        [--stages validate,link]

Default: each stage runs as a child process of its own (as each task of a scheduled Airflow
deployment does), calling the functions the DAG tasks call (``ltceval.tasks``) with the
environment ``ltceval run`` gives the DAGs (``LTCEVAL_OUT``, a generated key file):
generate (``synthetic.generate``, as ``ltceval synth``), validate, link, pseudonymise, IG
report, dbt build (``ltceval.warehouse_build``: dbt's first selection, the matching step,
dbt's second, with the contract's vars, into the staging warehouse; the DAG runs the same nodes
one cosmos task each), GX (the mart gates, then publishing the warehouse), the evaluation's estimates,
costing and sensitivity, and the report (written and published). After the link stage the
links are scored against the generator's ground truth (``benchmarks/linkage.py``), outside the
chain's figures.

``--via-airflow`` instead runs the real ``ltceval run`` (embedded Airflow, ``dag.test()`` per
DAG) end to end under the same guard; its per-DAG rows come from its process tree.

Printed per stage: wall seconds, peak memory of the stage's whole process tree (MiB), the rows
it takes in and rows per second; then the total wall time and the overall peak. The guard
(``benchmarks/memory_guard.py``) stops a stage whose tree, with this process, passes
``--memory-limit-gib`` (this machine has no swap), names it and exits with status 3.
Progress lines of the long stages are shown as they come. Prints figures; asserts nothing.

``--stages`` runs only the named stages again on a work folder kept (``--keep``) from a whole
run of the same persons and seed, so one stage's change is measured at 2,000,000 people
without generating and validating for an hour first; the validate stage then starts from an
empty validation cache.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from benchmarks.memory_guard import GIB, MIB, GuardedRun, run_guarded  # noqa: E402
from core.contract import SEEDS  # noqa: E402
from core.progress import LOGGER as PROGRESS_LOGGER  # noqa: E402
from core.progress import progress_message  # noqa: E402
from core.settings import UNBLIND_REASON_ENV, Paths  # noqa: E402
from ltceval.embedded import LIST_DBT_PROJECT  # noqa: E402

STOPPED_EXIT = 3  # the guard stopped a stage
FAILED_EXIT = 1  # a stage failed on its own


# -- the stages (each runs in a child: `scale.py --stage NAME ...`) --------------------------

def _rows_of_parquet(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(folder.glob("*.parquet")))


def _rows_of_tables(warehouse: Path, tables) -> int:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        return sum(con.execute(f"select count(*) from main.{t}").fetchone()[0] for t in tables)


def _panel_rows(paths: Paths) -> int:
    return _rows_of_tables(paths.published_warehouse, ["mart_evaluation_panel"])


def _stage_generate(paths: Paths, args) -> dict:
    from synthetic.generate import generate
    from synthetic.params import SynthParams

    summary = generate(SynthParams(persons=args.persons, seed=args.seed), paths.out)  # `ltceval synth`'s defaults
    return {"rows": sum(summary["rows"].values()), "rows_are": "rows written"}


def _stage_validate(paths: Paths, args) -> dict:
    from ltceval import tasks

    out = tasks.validate_extracts(run_id=f"scale-{args.persons}-{args.seed}")
    return {"rows": sum(t["rows_in"] for t in out["tables"].values()), "rows_are": "landing rows", "xcom": out}


def _stage_link(paths: Paths, args) -> dict:
    from ltceval import tasks

    out = tasks.link_records()
    return {"rows": out["spine_records"] + out["source_records"], "rows_are": "person records linked",
            "xcom": {k: out.get(k) for k in ("spine_records", "source_records", "distinct_tuples",
                                              "deterministic_tuples", "probabilistic_tuples", "unlinked_tuples",
                                              "scored_pairs")}}


def _stage_link_quality(paths: Paths, args) -> dict:
    from benchmarks.linkage import quality_against_truth
    from synthetic.params import SynthParams

    q = quality_against_truth(paths, SynthParams(persons=args.persons, seed=args.seed))
    o = q["overall"]
    return {"rows": o["records"], "rows_are": "records scored",
            "quality": {"precision": o["precision"], "recall": o["recall"], "wrong_links": o["wrong_links"],
                        "linkable": o["linkable"], "records": o["records"],
                        "impure_clusters": q["impure_clusters"], "clusters": q["clusters"]}}


def _stage_pseudonymise(paths: Paths, args) -> dict:
    from ltceval import tasks

    out = tasks.pseudonymise_tables()
    return {"rows": sum(t["rows"] for t in out["tables"].values()), "rows_are": "rows published"}


def _stage_ig_report(paths: Paths, args) -> dict:
    from ltceval import tasks

    tasks.write_ig_report(_read_result(paths, "validate")["xcom"])
    return {"rows": None}


def _stage_dbt(paths: Paths, args) -> dict:
    from ltceval import tasks
    from ltceval.warehouse_build import build_warehouse

    staging = tasks.prepare_warehouse()["staging_warehouse"]
    build_warehouse(paths.with_warehouse(Path(staging)))  # raises with the end of dbt's log
    return {"rows": _rows_of_parquet(paths.pseudonymised), "rows_are": "pseudonymised rows read"}


def _stage_gx(paths: Paths, args) -> dict:
    from expectations.marts import MARTS
    from ltceval import tasks

    gates = tasks.validate_marts()
    tasks.publish_warehouse(gates)
    return {"rows": _rows_of_tables(paths.published_warehouse, MARTS), "rows_are": "mart rows checked",
            "xcom": gates}


def _stage_estimates(paths: Paths, args) -> dict:
    from core.contract import COUNT_OUTCOMES
    from ltceval import tasks

    for outcome in COUNT_OUTCOMES:  # one task each in the DAG
        tasks.estimate_outcome(outcome)
    return {"rows": _panel_rows(paths) * len(COUNT_OUTCOMES), "rows_are": "panel rows x outcomes"}


def _stage_costing(paths: Paths, args) -> dict:
    from ltceval import tasks

    tasks.cost_outcomes()
    return {"rows": _panel_rows(paths), "rows_are": "panel rows"}


def _stage_sensitivity(paths: Paths, args) -> dict:
    from ltceval import tasks

    tasks.run_sensitivity()
    return {"rows": _panel_rows(paths), "rows_are": "panel rows"}


def _stage_report(paths: Paths, args) -> dict:
    from ltceval import tasks

    tasks.publish_reports(tasks.write_business_case())
    return {"rows": None}


@dataclass(frozen=True)
class Stage:
    name: str
    run: object
    in_chain: bool = True  # False: the benchmark's own check, outside the chain's totals


STAGES = (
    Stage("generate", _stage_generate), Stage("validate", _stage_validate), Stage("link", _stage_link),
    Stage("link quality", _stage_link_quality, in_chain=False), Stage("pseudonymise", _stage_pseudonymise),
    Stage("ig report", _stage_ig_report), Stage("dbt build", _stage_dbt), Stage("gx", _stage_gx),
    Stage("estimates", _stage_estimates), Stage("costing", _stage_costing),
    Stage("sensitivity", _stage_sensitivity), Stage("report", _stage_report),
)
STAGE_BY_NAME = {s.name: s for s in STAGES}


def _result_file(paths: Paths, stage: str) -> Path:
    return paths.out.parent / "results" / f"{stage.replace(' ', '_')}.json"


def _read_result(paths: Paths, stage: str) -> dict:
    return json.loads(_result_file(paths, stage).read_text())


def run_stage(name: str, args) -> None:
    """In the child: run one stage, write what it returns beside the output folder."""
    # progress lines in the form the parent relays (core.progress.progress_message)
    progress = logging.getLogger(PROGRESS_LOGGER)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"%(message)s [{PROGRESS_LOGGER}]"))
    progress.addHandler(handler)
    progress.propagate = False
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = Paths.from_env()
    result = STAGE_BY_NAME[name].run(paths, args)
    target = _result_file(paths, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2, default=str))


# -- the parent: stages under the guard, the table --------------------------------------------

@dataclass
class Row:
    stage: str
    seconds: float | None
    peak_bytes: int | None
    rows: int | None
    status: str = "ok"  # ok | stopped | failed
    in_chain: bool = True
    note: str = ""
    aside: str = "(not in total)"  # what the note starts with on a row outside the chain

    @property
    def rows_per_s(self) -> float | None:
        return self.rows / self.seconds if self.rows and self.seconds else None

    def to_json(self) -> dict:
        return {"stage": self.stage, "seconds": None if self.seconds is None else round(self.seconds, 2),
                "peak_mib": None if self.peak_bytes is None else round(self.peak_bytes / MIB),
                "rows": self.rows, "rows_per_s": None if self.rows_per_s is None else round(self.rows_per_s),
                "status": self.status, "in_chain": self.in_chain, "rows_are": self.note}


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: list[Row], title: str = "") -> str:
    """The table: stage, wall s, peak MiB (tree), rows, rows/s; then a total line over the chain
    (wall seconds summed, peak the largest)."""
    lines = [title] if title else []
    w = max([14, *(len(r.stage) for r in rows)])
    lines.append(f"{'stage':<{w}} {'wall s':>9} {'peak MiB':>9} {'rows':>12} {'rows/s':>10}  note")
    for r in rows:
        note = r.note if r.status == "ok" else f"{r.status.upper()} {r.note}".strip()
        if not r.in_chain:
            note = f"{r.aside} {note}".strip()
        lines.append(f"{r.stage:<{w}} {_fmt(r.seconds, ',.1f'):>9} {_fmt(None if r.peak_bytes is None else r.peak_bytes / MIB, ',.0f'):>9} "
                     f"{_fmt(r.rows, ','):>12} {_fmt(r.rows_per_s, ',.0f'):>10}  {note}".rstrip())
    chain = [r for r in rows if r.in_chain and r.seconds is not None]
    total = sum(r.seconds for r in chain)
    peak = max((r.peak_bytes or 0 for r in chain), default=0)
    bad = [r for r in rows if r.status != "ok"]
    end = f"; {bad[0].status} in {bad[0].stage}" if bad else ""
    lines.append(f"{'total':<{w}} {total:>9,.1f} {peak / MIB:>9,.0f}  ({total / 60:.1f} min, peak {peak / GIB:.2f} GiB{end})")
    return "\n".join(lines)


def _relay(prefix: str):
    """Print a stage's progress lines with the seconds since it started (where its time goes)."""
    t0 = time.perf_counter()

    def on_line(line: str) -> None:
        message = progress_message(line)
        if message:
            print(f"{prefix}{time.perf_counter() - t0:6.0f} s  {message}", flush=True)
    return on_line


def _stage_env(paths: Paths, args) -> dict[str, str]:
    """What a DAG task of `ltceval run` gets: its embedded-Airflow environment and key file."""
    from ltceval.run import airflow_env, ensure_key

    env = airflow_env(paths)
    ensure_key(paths, env)
    env["PYTHONUNBUFFERED"] = "1"  # progress lines as they come
    if args.balance_report_only:
        env[UNBLIND_REASON_ENV] = "small test population: balance below 0.1 is not attainable on a cohort this size (benchmarks/scale.py)"
    return env


def _stopped_note(g: GuardedRun, limit: int) -> str:
    if g.stopped_for == "time":
        return f"after {g.seconds / 60:.1f} min (time limit), at {g.stopped_at_bytes / GIB:.2f} GiB"
    return f"at {g.stopped_at_bytes / GIB:.2f} GiB (limit {limit / GIB:.2f} GiB)"


def _tail(log: Path, n: int = 20) -> str:
    lines = log.read_text(errors="replace").splitlines()[-n:] if log.exists() else []
    return "\n".join(f"    | {line}" for line in lines)


def run_stages(args, workdir: Path, limit: int) -> tuple[list[Row], int, dict]:
    paths = Paths(workdir / "out")
    paths.out.mkdir(parents=True, exist_ok=args.stages is not None)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    env = _stage_env(paths, args)
    rows: list[Row] = []
    extras: dict = {}
    if args.stages and "validate" in args.stages:  # measured from the files, not the cache
        shutil.rmtree(paths.identifiable / "validation_cache", ignore_errors=True)
    for stage in STAGES:
        if args.stages is not None and stage.name not in args.stages:
            continue
        log = logs / f"{stage.name.replace(' ', '_')}.log"
        print(f"  {stage.name} ...", flush=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", stage.name, "--persons", str(args.persons),
               "--seed", str(args.seed)]
        g = run_guarded(cmd, limit, env=env, log=log, on_line=_relay("    "), time_limit_s=_time_limit_s(args))
        row = Row(stage.name, g.seconds, g.peak_bytes, None, in_chain=stage.in_chain)
        rows.append(row)
        if g.stopped:
            row.status, row.note = "stopped", _stopped_note(g, limit)
            print(f"scale: the guard stopped stage {stage.name!r} {row.note}; its log: {log}", file=sys.stderr)
            return rows, STOPPED_EXIT, extras
        if g.returncode != 0:
            row.status, row.note = "failed", f"exit {g.returncode}"
            print(f"scale: stage {stage.name!r} failed (exit {g.returncode}); the end of its log ({log}):\n{_tail(log)}",
                  file=sys.stderr)
            return rows, FAILED_EXIT, extras
        result = _read_result(paths, stage.name)
        row.rows, row.note = result.get("rows"), result.get("rows_are", "")
        if "quality" in result:
            extras["linkage_quality"] = result["quality"]
            q = result["quality"]
            print(f"    link quality: precision {q['precision']:.5f} (wrong links {q['wrong_links']:,}), recall "
                  f"{q['recall']:.5f} (linkable {q['linkable']:,}), impure clusters {q['impure_clusters']:,} "
                  f"of {q['clusters']:,}", flush=True)
        print(f"  {stage.name} done ({g.seconds:.1f} s, peak {g.peak_bytes / MIB:,.0f} MiB)", flush=True)
    return rows, 0, extras


# `ltceval run`'s steps, told apart by the command line of the runner's current child
_STEP = re.compile(r"ltceval\.embedded\s+(\S+)|ltceval\.cli\s+synth|airflow\s+db\s+migrate")


def airflow_step(processes: list[psutil.Process]) -> str | None:
    """Which step of `ltceval run` a process tree is in (for ``run_guarded``'s ``label``); two
    steps at once (the generator beside `airflow db migrate`) are one label, "generate + airflow db"."""
    steps = []
    for p in processes[1:]:  # the runner itself is processes[0]
        try:
            m = _STEP.search(" ".join(p.cmdline()))
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        if m:
            step = (("dbt ls" if m.group(1) == LIST_DBT_PROJECT else f"dag {m.group(1)}") if m.group(1)
                    else ("generate" if "synth" in m.group(0) else "airflow db"))
            if step not in steps:
                steps.append(step)
    if any(s.startswith("dag ") for s in steps):  # the dbt listing beside a DAG: in its row (and its peak)
        steps = [s for s in steps if s != "dbt ls"]
    return " + ".join(sorted(steps)) if steps else None


def run_via_airflow(args, workdir: Path, limit: int) -> tuple[list[Row], int, dict]:
    """The real `ltceval run` end to end under the guard; a row per step from its process tree."""
    paths = Paths(workdir / "out")
    log = workdir / "logs" / "ltceval-run.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.balance_report_only:
        env[UNBLIND_REASON_ENV] = "small test population: balance below 0.1 is not attainable on a cohort this size (benchmarks/scale.py)"
    cmd = [sys.executable, "-m", "ltceval.cli", "run", "--persons", str(args.persons), "--seed", str(args.seed),
           "--out", str(paths.out), "--engine", args.engine]
    print(f"  {' '.join(cmd[1:])}", flush=True)
    g = run_guarded(cmd, limit, env=env, log=log, on_line=lambda line: print(f"    | {line.rstrip()}", flush=True),
                    label=airflow_step, time_limit_s=_time_limit_s(args))
    # a row per step, from the samples that saw it (times to within a sampling interval)
    rows = [Row(name, e["last_s"] - e["first_s"], e["peak_bytes"], None, in_chain=False, aside="(step of ltceval run)")
            for name, e in g.by_label.items()]
    whole = Row("ltceval run", g.seconds, g.peak_bytes, None)
    rows.append(whole)
    if g.stopped:
        whole.status, whole.note = "stopped", _stopped_note(g, limit) + (f" in {g.stopped_in}" if g.stopped_in else "")
        print(f"scale: the guard stopped `ltceval run` {whole.note}; its log: {log}", file=sys.stderr)
        return rows, STOPPED_EXIT, {}
    if g.returncode != 0:
        whole.status, whole.note = "failed", f"exit {g.returncode}"
        print(f"scale: `ltceval run` failed (exit {g.returncode}); its log: {log}", file=sys.stderr)
        return rows, FAILED_EXIT, {}
    landing = sum(t["rows_in"] for t in json.loads(
        (paths.identifiable / "validation_summary.json").read_text())["tables"].values())
    whole.rows, whole.note = landing, "landing rows"
    rows_in = {"dag identifiable_zone": (landing, "landing rows"),
               "dag analytical_zone": (_rows_of_parquet(paths.pseudonymised), "pseudonymised rows read"),
               "dag evaluation": (_panel_rows(paths), "panel rows")}
    for r in rows:
        if r.stage in rows_in:
            r.rows, r.note = rows_in[r.stage]
    return rows, 0, {}


def _time_limit_s(args) -> float | None:
    return args.time_limit_minutes * 60 if args.time_limit_minutes else None


# -- the command line -------------------------------------------------------------------------

def _positive(kind, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value
    return parse


def _stage_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in STAGE_BY_NAME]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown stage {', '.join(map(repr, unknown)) or repr(text)}; "
                                         f"the stages are {', '.join(STAGE_BY_NAME)}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--persons", type=_positive(int, "a positive whole number"), required=True)
    ap.add_argument("--seed", type=int, default=SEEDS.synthetic)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="an empty or new folder for the run (default: a temporary one)")
    ap.add_argument("--memory-limit-gib", type=_positive(float, "a positive number of GiB"), default=14.0,
                    help="stop a stage whose process tree (with this process) passes this (default 14)")
    ap.add_argument("--time-limit-minutes", type=_positive(float, "a positive number of minutes"), default=None,
                    help="stop a stage (or, with --via-airflow, the whole run) that runs longer than this "
                         "(default: no limit)")
    ap.add_argument("--keep", action="store_true", help="keep the run's output folder")
    ap.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    ap.add_argument("--balance-report-only", action="store_true",
                    help="show the estimates although the balance gate fails (LTCEVAL_UNBLIND_REASON; populations "
                         "too small for SMD < 0.1)")
    ap.add_argument("--via-airflow", action="store_true", help="run the real `ltceval run` instead of the stages")
    ap.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb",
                    help="with --via-airflow: `ltceval run --engine` (default duckdb)")
    ap.add_argument("--stages", type=_stage_list, default=None,
                    help="only these stages (comma-separated), on a --workdir kept from a whole run")
    ap.add_argument("--stage", choices=sorted(STAGE_BY_NAME), help=argparse.SUPPRESS)  # in a child: run one stage
    args = ap.parse_args(argv)
    if args.engine != "duckdb" and not args.via_airflow:
        ap.error("--engine spark needs --via-airflow (the stages run the DuckDB engine's functions)")
    if args.stages is not None:
        if args.via_airflow:
            ap.error("--stages runs stages one child each; it cannot be combined with --via-airflow")
        if args.workdir is None or not (args.workdir / "out").is_dir():
            ap.error("--stages needs --workdir: a folder kept (--keep) from a whole run, with its out/ folder")
        return args
    total = psutil.virtual_memory().total
    if args.memory_limit_gib * GIB > total:
        ap.error(f"--memory-limit-gib {args.memory_limit_gib:g} is more than this machine's memory "
                 f"({total / GIB:.1f} GiB)")
    if args.workdir is not None and args.workdir.exists() and (not args.workdir.is_dir() or any(args.workdir.iterdir())):
        # a used folder would make validation read its cache instead of the files
        ap.error(f"--workdir {args.workdir} must be a new or empty folder")
    return args


def remove_output_keeping_its_logs(workdir: Path) -> None:
    """Remove the run's output folder, but first copy the run's own logs (each DAG's, dbt's
    within them) to ``<workdir>/logs/run``: a failed step can then be read after the output is
    gone. They hold no identifier (the end-to-end identifier scan reads them)."""
    out = workdir / "out"
    if (out / "logs").is_dir():
        shutil.copytree(out / "logs", workdir / "logs" / "run", dirs_exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stage:
        run_stage(args.stage, args)
        return 0
    limit = round(args.memory_limit_gib * GIB)
    # a stage runs in a session of its own: on SIGTERM, exit through the guard, which kills it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    own_dir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="ltceval-scale-")) if own_dir else args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    mode = "ltceval run (embedded Airflow)" if args.via_airflow else "one child process per stage"
    print(f"scale: {args.persons:,} persons, seed {args.seed}, {mode}, memory limit {args.memory_limit_gib:g} GiB; "
          f"work folder {workdir}", flush=True)
    t0 = time.perf_counter()
    try:
        rows, code, extras = (run_via_airflow if args.via_airflow else run_stages)(args, workdir, limit)
    finally:
        if not args.keep:
            remove_output_keeping_its_logs(workdir)
    title = f"\n{args.persons:,} persons (seed {args.seed}; {mode}; limit {args.memory_limit_gib:g} GiB)"
    print(format_table(rows, title))
    print(f"benchmark wall time {time.perf_counter() - t0:,.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"persons": args.persons, "seed": args.seed, "mode": mode,
                                         "memory_limit_gib": args.memory_limit_gib, "exit": code,
                                         "stages": [r.to_json() for r in rows], **extras}, indent=2))
    if args.keep:
        print(f"kept {workdir}")
    elif code != 0:  # the logs the error message names stay; the output folder is gone
        print(f"logs kept in {workdir / 'logs'}")
    elif own_dir:
        shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
