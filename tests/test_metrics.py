import numpy as np
import pytest

from paddleseg_ext.evaluation.metrics import confusion_matrix, segmentation_metrics

# Ten pixels, 3 classes. Per true class, the predictions are:
#   label 0 -> pred 0, 0, 0, 1     row [3, 1, 0]
#   label 1 -> pred 0, 1, 1, 2     row [1, 2, 1]
#   label 2 -> pred 2, 2           row [0, 0, 2]
LABEL = np.array([[0, 0, 0, 0, 1], [1, 1, 1, 2, 2]])
PRED = np.array([[0, 0, 0, 1, 0], [1, 1, 2, 2, 2]])
CM = np.array([[3, 1, 0], [1, 2, 1], [0, 0, 2]])
# intersect = diag = [3, 2, 2], label_area (rows) = [4, 4, 2], pred_area (cols) = [4, 3, 3]


def naive_confusion_matrix(pred, label, num_classes, ignore_index):
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for true_class, predicted_class in zip(label.ravel(), pred.ravel()):
        if true_class != ignore_index:
            cm[true_class, predicted_class] += 1
    return cm


def test_confusion_matrix_hand_example():
    cm = confusion_matrix(PRED, LABEL, num_classes=3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, CM)


def test_metrics_hand_example():
    result = segmentation_metrics(CM)
    # IoU = I / (P + L - I): 3/(4+4-3) = 3/5, 2/(3+4-2) = 2/5, 2/(3+2-2) = 2/3
    assert result['class_iou'] == pytest.approx([0.6, 0.4, 2 / 3])
    assert result['miou'] == pytest.approx((0.6 + 0.4 + 2 / 3) / 3)  # = 5/9
    # acc = trace / total = 7 / 10
    assert result['acc'] == pytest.approx(0.7)
    # precision = I / P, recall = I / L
    assert result['class_precision'] == pytest.approx([3 / 4, 2 / 3, 2 / 3])
    assert result['class_recall'] == pytest.approx([3 / 4, 2 / 4, 2 / 2])
    # po = 0.7; pe = (4*4 + 3*4 + 3*2) / 10^2 = 0.34; kappa = 0.36 / 0.66 = 6/11
    assert result['kappa'] == pytest.approx(6 / 11)
    # dice = 2I / (P + L): 6/8, 4/7, 4/5; mean = (3/4 + 4/7 + 4/5) / 3 = 99/140
    assert result['class_dice'] == pytest.approx([6 / 8, 4 / 7, 4 / 5])
    assert result['dice'] == pytest.approx(99 / 140)


def test_metrics_are_plain_python_floats():
    result = segmentation_metrics(CM)
    for key in ('miou', 'acc', 'kappa', 'dice'):
        assert type(result[key]) is float
    for key in ('class_iou', 'class_precision', 'class_recall', 'class_dice'):
        assert all(type(value) is float for value in result[key])


def test_ignore_index_pixels_change_nothing():
    label = np.concatenate([LABEL, np.full((1, 5), 255)])
    pred = np.concatenate([PRED, np.array([[0, 1, 2, 0, 1]])])
    np.testing.assert_array_equal(confusion_matrix(pred, label, num_classes=3), CM)
    np.testing.assert_array_equal(
        confusion_matrix(PRED, np.where(LABEL == 2, 7, LABEL), 3, ignore_index=7)[:2], CM[:2]
    )


def test_class_absent_from_pred_and_label_counts_as_iou_zero():
    # PaddleSeg convention: an empty union gives IoU 0, still averaged into mIoU.
    cm = confusion_matrix(PRED, LABEL, num_classes=4)
    np.testing.assert_array_equal(cm[:3, :3], CM)
    result = segmentation_metrics(cm)
    assert result['class_iou'] == pytest.approx([0.6, 0.4, 2 / 3, 0.0])
    assert result['miou'] == pytest.approx((0.6 + 0.4 + 2 / 3) / 4)
    assert result['class_precision'][3] == 0.0
    assert result['class_recall'][3] == 0.0
    assert result['class_dice'][3] == 0.0
    assert result['dice'] == pytest.approx((6 / 8 + 4 / 7 + 4 / 5) / 4)
    # The absent class changes neither accuracy nor kappa.
    assert result['acc'] == pytest.approx(0.7)
    assert result['kappa'] == pytest.approx(6 / 11)


def test_degenerate_matrices_give_zeros_without_nan():
    single_class = segmentation_metrics(np.array([[5, 0], [0, 0]]))
    assert single_class['kappa'] == 0.0  # pe == 1: 0/0
    assert single_class['class_iou'] == [1.0, 0.0]
    assert single_class['acc'] == 1.0
    empty = segmentation_metrics(np.zeros((3, 3), dtype=np.int64))
    assert empty['miou'] == empty['acc'] == empty['kappa'] == empty['dice'] == 0.0


def test_out_of_range_label_raises_with_value():
    label = LABEL.copy()
    label[0, 0] = 7
    with pytest.raises(ValueError, match=r'label value\(s\) \[7\]'):
        confusion_matrix(PRED, label, num_classes=3)


def test_out_of_range_pred_raises_with_value():
    pred = PRED.copy()
    pred[1, 1] = -1
    with pytest.raises(ValueError, match=r'pred value\(s\) \[-1\]'):
        confusion_matrix(pred, LABEL, num_classes=3)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match='shape'):
        confusion_matrix(PRED, LABEL.T, num_classes=3)


def test_random_against_naive_loop():
    rng = np.random.default_rng(0)
    num_classes = 19  # label * num_classes overflows uint8: the cast must come first
    label = rng.integers(0, num_classes, size=(37, 23)).astype(np.uint8)
    label[rng.random(label.shape) < 0.1] = 255
    pred = rng.integers(0, num_classes, size=label.shape).astype(np.uint8)
    np.testing.assert_array_equal(
        confusion_matrix(pred, label, num_classes),
        naive_confusion_matrix(pred, label, num_classes, ignore_index=255),
    )
