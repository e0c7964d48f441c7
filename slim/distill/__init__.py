"""The distillation engine, split by concern (as MMRazor's distiller):
recorder (what to record), losses + distiller (how to compare), teacher (the frozen model).
Importing it registers the distillation losses in paddleseg's manager."""
from slim.distill import losses  # noqa: F401
from slim.distill.build import distiller_factory, plain_distiller
from slim.distill.distiller import Distiller

__all__ = ['Distiller', 'distiller_factory', 'plain_distiller']
