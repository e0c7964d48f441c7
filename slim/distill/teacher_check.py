"""The teacher checked before the first step: scored on the student's val set next to what
predicting the majority class everywhere scores.

A teacher no better than that is the wrong weights (a file that did not load, an early
checkpoint), the wrong classes or the wrong data; distilling from it only pulls the
student towards one class, and the run would look merely disappointing at its end.
"""

import numpy as np
from paddleseg.utils import logger

from paddleseg_ext.errors import UserInputError
from paddleseg_ext.evaluation import task_of
from paddleseg_ext.evaluation.metrics import segmentation_metrics

# The first val images scored: enough to tell a teacher from a constant, cheap at any size.
CHECK_IMAGES = 100


def majority_score(dataset, limit):
    """The task's primary metric of predicting, for every pixel or image, the class most
    frequent among the first `limit` samples' labels."""
    count = min(limit, len(dataset))
    if task_of(dataset).name == 'classification':
        labels = np.array([label for _, label in dataset.file_list[:count]])
        return float(np.bincount(labels).max() / max(len(labels), 1))
    histogram = np.zeros(dataset.num_classes, np.int64)
    for index in range(count):
        label = np.asarray(dataset[index]['label']).reshape(-1)
        label = label[label != dataset.ignore_index].astype(np.int64)
        histogram += np.bincount(label, minlength=dataset.num_classes)
    confusion = np.zeros((dataset.num_classes, dataset.num_classes), np.int64)
    confusion[:, int(histogram.argmax())] = histogram  # rows: true class; all predicted as one
    return float(segmentation_metrics(confusion)['miou'])


def check_teacher(teacher_model, val_dataset, teacher_config_path, allow_weak=False):
    """Scores the teacher on the first CHECK_IMAGES val images; raises UserInputError when it
    is no better than the majority class (unless allow_weak)."""
    task = task_of(val_dataset)
    count = min(CHECK_IMAGES, len(val_dataset))
    score = task.evaluate(teacher_model, val_dataset, print_detail=False, limit=count)[task.primary]
    floor = majority_score(val_dataset, count)
    summary = (
        f'the teacher scores {task.primary_label} {score:.4f} on the first {count} '
        f'val images, predicting the majority class everywhere {floor:.4f}'
    )
    if score > floor:
        logger.info(f'Teacher check: {summary}')
        return score, floor
    if allow_weak:
        logger.warning(f'Teacher check: {summary}; going on (--allow_weak_teacher)')
        return score, floor
    raise UserInputError(
        f"{summary}: the teacher in '{teacher_config_path}' is no better than "
        f'a constant (wrong weights, classes or data?); fix it, or pass '
        f'--allow_weak_teacher to distil from it anyway'
    )
