"""Evaluation of a segmentation model on a PaddleSeg val dataset.

Replaces `paddleseg.core.evaluate`, which fails on paddle 2.6 through
`paddleseg.utils.metrics.calculate_area`. Predictions are mapped back to each label's
original size as PaddleSeg does (`reverse_transform`, bilinear on the logits, then argmax),
so the numbers match PaddleSeg's for the same model and data.

PaddleSeg's val.py test-time options (inference.py) apply through `inference`.
"""

import numpy as np
import paddle
from paddleseg.core.infer import reverse_transform
from paddleseg.utils import logger

from paddleseg_ext.amp import AMP_DTYPES, autocast
from paddleseg_ext.eval_mode import eval_mode
from paddleseg_ext.evaluation.inference import infer_scores
from paddleseg_ext.evaluation.metrics import confusion_matrix, segmentation_metrics


def _iterate_samples(dataset, indices, num_workers):
    """Yields (image batch of one, label as HxW numpy array, trans_info) per index."""
    if num_workers > 0:
        loader = paddle.io.DataLoader(
            paddle.io.Subset(dataset, list(indices)),
            batch_size=1,
            shuffle=False,
            num_workers=num_workers,
            return_list=True,
        )
        for batch in loader:
            # The collated trans_info (nested lists of tensors) is a form reverse_transform reads.
            yield batch['img'], batch['label'].numpy()[0, 0], batch['trans_info']
    else:
        for index in indices:
            sample = dataset[index]
            image = paddle.to_tensor(sample['img'][np.newaxis])
            yield image, sample['label'][0], sample['trans_info']


def _predict(model, image, trans_info, precision, inference=None):
    """Class ids (HxW numpy) at the label's original size."""
    with autocast(precision):
        if inference is None or inference.is_plain:
            logits = model(image)[0]
        else:
            logits = infer_scores(model, image, inference)
    # Interpolating in float32, as PaddleSeg keeps bilinear_interp out of AMP.
    logits = reverse_transform(logits.astype('float32'), trans_info, mode='bilinear')
    return paddle.argmax(logits, axis=1).numpy()[0]


def _sum_over_ranks(cm):
    if not paddle.distributed.is_initialized():
        paddle.distributed.init_parallel_env()
    cm_tensor = paddle.to_tensor(cm, dtype='int64')
    paddle.distributed.all_reduce(cm_tensor)
    return cm_tensor.numpy()


def _log_summary(results):
    logger.info(
        '[EVAL] #Images: {} mIoU: {:.4f} Acc: {:.4f} Kappa: {:.4f} Dice: {:.4f}'.format(
            results['num_images'],
            results['miou'],
            results['acc'],
            results['kappa'],
            results['dice'],
        )
    )
    logger.info('[EVAL] Class IoU: \n' + str(np.round(results['class_iou'], 4)))
    logger.info('[EVAL] Class Precision: \n' + str(np.round(results['class_precision'], 4)))
    logger.info('[EVAL] Class Recall: \n' + str(np.round(results['class_recall'], 4)))


def evaluate(
    model, dataset, num_workers=0, print_detail=True, precision='fp32', inference=None, limit=None
):
    """Evaluates `model` on a PaddleSeg dataset in 'val' mode, one image at a time.

    Args:
        model: paddle.nn.Layer returning a list of logits (N, C, H, W), the first the main one.
        dataset: PaddleSeg dataset in 'val' mode (samples with 'img', 'label' at the original
            size and 'trans_info'); must have `num_classes` and `ignore_index`.
        num_workers: DataLoader workers; 0 reads samples in this process.
        print_detail: log PaddleSeg's [EVAL] summary lines (on rank 0).
        precision: 'fp32', 'fp16' or 'bf16'; the latter two use AMP on GPU only.
        inference: InferenceOptions for test-time augmentation / sliding windows; None
            (default) predicts each image once, whole.
        limit: score the first `limit` images only (None: all).

    Data-parallel as `evaluate_predictions`.

    Returns:
        dict: `segmentation_metrics` keys plus `num_images`.
    """
    if precision not in AMP_DTYPES:
        raise ValueError(f'precision must be one of {sorted(AMP_DTYPES)}, got {precision!r}')
    with eval_mode(model), paddle.no_grad():
        return evaluate_predictions(
            lambda image, trans_info: _predict(model, image, trans_info, precision, inference),
            dataset,
            num_workers,
            print_detail,
            limit,
        )


def evaluate_predictions(predict_ids, dataset, num_workers=0, print_detail=True, limit=None):
    """The metrics of `predict_ids(image batch of one, trans_info)` -> class ids (HxW numpy
    at the label's original size) over a PaddleSeg val dataset: one loop for the dygraph
    model (`evaluate`) and an exported one (`deploy.inference.evaluate_inference`).

    With several ranks, each predicts indices rank, rank + world_size, ... and the
    confusion matrices are summed, so every rank returns the same metrics.
    """
    world_size = paddle.distributed.get_world_size()
    rank = paddle.distributed.get_rank()
    count = len(dataset) if limit is None else min(limit, len(dataset))
    rank_indices = range(rank, count, world_size)

    if print_detail and rank == 0:
        logger.info(f'Start evaluating (total_samples: {count}) ...')
    cm = np.zeros((dataset.num_classes, dataset.num_classes), dtype=np.int64)
    for image, label, trans_info in _iterate_samples(dataset, rank_indices, num_workers):
        pred = predict_ids(image, trans_info)
        cm += confusion_matrix(pred, label, dataset.num_classes, dataset.ignore_index)
    if world_size > 1:
        cm = _sum_over_ranks(cm)

    results = segmentation_metrics(cm)
    results['num_images'] = count
    if print_detail and rank == 0:
        _log_summary(results)
    return results


def constant_prediction_metrics(dataset, class_id=0, limit=None):
    """The metrics of predicting `class_id` at every pixel (e.g. background only): the
    floor a trained model has to clear on this val set (its first `limit` images)."""

    def predict_ids(image, trans_info):
        constant = paddle.full([1, 1, *image.shape[2:]], float(class_id))
        return (
            reverse_transform(constant, trans_info, mode='nearest').numpy()[0, 0].astype(np.int64)
        )

    return evaluate_predictions(predict_ids, dataset, print_detail=False, limit=limit)
