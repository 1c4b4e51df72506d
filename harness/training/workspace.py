"""`Workspace`: the working folder of a study and the URLs of its Optuna and MLflow stores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import tracking


@dataclass(frozen=True)
class Workspace:
    workdir: Path
    storage: str
    tracking_uri: str

    @classmethod
    def resolve(cls, workdir=".", storage=None, tracking_uri=None) -> "Workspace":
        w = Path(workdir).resolve()
        return cls(w, storage or f"sqlite:///{w / 'optuna.db'}",
                   tracking_uri or tracking.default_tracking_uri(w))

    @property
    def teacher_cache(self) -> Path:
        return self.workdir / "teacher_cache"
