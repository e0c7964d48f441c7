"""Evaluation of a classification model: top-1 and top-5 accuracy over a val set."""

import numpy as np
import paddle
from paddleseg.utils import logger

from paddleseg_ext.amp import AMP_DTYPES, autocast
from paddleseg_ext.errors import UserInputError
from paddleseg_ext.eval_mode import eval_mode

TOP_K = (1, 5)
EVAL_BATCH_SIZE = 64


def topk_correct(logits, labels, k):
    """How many rows of `logits` [N, C] rank their label among their k largest scores
    (k is capped at C). Ties rank by position, as numpy's stable sort does."""
    logits = np.asarray(logits)
    labels = np.asarray(labels).reshape(-1)
    k = min(k, logits.shape[1])
    ranked = np.argsort(-logits, axis=1, kind='stable')[:, :k]
    return int((ranked == labels[:, None]).any(axis=1).sum())


def _batches(dataset, indices, num_workers):
    """(images [B, C, H, W] tensor, labels numpy [B]) over `indices`."""
    if num_workers > 0:
        loader = paddle.io.DataLoader(
            paddle.io.Subset(dataset, list(indices)),
            batch_size=EVAL_BATCH_SIZE,
            shuffle=False,
            num_workers=num_workers,
            return_list=True,
        )
        for batch in loader:
            yield batch['img'], batch['label'].numpy().reshape(-1)
        return
    indices = list(indices)
    for start in range(0, len(indices), EVAL_BATCH_SIZE):
        samples = [dataset[i] for i in indices[start : start + EVAL_BATCH_SIZE]]
        yield (
            paddle.to_tensor(np.stack([s['img'] for s in samples])),
            np.array([s['label'] for s in samples], dtype=np.int64),
        )


def evaluate_classification(
    model, dataset, num_workers=0, print_detail=True, precision='fp32', inference=None, limit=None
):
    """{'top1', 'top5' (fractions in [0, 1]), 'num_images'} of `model` (returning a list
    whose first element is [N, C] logits) on `dataset`; the arguments are
    paddleseg_ext.evaluation.evaluate's. With several ranks each scores indices rank,
    rank + world_size, ... and the counts are summed, so every rank returns the same."""
    if precision not in AMP_DTYPES:
        raise ValueError(f'precision must be one of {sorted(AMP_DTYPES)}, got {precision!r}')
    if inference is not None and not inference.is_plain:
        raise UserInputError(
            '--aug_eval and --is_slide apply to segmentation models; this '
            'config is a classification one: remove them'
        )
    world_size = paddle.distributed.get_world_size()
    rank = paddle.distributed.get_rank()
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if print_detail and rank == 0:
        logger.info(f'Start evaluating (total_samples: {count}) ...')
    counts = np.zeros(len(TOP_K) + 1, dtype=np.int64)  # correct at each k, then seen
    with eval_mode(model), paddle.no_grad():
        for images, labels in _batches(dataset, range(rank, count, world_size), num_workers):
            with autocast(precision):
                logits = model(images)[0]
            logits = logits.astype('float32').numpy()
            counts[:-1] += [topk_correct(logits, labels, k) for k in TOP_K]
            counts[-1] += len(labels)
    if world_size > 1:
        if not paddle.distributed.is_initialized():
            paddle.distributed.init_parallel_env()
        total = paddle.to_tensor(counts)
        paddle.distributed.all_reduce(total)
        counts = total.numpy()
    seen = max(int(counts[-1]), 1)
    results = {f'top{k}': float(counts[i]) / seen for i, k in enumerate(TOP_K)}
    results['num_images'] = int(counts[-1])
    if print_detail and rank == 0:
        logger.info(
            f'[EVAL] #Images: {results["num_images"]} top1: {results["top1"]:.4f} '
            f'top5: {results["top5"]:.4f}'
        )
    return results
