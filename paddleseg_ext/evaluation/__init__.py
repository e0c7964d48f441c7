"""Segmentation evaluation that works on paddle 2.6 (PaddleSeg's own fails there)."""
from paddleseg_ext.evaluation.evaluate import evaluate
from paddleseg_ext.evaluation.metrics import confusion_matrix, segmentation_metrics

__all__ = ['confusion_matrix', 'segmentation_metrics', 'evaluate']
