"""Segmentation metrics from a confusion matrix, in pure numpy.

Replaces `paddleseg.utils.metrics`, whose `calculate_area` fails on paddle 2.6 (concat of
0-D tensors). The conventions are PaddleSeg's: a class with a zero denominator (e.g. absent
from both prediction and label, so its union is 0) scores 0 for IoU, dice, precision and
recall, and still counts in the means. mIoU is therefore lowered by classes that never
occur, exactly as PaddleSeg reports it.
"""

import numpy as np


def _check_range(values, num_classes, what):
    out_of_range = values[(values < 0) | (values >= num_classes)]
    if out_of_range.size:
        raise ValueError(
            f'{what} value(s) {np.unique(out_of_range).tolist()} outside '
            f'[0, {num_classes}) for num_classes={num_classes}'
        )


def confusion_matrix(pred, label, num_classes, ignore_index=255):
    """Counts pixels per (true class, predicted class).

    Args:
        pred: integer array of predicted class ids.
        label: integer array of true class ids, same shape as `pred`.
        num_classes: number of classes.
        ignore_index: label value whose pixels are left out.

    Returns:
        np.ndarray of shape (num_classes, num_classes), int64; rows are true labels,
        columns predictions.

    Raises:
        ValueError: shapes differ, or a label (other than ignore_index) or a prediction
            lies outside [0, num_classes); the message names the values.
    """
    pred = np.asarray(pred)
    label = np.asarray(label)
    if pred.shape != label.shape:
        raise ValueError(f'pred shape {pred.shape} differs from label shape {label.shape}')
    # int64 before any arithmetic: labels are often uint8, where label * num_classes wraps.
    kept = label != ignore_index
    label = label[kept].astype(np.int64)
    pred = pred[kept].astype(np.int64)
    _check_range(label, num_classes, 'label')
    _check_range(pred, num_classes, 'pred')
    counts = np.bincount(label * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _safe_divide(numerator, denominator):
    """Element-wise division giving 0 where the denominator is 0 (PaddleSeg's convention)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)


def _cohen_kappa(intersect_area, pred_area, label_area, total):
    if total == 0:
        return 0.0
    observed = intersect_area.sum() / total
    expected = np.sum(pred_area * label_area) / (total * total)
    # expected reaches 1 only when prediction and label are the same single class
    # everywhere: kappa is 0/0 there, reported as 0.
    if expected >= 1.0:
        return 0.0
    return float((observed - expected) / (1.0 - expected))


def segmentation_metrics(cm):
    """PaddleSeg's evaluation metrics from a confusion matrix (rows true, columns predicted).

    Returns:
        dict of plain Python floats / lists of floats:
        miou, class_iou, acc (overall pixel accuracy), class_precision, class_recall,
        kappa (Cohen's), dice (mean), class_dice. Zero denominators give 0 (see module doc).
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f'confusion matrix must be square, got shape {cm.shape}')
    # float64 throughout: pred_area * label_area overflows int64 on large datasets.
    cm = cm.astype(np.float64)
    intersect_area = np.diag(cm)
    pred_area = cm.sum(axis=0)
    label_area = cm.sum(axis=1)
    total = cm.sum()

    class_iou = _safe_divide(intersect_area, pred_area + label_area - intersect_area)
    class_dice = _safe_divide(2 * intersect_area, pred_area + label_area)
    return {
        'miou': float(class_iou.mean()),
        'class_iou': class_iou.tolist(),
        'acc': float(_safe_divide(intersect_area.sum(), total)),
        'class_precision': _safe_divide(intersect_area, pred_area).tolist(),
        'class_recall': _safe_divide(intersect_area, label_area).tolist(),
        'kappa': _cohen_kappa(intersect_area, pred_area, label_area, total),
        'dice': float(class_dice.mean()),
        'class_dice': class_dice.tolist(),
    }
