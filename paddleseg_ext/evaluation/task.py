"""What a dataset's task is scored by: its evaluator, its primary metric (which chooses
best_model) and the metric names in logs, train_log.jsonl and val.py's --json."""

from dataclasses import dataclass
from typing import Callable, Dict, Tuple

from paddleseg_ext.evaluation.classification import evaluate_classification
from paddleseg_ext.evaluation.evaluate import evaluate


@dataclass(frozen=True)
class Task:
    name: str
    evaluate: Callable  # (model, dataset, num_workers, print_detail, precision, inference)
    primary: str  # the metrics key best_model is chosen by
    primary_label: str  # its name in log lines
    logged: Dict[str, str]  # train_log.jsonl 'Evaluate' record: {name: metrics key}
    json_keys: Tuple[str, ...]  # what val.py --json writes

    def log_record(self, metrics):
        return {name: metrics[key] for name, key in self.logged.items()}

    @property
    def primary_logged(self):
        """The primary metric's name in train_log.jsonl ('mIoU', 'Top1')."""
        return next(name for name, key in self.logged.items() if key == self.primary)


SEGMENTATION = Task(
    'segmentation',
    evaluate,
    'miou',
    'mIoU',
    {'mIoU': 'miou', 'Acc': 'acc', 'Kappa': 'kappa', 'Dice': 'dice'},
    ('miou', 'acc', 'kappa', 'dice', 'class_iou', 'num_images'),
)
CLASSIFICATION = Task(
    'classification',
    evaluate_classification,
    'top1',
    'top-1',
    {'Top1': 'top1', 'Top5': 'top5'},
    ('top1', 'top5', 'num_images'),
)
TASKS = {task.name: task for task in (SEGMENTATION, CLASSIFICATION)}


def task_of(dataset):
    """The task a dataset declares (its `task` attribute); paddleseg's are segmentation."""
    return TASKS[getattr(dataset, 'task', 'segmentation')]
