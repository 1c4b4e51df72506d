"""Lineage of a registered champion: which teacher taught it, on which data, in which study.

Tags on the champion's model version (`harness.*`):
- `harness.teacher`: the teacher as the study file names it (a registry URI, or the model file or
  folder as resolved), or `trained here` for a teacher the study trained; `harness.teacher_version`:
  a registry URI's resolved `NAME/VERSION` (or `runs:/ID`); `harness.teacher_sha256`: the SHA-256 of
  the model file (of a folder: of every file's path and SHA-256; `teacher/loaded.py`'s digest); an
  ensemble's values are joined by ", ";
- `harness.teacher_key`: the teacher cache key; `harness.data_digest`: the data's digest
  (`Splits.digest`); `harness.study`, `harness.study_file`, `harness.study_sha256`: the study's name,
  its file, and that file's SHA-256.

Where the teacher came from the registry (`models:/...`), its model version gets the tag
`harness.student.<study>` naming the student's registered version (`models:/NAME/VERSION`).
"""

from __future__ import annotations

import logging
from pathlib import Path


from harness import files, registry
from harness.config import StudyConfig
from harness.teacher import loaded

log = logging.getLogger(__name__)
LIMIT = 5000  # MLflow's tag value limit


def _identities(cfg: StudyConfig) -> list[tuple[str, dict]]:
    """(reference, what it resolved to) of each of the study's loaded teachers (none when trained)."""
    if cfg.teacher.model is None:
        return []
    return list(zip(loaded.references(cfg), loaded.key_part(cfg)["model"]))


def tags(cfg: StudyConfig, teacher_key: str, data_digest: str) -> dict[str, str]:
    """The champion's lineage tags (see the module)."""
    out = {"harness.teacher_key": teacher_key, "harness.data_digest": data_digest, "harness.study": cfg.name}
    if cfg.source and Path(cfg.source).is_file():
        out["harness.study_file"] = str(Path(cfg.source).resolve())
        out["harness.study_sha256"] = files.sha256(Path(cfg.source))
    found = _identities(cfg)
    if not found:
        out["harness.teacher"] = "trained here"
        return out
    out["harness.teacher"] = ", ".join(ref for ref, _ in found)
    out["harness.teacher_sha256"] = ", ".join(what["sha256"] for _, what in found)
    versions = [f"{w['name']}/{w['version']}" if "version" in w else f"runs:/{w['run_id']}"
                for _, w in found if w.get("kind") == "mlflow"]
    if versions:
        out["harness.teacher_version"] = ", ".join(versions)
    return {k: v[:LIMIT] for k, v in out.items()}


def tag_teacher(cfg: StudyConfig, student_uri: str) -> None:
    """Tag each registry teacher's model version with the student version it taught (see the module)."""
    for _, what in _identities(cfg):
        if what.get("kind") == "mlflow" and "version" in what:
            registry.set_version_tags(what["name"], what["version"], {f"harness.student.{cfg.name}": student_uri})
            log.info("teacher %s/%s tagged with its student %s", what["name"], what["version"], student_uri)
