"""`python -m harness study|finish|compress|teacher|report|export|bench|data`: the command line.

User mistakes (a bad study file, an unreachable store, a clashing study) print
one line and exit with code 2 before anything is written.

The library modules are imported inside the commands, after the study file is
read: a mistake in it is reported in a fraction of a second, before
TensorFlow, MLflow and Optuna load (several seconds). Only this module prints.

The console is quiet by default (`harness.logs`: no library set-up lines) and
`-v` brings everything back; `study` draws a progress bar (tqdm, on stderr,
only on a terminal) from the progress the library reports (`StudyBar`).
"""

from __future__ import annotations

import argparse
import os
import sys

from harness import compress, config, files, logs
from harness.logs import configure_logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
EXIT_USER_ERROR = 2


class StudyBar:
    """The study's progress bar: the search's trials, then the confirmation's paired runs.

    Called as `bar(phase, done, total)` (the library's `harness.logs.Progress`). The bar's total
    is the search's trials plus, once the search is over and its front known, the confirmation's
    pairs; the time left is tqdm's, from the recent rate. Log lines are printed above the bar
    (`tqdm.contrib.logging.logging_redirect_tqdm`). `disable=None`: no bar unless stderr is a
    terminal, so a log file holds log lines only.
    """

    def __init__(self, disable: bool | None = None, file=None):
        self.done: dict[str, int] = {}
        self.totals: dict[str, int] = {}
        self.disable, self.file, self.bar = disable, file, None

    def __call__(self, phase: str, done: int, total: int) -> None:
        from tqdm import tqdm

        step = done - self.done.get(phase, 0)
        self.done[phase], self.totals[phase] = done, total
        desc = ", ".join(f"{p} {self.done[p]}/{self.totals[p]}" for p in self.totals)
        if self.bar is None:
            self.bar = tqdm(total=self.total, desc=desc, unit="run", disable=self.disable, file=self.file,
                            dynamic_ncols=True, bar_format="{desc} {percentage:3.0f}%|{bar}| {n}/{total} "
                                                           "[{elapsed} elapsed, {remaining} left]")
            step = self.n
        self.bar.total = self.total
        self.bar.set_description_str(desc, refresh=False)
        self.bar.update(step) if step > 0 else self.bar.refresh()

    @property
    def n(self) -> int:
        return sum(self.done.values())

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_file", metavar="STUDY.yaml")
    p.add_argument("--workdir", default=".", help="holds the stores, caches and exports (default: .)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite:///WORKDIR/optuna.db)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: sqlite:///WORKDIR/mlflow.db)")


def _cmd_data(args) -> int:
    from harness.data import fashion_mnist

    fashion_mnist.prepare_fashion_mnist(args.data_dir)
    print("fashion_mnist is ready")
    return 0


def _workspace(args, cfg):
    from harness.search import stores

    ws = _workspace_of(args)
    stores.check_stores(ws, cfg.source)
    return ws


def _workspace_of(args):
    from harness.training.workspace import Workspace

    return Workspace.resolve(args.workdir, args.storage, args.tracking_uri)


def _cmd_study(args) -> int:
    cfg = config.load(args.study_file)
    if args.n_trials is not None and args.n_trials < 1:
        raise config.ConfigError(args.study_file, "--n-trials", "must be at least 1")
    if args.workers < 1:
        raise config.ConfigError(args.study_file, "--workers", "must be at least 1")
    return _run_study(args, cfg, args.n_trials, args.workers, finish=not args.search_only)


def _cmd_compress(args) -> int:
    import time

    path = compress.write(args.teacher, args.data, args.tolerance, args.name, args.workdir,
                          time.strftime("%Y-%m-%d %H:%M"))
    print(f"study file: {path} (edit it and run the same command again to resume)", flush=True)
    args.study_file, args.n_trials, args.workers, args.no_export, args.search_only = str(path), None, 1, False, False
    return _cmd_study(args)


def _cmd_finish(args) -> int:
    """`study` with no new trial: the confirmation, the champion and its exports, once."""
    return _run_study(args, config.load(args.study_file), n_trials=0)


def _run_study(args, cfg, n_trials: int | None, workers: int = 1, finish: bool = True) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from harness import study
    from harness.report import tables as report

    bar = StudyBar()
    try:
        with logging_redirect_tqdm():
            result = study.run(cfg, args.workdir, n_trials=n_trials, storage_url=args.storage,
                               tracking_uri=args.tracking_uri, workers=workers, export=not args.no_export,
                               progress=bar, finish=finish)
    finally:
        bar.close()
    print(report.summary(cfg, result, _workspace_of(args)))
    return 0


def _cmd_teacher(args) -> int:
    cfg = config.load(args.study_file)
    from harness import tracking
    from harness.data import sources
    from harness.teacher import trained as teacher

    ws = _workspace(args, cfg)
    splits = sources.load_splits(cfg.dataset, cfg.seed, source=cfg.source)
    t = teacher.load_or_train(cfg, splits, ws.teacher_cache, ws.tracking_uri)
    exp = tracking.setup(ws.tracking_uri, ws.workdir, cfg.name)
    with tracking.start("study", f"{cfg.name}-teacher", experiment_id=exp) as parent:
        teacher.log_teacher(t, cfg, exp, parent.info.run_id, splits.validation.images[:2])
    how = "from cache" if t.from_cache else (f"trained in {t.train_seconds:.0f} s" if t.trained else "loaded")
    print(f"teacher {t.key}: {t.params:,} params, val acc {t.val_accuracy:.4f}, test acc {t.test_accuracy:.4f}"
          f" ({how}) at {t.path}")
    return 0


def _cmd_report(args) -> int:
    cfg = config.load(args.study_file)
    from harness.report import tables as report

    print(report.table(cfg, _workspace(args, cfg)))
    return 0


def _cmd_export(args) -> int:
    cfg = config.load(args.study_file)
    from harness.deploy import champion
    from harness.report import tables as report

    study = report.load_study(cfg, _workspace(args, cfg))
    f = champion.export_trial(cfg, study, args.trial, args.out, args.format)
    print(f"exported {report.LABELS[args.format]}: {f['path']}\n"
          f"  test accuracy {f['test_accuracy']:.4f}, {f['size_bytes']:,} bytes, one image on one thread: "
          f"p50 {f['p50_ms']:.4f} ms, p99 {f['p99_ms']:.4f} ms{report.int8_figures(f)}")
    return 0


def _cmd_bench(args) -> int:
    if args.precision_accuracy:
        import json

        from harness.bench import precision as bench_precision

        result = bench_precision.run(args.workdir, study_file=args.study)
        print(bench_precision.format_result(result))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
        return 0
    from harness.bench import run

    return run.main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness", description="Knowledge-distillation studies.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true",
                        help="everything the libraries print (TensorFlow's start-up lines, MLflow's database "
                             "set-up, the TFLite converter) and the harness' DEBUG lines")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("study", parents=[common],
                       help="create or resume a study, run its trials, export the champion")
    _store_args(s)
    s.add_argument("--n-trials", type=int, default=None,
                   help="add this many trials (default: run until the file's n_trials are done)")
    s.add_argument("--workers", type=int, default=1, help="parallel worker processes on this machine")
    s.add_argument("--no-export", action="store_true",
                   help="register the champion but write no export (later: `python -m harness export`)")
    s.add_argument("--search-only", action="store_true",
                   help="run trials only; confirmation, champion and exports: `finish`, once (several machines)")
    s.set_defaults(func=_cmd_study)

    c = sub.add_parser("compress", parents=[common],
                       help="write and run a study: the smallest student within --tolerance points of the teacher")
    compress.arguments(c)
    c.set_defaults(func=_cmd_compress)

    f = sub.add_parser("finish", parents=[common],
                       help="no new trials: confirm, pick, register and export the champion, once")
    _store_args(f)
    f.add_argument("--no-export", action="store_true", help="register the champion but write no export")
    f.set_defaults(func=_cmd_finish)

    t = sub.add_parser("teacher", parents=[common],
                       help="train (or load from the cache) the study's teacher alone")
    _store_args(t)
    t.set_defaults(func=_cmd_teacher)

    r = sub.add_parser("report", parents=[common],
                       help="the Pareto table, gains and champion, read from the stores")
    _store_args(r)
    r.set_defaults(func=_cmd_report)

    e = sub.add_parser("export", parents=[common],
                       help="export a trial's student (default: the champion): SavedModel or TFLite")
    _store_args(e)
    e.add_argument("--format", choices=config.EXPORT_FORMATS, default="savedmodel",
                   help="savedmodel (default), tflite (float32) or tflite-int8 (full-integer, calibrated on "
                        "transfer-set images)")
    e.add_argument("--trial", type=int, default=None)
    e.add_argument("--out", required=True)
    e.set_defaults(func=_cmd_export)

    b = sub.add_parser("bench", parents=[common], help="time distillation against plain training")
    b.add_argument("--pair", choices=["mlp", "cnn", "all"], default="all")
    b.add_argument("--repeats", type=int, default=3, help="timed epochs per variant (default 3; ~15 min)")
    b.add_argument("--json", default=None, help="also write the figures to this file")
    b.add_argument("--no-study", action="store_true", help="skip the small-study part")
    b.add_argument("--no-population", action="store_true", help="skip the population rows (K students together)")
    b.add_argument("--no-cnn", action="store_true", help="skip the CNN student rows (`cnn_students`)")
    b.add_argument("--only", choices=["cnn"], default=None,
                   help="run only this part: cnn = the CNN student rows (families x sizes, XLA on/off, K=10)")
    b.add_argument("--precision-accuracy", action="store_true",
                   help="instead: the default study's 2x256 student distilled in float32 and bfloat16, 3 seeds "
                        "(test accuracy and epoch time; its teacher from WORKDIR/teacher_cache when there)")
    b.add_argument("--workdir", default=".", help="for --precision-accuracy: holds the teacher cache (default: .)")
    b.add_argument("--study", default="studies/fashion_mnist.yaml", metavar="STUDY.yaml",
                   help="for --precision-accuracy: the study whose teacher and recipe it uses "
                        "(default: studies/fashion_mnist.yaml, relative to the current folder)")
    b.set_defaults(func=_cmd_bench)

    d = sub.add_parser("data", parents=[common], help="build TFDS fashion_mnist offline from Debian's package")
    d.add_argument("--data-dir", default=None)
    d.set_defaults(func=_cmd_data)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    saved = {k: os.environ.get(k) for k in (logs.VERBOSE_ENV, "MLFLOW_LOGGING_LEVEL")}
    os.environ[logs.VERBOSE_ENV] = "1" if args.verbose else "0"  # worker processes inherit it
    configure_logging()
    logs.quiet_tensorflow_import()
    # The commands that write a study's stores create a missing --workdir (taken back if refused).
    writes = args.func in (_cmd_study, _cmd_finish, _cmd_teacher) and getattr(args, "workdir", None)
    made = files.make_folder(args.workdir) if writes else []
    try:
        return args.func(args)
    except config.UserError as e:
        files.remove_empty(made)  # a refused study leaves nothing behind, not even its folder
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted: the current trial and its MLflow run were closed; "
              "run the same command again to continue the study", file=sys.stderr)
        return 130
    finally:  # restored: main can run inside another program (the tests)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
