"""Where a study keeps its state: the working folder, the Optuna storage, the MLflow store.

Stores are checked before anything is written, so an unreachable server or a
missing folder is one line and exit code 2, not a half-made study. Embedded
SQLite is the default; every store is a URL that can point at a server.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import optuna
import requests
import sqlalchemy

from harness.config import StudyConfig, UserError, fingerprint_differences, study_fingerprint
from harness.record import TrialRecord
from harness.training.workspace import Workspace

# Heartbeats and fail_stale_trials are marked experimental; they are what makes a crash safe here.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
COMPLETE, PRUNED, FAIL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                          optuna.trial.TrialState.FAIL)


class StudyError(UserError):
    """A user mistake found before anything is written: unreachable store, clashing study."""


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///").split("?")[0])
    return None


def check_stores(ws: Workspace, source: str = "") -> None:
    """Fail early, before writing anything, when a store cannot be reached."""
    try:
        _check_stores(ws)
    except StudyError as e:
        raise StudyError(f"{source}: {e}" if source else str(e)) from None


def _check_stores(ws: Workspace) -> None:
    for what, url in (("--storage", ws.storage), ("--tracking-uri", ws.tracking_uri)):
        path = sqlite_path(url)
        if path is not None:
            if not path.parent.is_dir():
                raise StudyError(f"{what} {url}: folder {path.parent} does not exist")
            continue
        if url.startswith(("http://", "https://")):
            try:
                requests.get(url.rstrip("/") + "/health", timeout=5).raise_for_status()
            except requests.RequestException as e:
                raise StudyError(f"{what} {url}: tracking server not reachable ({type(e).__name__})") from None
            continue
        if what == "--tracking-uri" and url.startswith(("file:", "/")):
            continue
        try:
            engine = sqlalchemy.create_engine(
                url, connect_args={"connect_timeout": 5} if url.startswith("postgresql") else {})
            with engine.connect():
                pass
            engine.dispose()
        except Exception as e:  # noqa: BLE001 - any failure to connect is the user's URL
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StudyError(f"{what} {url}: cannot connect ({reason[:160]})") from None


def storage(ws: Workspace, cfg: StudyConfig) -> optuna.storages.RDBStorage:
    """Optuna storage with heartbeats: a trial whose process died is failed and retried."""
    engine_kwargs = {"connect_args": {"timeout": 60}} if ws.storage.startswith("sqlite") else {}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                ws.storage, engine_kwargs=engine_kwargs,
                heartbeat_interval=cfg.heartbeat.interval, grace_period=cfg.heartbeat.grace_period,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
        except sqlalchemy.exc.DBAPIError:
            # Machines starting together on an empty database race to create
            # Optuna's tables; the loser sees a duplicate and tries again.
            if attempt == 4:
                raise
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


def existing_study(cfg: StudyConfig, ws: Workspace) -> optuna.Study | None:
    path = sqlite_path(ws.storage)
    if path is not None and not path.exists():
        return None
    st = storage(ws, cfg)
    if cfg.name not in [s.study_name for s in optuna.get_all_study_summaries(st)]:
        return None
    return optuna.load_study(study_name=cfg.name, storage=st)


def stored_fingerprint(study: optuna.Study) -> dict | None:
    """The fingerprinted fields a stored study was made with (`config.study_fingerprint`): the user
    attribute `fingerprint`, or, for a study stored without it, the same fields computed from the
    `config` it was created with (fields that config lacks take their defaults). None: neither is there."""
    attrs = study.user_attrs
    if isinstance(attrs.get("fingerprint"), dict):
        return attrs["fingerprint"]
    if isinstance(attrs.get("config"), dict):
        return study_fingerprint(attrs["config"])
    return None


def check_compatible(cfg: StudyConfig, ws: Workspace) -> None:
    """Refuse, before anything is written, to resume a stored study of the same name that was made
    with other settings (`config.study_fingerprint`): one line naming the first differing field.

    A study stored before the fingerprint held its fields is compared through the config stored with
    it; one with neither (not made by the harness) only by its search-space hash."""
    study = existing_study(cfg, ws)
    if study is None:
        return
    stored = stored_fingerprint(study)
    if stored is None:
        if study.user_attrs.get("search_space") in (None, cfg.search_space_fingerprint()):
            return
        diffs = [("search", "another search space", "this one")]
    else:
        diffs = fingerprint_differences(stored, study_fingerprint(cfg.to_dict()))
    if not diffs:
        return
    name, was, now = diffs[0]
    more = f" (and {len(diffs) - 1} more: {', '.join(d[0] for d in diffs[1:4])}{', ...' if len(diffs) > 4 else ''})" \
        if len(diffs) > 1 else ""
    raise StudyError(
        f"{cfg.source}: {name}: {json.dumps(was)} in the stored study, {json.dumps(now)} in {cfg.source}{more}: "
        f"study {cfg.name!r} in {ws.storage} was made with a different search space or settings; to start a new "
        "study, rename it (`name:`) or use another --workdir")


def contents(cfg: StudyConfig, splits) -> dict[str, str]:
    """What the files a study reads hold, by the field that names them -> SHA-256 (hex): `dataset`
    (`Splits.digest`: the images, labels and splits, whatever file or folder they came from),
    `teacher.model` (each model file's or folder's content, or a registry URI's resolved version and
    artifacts: `loaded.key_part`), `student.builder` (its source file) and each `transfer.unlabeled`
    (the images' bytes). A trial depends on every one of them. Raises ConfigError where one cannot
    be read (as the study would)."""
    from harness import files
    from harness.data import unlabeled
    from harness.distill import builder
    from harness.teacher import loaded

    out = {"dataset": splits.digest}
    if cfg.teacher.model is not None:
        out["teacher.model"] = files.digest(json.dumps(loaded.key_part(cfg)["model"], sort_keys=True), 64)
    if cfg.student.builder is not None:
        out["student.builder"] = str(builder.identity(cfg.student.builder, cfg.source)["sha256"])
    arms = [("transfer.unlabeled", cfg.transfer)] + [
        (f"confirm.arms[{i}].transfer.unlabeled", a.transfer) for i, a in enumerate(cfg.confirm.arms or [])
        if a.transfer is not None]
    for name, t in arms:
        images = unlabeled.read(t, cfg.source, splits.image_shape, name)
        if images is not None:
            out[name] = unlabeled.digest(images)
    return out


def check_contents(cfg: StudyConfig, ws: Workspace, splits) -> dict[str, str]:
    """A stored study is resumed only on the contents it was made with (`contents`): a changed file
    is refused in one line naming its field, before anything is written. Returns the contents."""
    from harness.teacher import loaded

    if cfg.teacher.model is not None:
        loaded.use_store(cfg, ws.tracking_uri)  # a registry URI resolves in the study's own store
    now = contents(cfg, splits)
    study = existing_study(cfg, ws)
    if study is None:
        return now
    stored = study.user_attrs.get("contents")
    if not isinstance(stored, dict):  # a study from before contents were stored: its data digest only
        stored = {"dataset": study.user_attrs["data_digest"]} if "data_digest" in study.user_attrs else {}
    for name in sorted(set(stored) | set(now)):
        was, is_ = stored.get(name), now.get(name)
        if was is None or is_ is None or is_.startswith(was) or was == is_:
            continue
        what = "data" if name == "dataset" else "content"
        raise StudyError(
            f"{cfg.source}: {name}: its {what} changed since study {cfg.name!r} in {ws.storage} was made "
            f"(SHA-256 {was[:16]} then, {is_[:16]} now): the stored trials learned from the other; to start a "
            "new study on it, give it a new `name:` (or use another --workdir)")
    return now


def record_contents(study: optuna.Study, now: dict[str, str]) -> None:
    """Note the contents on a study (see `check_contents`), and the data's digest as older harnesses did."""
    if "data_digest" not in study.user_attrs:
        study.set_user_attr("data_digest", now["dataset"][:16])
    stored = study.user_attrs.get("contents")
    merged = {**now, **(stored if isinstance(stored, dict) else {})}
    if merged != stored:
        study.set_user_attr("contents", merged)


def make_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    """The file's pruner; none with two objectives (Optuna cannot prune a Pareto search)."""
    p = cfg.pruner
    if cfg.multi_objective or p.type == "none":
        return optuna.pruners.NopPruner()
    if p.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.type == "hyperband":
        epochs = cfg.search.epochs.choices if cfg.search.epochs else [cfg.training.epochs]
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs))
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)


def create_study(cfg: StudyConfig, ws: Workspace, seed_offset: int = 0) -> optuna.Study:
    """Create or load the study, with a sampler seeded per worker and per resume."""
    st = storage(ws, cfg)
    try:
        n_before = len(optuna.load_study(study_name=cfg.name, storage=st).trials)
    except KeyError:
        n_before = 0
    # A different seed per worker and per resume: identical seeds would make
    # parallel workers (and a resumed study) propose the same points again.
    # On a server storage (several machines) the process id is mixed in too:
    # there, the order in which trials finish already decides the proposals.
    seed = cfg.seed + 7919 * seed_offset + n_before
    if not ws.storage.startswith("sqlite"):
        seed += 104729 * os.getpid()
    sampler = optuna.samplers.TPESampler(seed=seed % 2**32, constant_liar=True,
                                         n_startup_trials=min(10, cfg.n_trials // 2 + 1))
    directions = ["maximize", "minimize"] if cfg.multi_objective else ["maximize"]
    study = optuna.create_study(study_name=cfg.name, storage=st, directions=directions,
                                sampler=sampler, pruner=make_pruner(cfg), load_if_exists=True)
    if study.metric_names != cfg.objectives:  # the dashboard and trials_dataframe() show these names
        study.set_metric_names(list(cfg.objectives))
    if "search_space" not in study.user_attrs:
        study.set_user_attr("search_space", cfg.search_space_fingerprint())
        study.set_user_attr("config", cfg.to_dict())
    if not isinstance(study.user_attrs.get("fingerprint"), dict):  # a study stored without one: it matched
        study.set_user_attr("fingerprint", study_fingerprint(cfg.to_dict()))
    return study


def counted_trials(study: optuna.Study) -> int:
    """Trials that use up the study's budget: finished, pruned, or failed by divergence.

    Trials failed by a crash or Ctrl-C do not count: they are run again.
    """
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (COMPLETE, PRUNED) or (t.state == FAIL and TrialRecord.from_trial(t).diverged))
