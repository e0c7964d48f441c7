"""Evaluation that works on paddle 2.6 (PaddleSeg's own fails there): segmentation
(mIoU, ...) and classification (top-1/top-5), chosen by the dataset's task."""

from paddleseg_ext.evaluation.classification import evaluate_classification
from paddleseg_ext.evaluation.evaluate import evaluate
from paddleseg_ext.evaluation.metrics import confusion_matrix, segmentation_metrics
from paddleseg_ext.evaluation.task import task_of

__all__ = [
    'confusion_matrix',
    'segmentation_metrics',
    'evaluate',
    'evaluate_classification',
    'task_of',
]
