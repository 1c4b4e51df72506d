"""Knowledge distillation (Hinton, Vinyals & Dean 2015) on Keras, searched by Optuna, tracked by MLflow.

The library's main names, importable from `harness` (loaded on first use, so
the command line can reject a bad study file before TensorFlow starts):
"""

_NAMES = {
    "StudyConfig": "config", "ConfigError": "config", "load_config": ("config", "load"),
    "load_splits": "data", "pipeline": "data", "prepare_fashion_mnist": "data",
    "mlp": "models", "cnn": "models", "build_teacher": "models", "build_student": "models",
    "distillation_loss": "losses", "soft_targets": "losses",
    "Distiller": "distiller",
    "Teacher": "teacher", "load_or_train": "teacher",
    "TrialRecord": "record",
    "run_study": ("study", "run"),
    "export_student": ("export", "export"),
}
__all__ = sorted(_NAMES)
__doc__ += "\n" + ", ".join(__all__) + ".\n"


def __getattr__(name):
    if name not in _NAMES:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    import importlib

    module, attr = _NAMES[name] if isinstance(_NAMES[name], tuple) else (_NAMES[name], name)
    return getattr(importlib.import_module(f".{module}", __name__), attr)
