import cv2
import numpy as np
import paddle
import paddleseg.transforms as T
import pytest
from paddleseg.datasets import Dataset

from paddleseg_ext.evaluation import evaluate

IMAGE_SIZES = [(40, 56), (50, 30), (24, 36)]  # (h, w): upsampled and downsampled from 32x32
NUM_CLASSES = 2
# 1x1 conv weights: class 1 scores the channel mean, class 0 its negative.
CLASS_WEIGHTS = np.array([[-1 / 3] * 3, [1 / 3] * 3], dtype=np.float32)


class ChannelMeanModel(paddle.nn.Layer):
    """Deterministic 2-class segmenter; records the mode it ran in."""

    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, NUM_CLASSES, kernel_size=1, bias_attr=False)
        self.conv.weight.set_value(CLASS_WEIGHTS[:, :, None, None])
        self.frozen_part = paddle.nn.BatchNorm2D(NUM_CLASSES)  # unused; checks mode restore
        self.ran_in_training_mode = []

    def forward(self, x):
        self.ran_in_training_mode.append(self.training)
        return [self.conv(x)]


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('val_data')
    lines = []
    for index, (height, width) in enumerate(IMAGE_SIZES):
        ys, xs = np.mgrid[0:height, 0:width]
        wave = np.sin(xs / 4.0 + ys / 6.0 + index)
        image = np.repeat((127.5 + 127.5 * wave)[..., None], 3, axis=2).astype(np.uint8)
        label = (wave > 0).astype(np.uint8)
        label[:3, :3] = 255  # ignored corner
        cv2.imwrite(str(root / f'img{index}.png'), image)
        cv2.imwrite(str(root / f'label{index}.png'), label)
        lines.append(f'img{index}.png label{index}.png\n')
    (root / 'val.txt').write_text(''.join(lines))
    return Dataset(
        mode='val',
        dataset_root=str(root),
        num_classes=NUM_CLASSES,
        val_path=str(root / 'val.txt'),
        transforms=[T.Resize(target_size=(32, 32)), T.Normalize()],
    )


def bilinear_resize(logits, out_h, out_w):
    """numpy bilinear resize of (C, H, W) with half-pixel centres (align_corners=False)."""

    def source_positions(in_size, out_size):
        src = np.maximum((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0)
        low = np.minimum(np.floor(src).astype(int), in_size - 1)
        high = np.minimum(low + 1, in_size - 1)
        return low, high, src - low

    y0, y1, fy = source_positions(logits.shape[1], out_h)
    x0, x1, fx = source_positions(logits.shape[2], out_w)
    rows = logits[:, y0] * (1 - fy)[:, None] + logits[:, y1] * fy[:, None]
    return rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx


def reference_miou(dataset):
    """mIoU computed without paddle: numpy logits, upsampled, argmax, confusion by loop."""
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for index in range(len(dataset)):
        sample = dataset[index]
        logits = np.einsum('kc,chw->khw', CLASS_WEIGHTS, sample['img'].astype(np.float64))
        label = sample['label'][0]
        pred = bilinear_resize(logits, *label.shape).argmax(axis=0)
        for true_class, predicted_class in zip(label.ravel(), pred.ravel()):
            if true_class != dataset.ignore_index:
                cm[true_class, predicted_class] += 1
    iou = np.diag(cm) / (cm.sum(axis=0) + cm.sum(axis=1) - np.diag(cm))
    return iou.mean(), cm.sum()


def test_miou_matches_independent_numpy_computation(dataset):
    expected_miou, counted_pixels = reference_miou(dataset)
    assert counted_pixels == sum(h * w - 9 for h, w in IMAGE_SIZES)
    assert 0.5 < expected_miou < 1.0  # a meaningful, imperfect prediction

    result = evaluate(ChannelMeanModel(), dataset, print_detail=False)
    assert result['miou'] == pytest.approx(expected_miou, abs=1e-6)
    assert result['num_images'] == len(IMAGE_SIZES)
    assert set(result) >= {
        'miou',
        'class_iou',
        'acc',
        'class_precision',
        'class_recall',
        'kappa',
        'dice',
        'class_dice',
    }


def test_dataloader_path_gives_same_metrics(dataset):
    in_process = evaluate(ChannelMeanModel(), dataset, print_detail=False)
    with_workers = evaluate(ChannelMeanModel(), dataset, num_workers=1, print_detail=False)
    assert with_workers == in_process


def test_runs_in_eval_mode_and_restores_each_layers_mode(dataset):
    model = ChannelMeanModel()
    model.train()
    model.frozen_part.eval()
    evaluate(model, dataset, print_detail=False)
    assert model.ran_in_training_mode == [False] * len(IMAGE_SIZES)
    assert model.training and model.conv.training
    assert not model.frozen_part.training

    model.eval()
    evaluate(model, dataset, print_detail=False)
    assert not model.training and not model.conv.training


def test_logs_paddleseg_summary(dataset, capsys):
    evaluate(ChannelMeanModel(), dataset)
    output = capsys.readouterr()
    logged = output.out + output.err
    assert f'[EVAL] #Images: {len(IMAGE_SIZES)} mIoU: ' in logged
    for line in ('[EVAL] Class IoU:', '[EVAL] Class Precision:', '[EVAL] Class Recall:'):
        assert line in logged


def test_rejects_unknown_precision(dataset):
    with pytest.raises(ValueError, match='precision'):
        evaluate(ChannelMeanModel(), dataset, precision='int8')


@pytest.mark.parametrize('class_id', [0, 1])
def test_constant_prediction_scores_one_class_everywhere(dataset, class_id):
    from paddleseg_ext.evaluation.evaluate import constant_prediction_metrics

    labels = [
        cv2.imread(str(dataset.file_list[i][1]), cv2.IMREAD_GRAYSCALE)
        for i in range(len(IMAGE_SIZES))
    ]
    valid = np.concatenate([label[label != 255] for label in labels])
    # Predicting class_id everywhere: its IoU is its share of the valid pixels, the other's 0.
    share = np.mean(valid == class_id)
    metrics = constant_prediction_metrics(dataset, class_id)
    expected_iou = [share if c == class_id else 0.0 for c in range(NUM_CLASSES)]
    np.testing.assert_allclose(metrics['class_iou'], expected_iou, atol=1e-7)
    np.testing.assert_allclose(metrics['miou'], share / NUM_CLASSES, atol=1e-7)
