"""The distillation methods: one registered class each (`base.DistillMethod`), and `Method`, the
method one run trains with and its numbers.

kd (Hinton et al. 2015, the default), dkd (Zhao et al. 2022), logit_std (Sun et al. 2024), fitnets
(Romero et al. 2015: hints from the teacher's features, on top of kd). A new
method is one module here, imported below, that defines its class with `@register`
(docs/methods.md, "How to add a method").

Imports only `distill.losses` (inside a loss, so that reading a study file starts no TensorFlow);
`config` asks this registry for the methods' sections and checks.
"""

from harness.distill.methods import dkd, fitnets, kd, logit_std  # noqa: F401  (registers them)
from harness.distill.methods.base import DEFAULT, REGISTRY, DistillMethod, EpochSpace, FloatRange, get, names, register
from harness.distill.methods.value import Method, for_arm

__all__ = ["DEFAULT", "REGISTRY", "DistillMethod", "EpochSpace", "FloatRange", "Method", "for_arm", "get", "names", "register"]
