"""The distillation algorithm, split by concern (as MMRazor's distiller):
recorder (what to record), schema + terms + losses (how to compare), calibration
(`coef: auto`), connectors, probe (shapes), teacher / teacher_predictor / teacher_cache /
teacher_replay / teacher_check (the frozen teacher, its caches and its check), and model
(the one Layer the engine trains). Importing it registers the distillation losses."""

from slim.distill import losses  # noqa: F401
from slim.distill.build import distill_model_factory, plain_model
from slim.distill.model import DistillModel

__all__ = ['DistillModel', 'distill_model_factory', 'plain_model']
