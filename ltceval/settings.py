"""Where each zone lives on disk, and how secrets are found.

Every path derives from one output folder so a run is self-contained and zones stay apart.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DAGS_DIR = REPO_ROOT / "dags"
OUT_ENV = "LTCEVAL_OUT"
KEY_ENV = "LTCEVAL_PSEUDO_KEY"
KEY_FILE_ENV = "LTCEVAL_PSEUDO_KEY_FILE"
DEFAULT_OUT = Path("ltceval-out")


@dataclass(frozen=True)
class Paths:
    """The folder layout of one run (see docs/data-contracts.md)."""

    out: Path

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
        return self.out / "analytical" / "warehouse.duckdb"

    @property
    def reports(self) -> Path:
        return self.out / "reports"

    @property
    def airflow_home(self) -> Path:
        return self.out / "airflow"
