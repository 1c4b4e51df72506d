"""The study: Optuna searches temperature, alpha and student width; MLflow records it all.

One invocation = one parent MLflow run. Per study (not per trial) the data
are loaded, the teacher is trained or loaded, and its transfer-set logits
become the tf.data pipeline every trial trains on. Each trial gets a nested
run; so do the teacher (once per study) and the scratch baselines (once per
width and seed). The validation split chooses; the test split is read once,
for the champion.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np
import optuna
import tensorflow as tf

from . import data as data_mod
from . import interrupt, tracking
from .config import ConfigError, StudyConfig, UserError
from .distiller import Distiller, compile_plain, make_optimizer
from .models import build_student, flops_per_example, param_count
from .teacher import Teacher, _locked, accuracy, load_or_train, predict_logits, resolve_jit

log = logging.getLogger(__name__)
# Heartbeats and fail_stale_trials are marked experimental; they are what makes a crash safe here.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
COMPLETE, PRUNED, FAIL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                          optuna.trial.TrialState.FAIL)


class StudyError(UserError):
    """A user mistake found before anything is written: unreachable store, clashing study."""


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


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


# ---------------------------------------------------------------- stores


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///").split("?")[0])
    return None


def load_splits(cfg: StudyConfig) -> data_mod.Splits:
    try:
        return data_mod.load_splits(cfg.dataset, cfg.seed)
    except data_mod.UnknownDataset as e:
        raise ConfigError(cfg.source, "dataset.name", str(e)) from None


def check_stores(ws: Workspace, source: str = "") -> None:
    """Fail early, before writing anything, when a store cannot be reached."""
    try:
        _check_stores(ws)
    except StudyError as e:
        raise StudyError(f"{source}: {e}" if source else str(e)) from None


def _check_stores(ws: Workspace) -> None:
    import sqlalchemy

    for what, url in (("--storage", ws.storage), ("--tracking-uri", ws.tracking_uri)):
        path = _sqlite_path(url)
        if path is not None:
            if not path.parent.is_dir():
                raise StudyError(f"{what} {url}: folder {path.parent} does not exist")
            continue
        if url.startswith(("http://", "https://")):
            import requests

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
    import sqlalchemy

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


def existing_study(cfg: StudyConfig, ws: Workspace) -> optuna.Study | None:
    path = _sqlite_path(ws.storage)
    if path is not None and not path.exists():
        return None
    st = storage(ws, cfg)
    if cfg.name not in [s.study_name for s in optuna.get_all_study_summaries(st)]:
        return None
    return optuna.load_study(study_name=cfg.name, storage=st)


def check_compatible(cfg: StudyConfig, ws: Workspace) -> None:
    study = existing_study(cfg, ws)
    if study is None:
        return
    stored = study.user_attrs.get("search_space")
    if stored != cfg.search_space_fingerprint():
        raise StudyError(
            f"{cfg.source}: search: study {cfg.name!r} already exists in {ws.storage} with a different "
            "search space or objectives; rename the study (`name:`) or use another --storage")


def create_study(cfg: StudyConfig, ws: Workspace, seed_offset: int = 0) -> optuna.Study:
    if cfg.multi_objective:
        directions, pruner = ["maximize", "minimize"], optuna.pruners.NopPruner()
    else:
        directions, pruner = ["maximize"], make_pruner(cfg)
    st = storage(ws, cfg)
    n_before = 0
    try:
        n_before = len(optuna.load_study(study_name=cfg.name, storage=st).trials)
    except KeyError:
        pass
    # A different seed per worker and per resume: identical seeds would make
    # parallel workers (and a resumed study) propose the same points again.
    # On a server storage (several machines) the process id is mixed in too:
    # there, the order in which trials finish already decides the proposals.
    seed = cfg.seed + 7919 * seed_offset + n_before
    if not ws.storage.startswith("sqlite"):
        seed += 104729 * os.getpid()
    sampler = optuna.samplers.TPESampler(seed=seed % 2**32,
                                         constant_liar=True, n_startup_trials=min(10, cfg.n_trials // 2 + 1))
    study = optuna.create_study(study_name=cfg.name, storage=st, directions=directions,
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    if "search_space" not in study.user_attrs:
        study.set_user_attr("search_space", cfg.search_space_fingerprint())
        study.set_user_attr("config", cfg.to_dict())
    return study


def make_pruner(cfg: StudyConfig):
    p = cfg.pruner
    if p.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.type == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=cfg.training.epochs)
    if p.type == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def counted_trials(study: optuna.Study) -> int:
    """Trials that use up the study's budget: finished, pruned, or failed by divergence.

    Trials failed by a crash or Ctrl-C do not count: they are run again.
    """
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (COMPLETE, PRUNED) or (t.state == FAIL and "diverged" in t.user_attrs))


# ---------------------------------------------------------------- callbacks


class DivergenceGuard(keras.callbacks.Callback):
    """Stops a trial at the first non-finite training loss (a batch, not an epoch, later)."""

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise Diverged(f"training loss became {loss} at batch {batch}")


class EpochCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs = epoch + 1


# ---------------------------------------------------------------- the context of one process


class StudyContext:
    """What every trial of one process shares: data, teacher, pipelines, stores."""

    def __init__(self, cfg: StudyConfig, ws: Workspace, splits: data_mod.Splits, teacher: Teacher,
                 experiment_id: str, parent_run_id: str):
        self.cfg, self.ws, self.splits, self.teacher = cfg, ws, splits, teacher
        self.experiment_id, self.parent_run_id = experiment_id, parent_run_id
        tr = cfg.training
        # Built once per process: every trial reuses the same pipelines.
        self.train_ds = data_mod.pipeline(
            splits.transfer.images,
            {"labels": splits.transfer.labels, "teacher_logits": teacher.transfer_logits.astype(np.float32)},
            tr.batch_size, shuffle_seed=cfg.seed)
        self.val_ds = data_mod.pipeline(splits.validation.images, splits.validation.labels, 1024)
        st = cfg.student
        self.jit = resolve_jit(tr.jit_compile, st.family, st.dropout, st.input_dropout)
        self.fit_seconds = 0.0

    def start_run(self, role: str, name: str, tags: dict | None = None):
        return tracking.start(role, name, parent_run_id=self.parent_run_id,
                              experiment_id=self.experiment_id, tags=tags)

    def new_student(self, width: int) -> keras.Model:
        keras.utils.set_random_seed(self.cfg.seed)
        return build_student(self.cfg.student, width, self.splits.image_shape, self.splits.num_classes,
                             seed=self.cfg.seed)

    def widths(self) -> list[int] | tuple[int, int]:
        w = self.cfg.search.width
        return w.choices if w.choices is not None else (w.low, w.high)

    # ---- baselines

    def baseline_key(self, width: int) -> str:
        cfg = self.cfg
        blob = json.dumps({"dataset": {k: v for k, v in dataclasses.asdict(cfg.dataset).items()
                                       if k != "data_dir"},
                           "student": dataclasses.asdict(cfg.student),
                           "training": dataclasses.asdict(cfg.training), "width": width, "seed": cfg.seed,
                           "versions": [tf.__version__, keras.__version__]}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def baseline(self, width: int) -> dict:
        """The student at this width trained from scratch: trained once per width and seed."""
        key = self.baseline_key(width)
        path = self.ws.workdir / "baselines" / f"{key}.json"
        with _locked(path.with_suffix(".lock")):
            if path.exists():
                try:
                    return json.loads(path.read_text())
                except json.JSONDecodeError:
                    log.warning("baseline %s is damaged; training it again", path)
            tr = self.cfg.training
            student = self.new_student(width)
            compile_plain(student, tr.optimizer, tr.learning_rate, jit_compile=self.jit,
                          steps_per_execution=tr.steps_per_execution)
            train = data_mod.pipeline(self.splits.transfer.images, self.splits.transfer.labels,
                                      tr.batch_size, shuffle_seed=self.cfg.seed)
            with self.start_run("baseline", f"baseline-w{width}", tags={"width": str(width)}) as run:
                mlflow.log_params({"width": width, "seed": self.cfg.seed, "epochs": tr.epochs,
                                   "family": self.cfg.student.family, "depth": self.cfg.student.depth})
                t0 = time.perf_counter()
                hist = student.fit(train, validation_data=self.val_ds, epochs=tr.epochs, verbose=0,
                                   shuffle=False,
                                   callbacks=[interrupt.StopOnInterrupt(), mlflow.keras.MlflowCallback()])
                self.fit_seconds += time.perf_counter() - t0
                # Baselines are reference points, never chosen by anything: reporting
                # their test accuracy beside the champion's leaks no selection.
                test_acc = accuracy(predict_logits(student, self.splits.test.images), self.splits.test.labels)
                result = {"width": width, "val_accuracy": float(hist.history["val_accuracy"][-1]),
                          "test_accuracy": test_acc, "params": param_count(student),
                          "flops": flops_per_example(student), "mlflow_run_id": run.info.run_id}
                mlflow.log_metrics({"params": result["params"], "flops": result["flops"], "test_accuracy": test_acc})
            tmp = path.with_suffix(f".tmp-{os.getpid()}")
            tmp.write_text(json.dumps(result))
            os.replace(tmp, path)
            log.info("baseline w=%d (from scratch): val acc %.4f", width, result["val_accuracy"])
            return result

    # ---- trials

    def suggest(self, trial: optuna.Trial) -> dict:
        s = self.cfg.search
        params = {
            "temperature": trial.suggest_float("temperature", s.temperature.low, s.temperature.high,
                                               log=s.temperature.log),
            "alpha": trial.suggest_float("alpha", s.alpha.low, s.alpha.high, log=s.alpha.log),
        }
        if s.width.choices is not None:
            params["width"] = trial.suggest_categorical("width", allowed_widths(self))
        else:
            lo, hi = s.width.low, max_width_in_budget(self)
            params["width"] = trial.suggest_int("width", lo, hi, log=s.width.log)
        return params

    def objective(self, trial: optuna.Trial):
        with interrupt.deferred():  # Ctrl-C waits for a safe point (see interrupt.py)
            return self._objective(trial)

    def _objective(self, trial: optuna.Trial):
        cfg, tr = self.cfg, self.cfg.training
        p = self.suggest(trial)
        baseline = self.baseline(p["width"])
        interrupt.check()
        student = self.new_student(p["width"])
        params, flops = param_count(student), flops_per_example(student)
        run = self.start_run("trial", f"trial-{trial.number}",
                             tags={"optuna.study": cfg.name, "optuna.trial": str(trial.number)})
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        status, state, counter = "FAILED", "failed", EpochCounter()
        try:
            mlflow.log_params({**p, "family": cfg.student.family, "depth": cfg.student.depth,
                               "epochs": tr.epochs, "batch_size": tr.batch_size, "optimizer": tr.optimizer,
                               "learning_rate": tr.learning_rate, "seed": cfg.seed,
                               "teacher_key": self.teacher.key})
            distiller = Distiller(student, temperature=p["temperature"], alpha=p["alpha"])
            distiller.compile(optimizer=make_optimizer(tr.optimizer, tr.learning_rate),
                              jit_compile=self.jit, steps_per_execution=tr.steps_per_execution)
            callbacks = [interrupt.StopOnInterrupt(), DivergenceGuard(), counter, mlflow.keras.MlflowCallback()]
            if not cfg.multi_objective:
                from optuna_integration import KerasPruningCallback
                callbacks.append(KerasPruningCallback(trial, "val_accuracy"))
            t0 = time.perf_counter()
            try:
                hist = distiller.fit(self.train_ds, validation_data=self.val_ds, epochs=tr.epochs,
                                     verbose=0, shuffle=False, callbacks=callbacks)
            finally:
                self.fit_seconds += time.perf_counter() - t0
            val_acc = float(hist.history["val_accuracy"][-1])
            if not math.isfinite(float(hist.history["loss"][-1])):
                raise Diverged("training loss is not finite at the end of training")
            gain = val_acc - baseline["val_accuracy"]
            mlflow.log_metrics({"params": params, "flops": flops, "distillation_gain": gain,
                                "baseline_val_accuracy": baseline["val_accuracy"]})
            info = tracking.log_student(student, self.splits.validation.images[:2])
            local = self.ws.workdir / "trials" / cfg.name / f"trial-{trial.number}.keras"
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f".{local.name}.tmp-{os.getpid()}.keras")
            student.save(tmp)
            os.replace(tmp, local)
            for k, v in {"val_accuracy": val_acc, "params": params, "flops": flops, "distillation_gain": gain,
                         "baseline_val_accuracy": baseline["val_accuracy"],
                         "baseline_test_accuracy": baseline["test_accuracy"], "model_uri": info.model_uri,
                         "model_path": str(local)}.items():
                trial.set_user_attr(k, v)
            status, state = "FINISHED", "complete"
            return (val_acc, params) if cfg.multi_objective else val_acc
        except optuna.TrialPruned:
            status, state = "FINISHED", "pruned"
            raise
        except Diverged as e:
            trial.set_user_attr("diverged", str(e))
            trial.set_user_attr("fail_reason", str(e))
            mlflow.set_tag("fail_reason", str(e))
            raise
        except KeyboardInterrupt:
            status, state = "KILLED", "interrupted"
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
            raise
        except Exception as e:
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}"[:500])
            mlflow.set_tag("fail_reason", f"{type(e).__name__}: {e}"[:500])
            raise
        finally:
            trial.set_user_attr("epochs_run", counter.epochs)
            mlflow.log_metric("epochs_run", counter.epochs)
            mlflow.set_tag("state", state)
            mlflow.end_run(status)


def allowed_widths(ctx: StudyContext) -> list[int]:
    """Width choices, minus those over the parameter budget (single-objective mode)."""
    choices = ctx.cfg.search.width.choices
    if ctx.cfg.max_params is None:
        return choices
    fits = [w for w in choices if _params_at(ctx, w) <= ctx.cfg.max_params]
    if not fits:
        raise StudyError(f"{ctx.cfg.source}: max_params: no width in search.width.choices fits "
                         f"{ctx.cfg.max_params} parameters")
    return fits


def max_width_in_budget(ctx: StudyContext) -> int:
    lo, hi = ctx.cfg.search.width.low, ctx.cfg.search.width.high
    if ctx.cfg.max_params is None:
        return hi
    best = None
    while lo <= hi:  # parameters grow with width: bisect
        mid = (lo + hi) // 2
        if _params_at(ctx, mid) <= ctx.cfg.max_params:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    if best is None:
        raise StudyError(f"{ctx.cfg.source}: max_params: even the smallest width exceeds it")
    return best


def _params_at(ctx: StudyContext, width: int) -> int:
    return param_count(build_student(ctx.cfg.student, width, ctx.splits.image_shape, ctx.splits.num_classes))


def _trial_line(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    p, a = trial.params, trial.user_attrs
    state = trial.state.name.lower()
    acc = a.get("val_accuracy")
    gain = a.get("distillation_gain")
    log.info("trial %3d %-8s T=%6.2f alpha=%.2f width=%4s  val_acc=%s gain=%s%s", trial.number, state,
             p.get("temperature", float("nan")), p.get("alpha", float("nan")), p.get("width", "?"),
             f"{acc:.4f}" if acc is not None else "  -   ", f"{gain:+.4f}" if gain is not None else "  -  ",
             f"  ({a['fail_reason']})" if "fail_reason" in a else "")


def optimize(ctx: StudyContext, n_trials: int, seed_offset: int = 0, progress: bool = True) -> None:
    study = create_study(ctx.cfg, ctx.ws, seed_offset)
    study.optimize(ctx.objective, n_trials=n_trials, catch=(Diverged,),
                   callbacks=[_trial_line, interrupt.stop_study_if_requested],
                   show_progress_bar=progress, gc_after_trial=True)
    interrupt.check()  # a Ctrl-C that let its trial finish still stops this invocation


# ---------------------------------------------------------------- workers


def _worker(cfg: StudyConfig, ws: Workspace, experiment_id: str, parent_run_id: str, n_trials: int,
            index: int) -> None:
    from .cli import configure_logging

    configure_logging(prefix=f"worker {index}")
    interrupt.install()
    tracking.setup(ws.tracking_uri, ws.workdir, cfg.name)
    splits = data_mod.load_splits(cfg.dataset, cfg.seed)
    teacher = load_or_train(cfg, splits, ws.teacher_cache)
    ctx = StudyContext(cfg, ws, splits, teacher, experiment_id, parent_run_id)
    optimize(ctx, n_trials, seed_offset=index, progress=False)


def run_workers(ctx: StudyContext, n_trials: int, workers: int) -> None:
    """N processes on the same storage, each with its share of the trials: exact count."""
    shares = [n_trials // workers + (1 if i < n_trials % workers else 0) for i in range(workers)]
    mp = multiprocessing.get_context("spawn")
    procs = [mp.Process(target=_worker, args=(ctx.cfg, ctx.ws, ctx.experiment_id, ctx.parent_run_id, k, i + 1),
                        name=f"worker-{i + 1}") for i, k in enumerate(shares) if k > 0]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.join(timeout=60)
        raise
    bad = [p.name for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{', '.join(bad)} failed; see the log above")


# ---------------------------------------------------------------- the whole study


@dataclass
class StudyResult:
    study: optuna.Study
    champion: optuna.trial.FrozenTrial | None
    export_path: Path | None
    test_accuracy: float | None
    teacher: Teacher
    parent_run_id: str
    seconds: float
    fit_seconds: float
    new_trials: int


def log_teacher(ctx: StudyContext) -> str:
    """The teacher's own MLflow run, once per study (found again by its cache key)."""
    t = ctx.teacher
    found = tracking.find_runs(ctx.experiment_id, "teacher", **{"harness.teacher_key": t.key})
    if found:
        return found[0].info.run_id
    with ctx.start_run("teacher", "teacher", tags={"harness.teacher_key": t.key}) as run:
        tc = ctx.cfg.teacher
        mlflow.log_params({f"teacher_{k}": v for k, v in dataclasses.asdict(tc).items()})
        tracking.log_history(t.history)
        mlflow.log_metrics({"val_accuracy": t.val_accuracy, "test_accuracy": t.test_accuracy,
                            "params": t.params, "flops": t.flops, "train_seconds": t.train_seconds})
        for i, m in enumerate(t.members):
            name = "model" if len(t.members) == 1 else f"member_{i}"
            tracking.log_student(m, ctx.splits.validation.images[:2], name=name)
        return run.info.run_id


def run(cfg: StudyConfig, workdir=".", n_trials: int | None = None, storage_url: str | None = None,
        tracking_uri: str | None = None, workers: int = 1, export: bool = True) -> StudyResult:
    """Create or resume the study, run its trials, pick, test, register and export the champion."""
    from . import champion as champion_mod
    from . import plots

    t_start = time.perf_counter()
    interrupt.install()
    ws = Workspace.resolve(workdir, storage_url, tracking_uri)
    if not ws.workdir.is_dir():
        raise StudyError(f"--workdir {ws.workdir}: no such folder")
    check_stores(ws, cfg.source)
    check_compatible(cfg, ws)
    # Our own line per trial says what happened (with the reason of a failure); Optuna would
    # repeat it with a traceback.
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    splits = load_splits(cfg)
    teacher = load_or_train(cfg, splits, ws.teacher_cache)
    experiment_id = tracking.setup(ws.tracking_uri, ws.workdir, cfg.name)
    tracking.close_orphans(experiment_id)
    study = create_study(cfg, ws)
    optuna.storages.fail_stale_trials(study)
    todo = n_trials if n_trials is not None else max(0, cfg.n_trials - counted_trials(study))
    log.info("study %r: %d trial(s) counted, %d to run (%d worker(s)); stores: %s, %s", cfg.name,
             counted_trials(study), todo, workers, ws.storage, ws.tracking_uri)

    parent = tracking.start("study", f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                            experiment_id=experiment_id, tags={"optuna.study": cfg.name})
    status = "FAILED"
    ctx = StudyContext(cfg, ws, splits, teacher, experiment_id, parent.info.run_id)
    try:
        mlflow.log_dict(cfg.to_dict(), "config.yaml")
        mlflow.log_params({"n_trials": cfg.n_trials, "workers": workers, "new_trials": todo,
                           "teacher_key": teacher.key})
        log_teacher(ctx)
        if todo and workers > 1:
            run_workers(ctx, todo, workers)
        elif todo:
            optimize(ctx, todo)
        study = create_study(cfg, ws)
        champ = champion_mod.select(study, cfg)
        test_acc = export_path = None
        if champ is not None:
            test_acc = champion_mod.test_and_register(cfg, champ, splits)
            if export:
                export_path = champion_mod.export(cfg, champ, ws.workdir / "exports" / f"{cfg.name}-champion",
                                                  splits)
            mlflow.log_metrics({"champion_trial": champ.number, "champion_test_accuracy": test_acc})
        plots.log_study_artifacts(study, ctx, champ)
        status = "FINISHED"
        seconds = time.perf_counter() - t_start
        mlflow.log_metrics({"wall_seconds": seconds, "fit_seconds": ctx.fit_seconds})
        return StudyResult(study, champ, export_path, test_acc, teacher, parent.info.run_id, seconds,
                           ctx.fit_seconds, todo)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        mlflow.end_run(status)
