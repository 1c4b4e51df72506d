"""Knowledge distillation (Hinton, Vinyals & Dean 2015) on Keras, searched by Optuna, tracked by MLflow.

The library's main names, importable from `harness` (loaded on first use, so
the command line can reject a bad study file before TensorFlow starts):
"""

_NAMES = {
    "StudyConfig": "config", "ConfigError": "config", "load_config": ("config", "load"),
    "load_splits": "data.sources", "pipeline": "data.pipelines",
    "prepare_fashion_mnist": "data.fashion_mnist",
    "mlp": "distill.models", "cnn": "distill.models", "build_teacher": "distill.models",
    "build_student": "distill.models",
    "distillation_loss": "distill.losses", "soft_targets": "distill.losses",
    "Distiller": "distill.distiller",
    "Teacher": "teacher.trained", "load_or_train": "teacher.trained",
    "TrialRecord": "record",
    "run_study": ("study", "run"),
    "export_student": ("deploy.export", "export"),
}
__all__ = sorted(_NAMES)
__doc__ += "\n" + ", ".join(__all__) + ".\n"


def __getattr__(name):
    if name not in _NAMES:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    import importlib

    module, attr = _NAMES[name] if isinstance(_NAMES[name], tuple) else (_NAMES[name], name)
    return getattr(importlib.import_module(f".{module}", __name__), attr)


def _onednn() -> None:
    # TensorFlow turns its oneDNN kernels on by default only on some CPUs (those with AVX-512 and
    # newer); on an AVX2-only AMD EPYC it leaves them off, and there the harness's CNN students
    # trained 1.6-2.4x slower per epoch (docs/performance.md, "oneDNN on every CPU"). The switch is
    # TensorFlow's own and is read when TensorFlow is imported, so it is set here, before any import
    # of it, and only where the user has not chosen (`TF_ENABLE_ONEDNN_OPTS=0` is kept).
    import os

    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


_onednn()


def _quiet_worker() -> None:
    # A worker process the command line started (multiprocessing "spawn") imports this package
    # before TensorFlow: keep TensorFlow's start-up lines off its console too (`harness.logs`).
    import os

    if os.environ.get("HARNESS_VERBOSE") == "0":
        from harness.logs import quiet_tensorflow_import

        quiet_tensorflow_import()


_quiet_worker()
