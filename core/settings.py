"""Where each zone lives on disk, and how secrets are found.

Every path derives from one output folder so a run is self-contained and zones stay apart.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DAGS_DIR = REPO_ROOT / "dags"
OUT_ENV = "LTCEVAL_OUT"
KEY_ENV = "LTCEVAL_PSEUDO_KEY"
KEY_FILE_ENV = "LTCEVAL_PSEUDO_KEY_FILE"
SOURCES_CONFIG_ENV = "LTCEVAL_SOURCES_CONFIG"
LINKAGE_MODEL_ENV = "LTCEVAL_LINKAGE_MODEL"
DEFAULT_OUT = Path("ltceval-out")


@dataclass(frozen=True)
class Paths:
    """The folder layout of one run (see docs/data-contracts.md).

    ``reports_dir`` and ``warehouse_file`` redirect where a step writes its reports or which
    warehouse file it uses: the DAG tasks point them at a run's unpublished version folder
    and at the staging warehouse (``ltceval.publish``); library code just uses
    ``paths.reports`` and ``paths.warehouse``.
    """

    out: Path
    reports_dir: Path | None = None
    warehouse_file: Path | None = None

    @classmethod
    def from_env(cls) -> "Paths":
        return cls(Path(os.environ.get(OUT_ENV, str(DEFAULT_OUT))).resolve())

    @property
    def landing(self) -> Path:
        return self.out / "landing"

    @property
    def ground_truth(self) -> Path:
        return self.out / "ground_truth"

    @property
    def identifiable(self) -> Path:
        return self.out / "identifiable"

    @property
    def pseudonymised(self) -> Path:
        return self.out / "analytical" / "pseudonymised"

    @property
    def warehouse(self) -> Path:
        """The warehouse this step reads (default: the published one)."""
        return self.warehouse_file or self.published_warehouse

    @property
    def published_warehouse(self) -> Path:
        """The published warehouse: replaced as a whole, only after the mart gates pass."""
        return self.out / "analytical" / "warehouse.duckdb"

    @property
    def staging_warehouse(self) -> Path:
        """Where dbt builds the next warehouse (same file system as the published one, and the
        same file name, so DuckDB's catalog name is the same once it is swapped in)."""
        return self.out / "analytical" / ".staging" / "warehouse.duckdb"

    @property
    def reports(self) -> Path:
        """Where this step writes its reports (default: the top of the published folder)."""
        return self.reports_dir or self.reports_root

    @property
    def reports_root(self) -> Path:
        """The published folder: ``<period>/`` per data period and ``latest`` (symlinks)."""
        return self.out / "reports"

    @property
    def run_handoff(self) -> Path:
        """The current run's data period and version key, handed from the identifiable-zone
        DAG to the analytical and evaluation DAGs (no identifiers)."""
        return self.out / "analytical" / "current_run.json"

    def with_reports(self, reports_dir: Path) -> "Paths":
        return replace(self, reports_dir=Path(reports_dir))

    def with_warehouse(self, warehouse_file: Path) -> "Paths":
        return replace(self, warehouse_file=Path(warehouse_file))

    def dbt_env(self) -> dict[str, str]:
        """The environment `dbt_project/profiles.yml` and the sources read: the warehouse dbt
        writes and the pseudonymised tables it reads."""
        return {"LTCEVAL_WAREHOUSE": str(self.warehouse),
                "LTCEVAL_PSEUDONYMISED_DIR": str(self.pseudonymised)}

    @property
    def airflow_home(self) -> Path:
        return self.out / "airflow"
