import numpy as np
import paddle
import pytest

from slim.distill.losses import (
    ChannelWiseDistillLoss,
    DISTLoss,
    DKDLoss,
    FSPLoss,
    KLDivergenceLoss,
    L2Loss,
    PairwiseAffinityLoss,
)

TOLERANCE = 1e-5
SHAPE = (2, 3, 4, 6)


def _random(shape, seed):
    return np.random.RandomState(seed).randn(*shape).astype('float32')


def _tensor(array, requires_grad=False):
    return paddle.to_tensor(array, stop_gradient=not requires_grad)


# ---- numpy references, written independently of the implementations ----


def _np_log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _np_kl(student, teacher, student_temp, teacher_temp, label=None, ignore_index=255):
    log_p_teacher = _np_log_softmax(teacher / teacher_temp, axis=1)
    log_p_student = _np_log_softmax(student / student_temp, axis=1)
    pixel_kl = (np.exp(log_p_teacher) * (log_p_teacher - log_p_student)).sum(1)
    if label is None:
        mean_kl = pixel_kl.mean()
    else:
        mean_kl = pixel_kl[label != ignore_index].mean()
    return mean_kl * student_temp * teacher_temp


def _np_channel_wise(student, teacher, tau):
    n, c = teacher.shape[:2]
    log_p_teacher = _np_log_softmax(teacher.reshape(n, c, -1) / tau, axis=2)
    log_p_student = _np_log_softmax(student.reshape(n, c, -1) / tau, axis=2)
    kl = (np.exp(log_p_teacher) * (log_p_teacher - log_p_student)).sum(2)
    return tau**2 * kl.mean()


def _np_fsp(first, second):
    n, c1, h, w = first.shape
    return np.einsum(
        'nip,njp->nij', first.reshape(n, c1, -1), second.reshape(n, second.shape[1], -1)
    ) / (h * w)


def _np_pearson(a, b):
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (np.sqrt((a * a).sum()) * np.sqrt((b * b).sum()) + 1e-8)


def _np_dist(student, teacher, tau=1.0, beta=1.0, gamma=1.0, label=None, ignore_index=255):
    """DIST by its definition: loops over rows, images (N, C) or pixels (N, C, H, W)
    (inter), and over classes (intra)."""
    c = teacher.shape[1]
    rows = [np.exp(_np_log_softmax(x / tau, axis=1)) for x in (student, teacher)]
    rows = [r if r.ndim == 2 else r.transpose(0, 2, 3, 1).reshape(-1, c) for r in rows]
    if label is not None:
        keep = (label != ignore_index).reshape(-1)
        rows = [r[keep] for r in rows]
    s_rows, t_rows = rows
    inter = np.mean([1 - _np_pearson(s_rows[i], t_rows[i]) for i in range(len(s_rows))])
    intra = np.mean([1 - _np_pearson(s_rows[:, j], t_rows[:, j]) for j in range(c)])
    return tau**2 * (beta * inter + gamma * intra)


def _np_dkd(student, teacher, label, alpha, beta, temperature, ignore_index=255):
    """Per row: TCKD, the KL of (p_target, 1 - p_target), and NCKD, the KL of the other
    classes' probabilities renormalised; rows are images (N, C) or pixels (N, C, H, W)."""
    if student.ndim == 4:
        student, teacher = (
            x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1]) for x in (student, teacher)
        )
    label = label.reshape(-1)
    losses = []
    for row_s, row_t, target in zip(student, teacher, label):
        if target == ignore_index:
            continue
        p_s, p_t = (np.exp(_np_log_softmax(row / temperature, axis=0)) for row in (row_s, row_t))
        b_s = np.array([p_s[target], 1 - p_s[target]])
        b_t = np.array([p_t[target], 1 - p_t[target]])
        others = np.arange(len(row_s)) != target
        q_s, q_t = p_s[others] / p_s[others].sum(), p_t[others] / p_t[others].sum()
        tckd = (b_t * np.log(b_t / b_s)).sum()
        nckd = (q_t * np.log(q_t / q_s)).sum()
        losses.append(alpha * tckd + beta * nckd)
    return np.mean(losses) * temperature**2


def _np_pool(x, window, pool):
    """Non-overlapping windows, the last ones partial (ceil mode), averaged or maxed."""
    n, c, h, w = x.shape
    out_h, out_w = -(-h // window[0]), -(-w // window[1])
    out = np.zeros((n, c, out_h, out_w), dtype=x.dtype)
    reduce = np.mean if pool == 'avg' else np.max
    for i in range(out_h):
        for j in range(out_w):
            patch = x[
                :, :, i * window[0] : (i + 1) * window[0], j * window[1] : (j + 1) * window[1]
            ]
            out[:, :, i, j] = reduce(patch, axis=(2, 3))
    return out


def _np_pairwise(student, teacher, window, pool='avg'):
    def affinity(x):
        flat = _np_pool(x, window, pool).reshape(x.shape[0], x.shape[1], -1)
        unit = flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-8)
        return np.einsum('ncp,ncq->npq', unit, unit)

    return ((affinity(student) - affinity(teacher)) ** 2).mean()


def _np_bilinear_half_pixel(x, out_h, out_w):
    """Bilinear resize with align_corners=False (half-pixel centres)."""

    def source_indices(out_size, in_size):
        src = (np.arange(out_size) + 0.5) * in_size / out_size - 0.5
        src = np.clip(src, 0, None)
        low = np.floor(src).astype(int)
        high = np.minimum(low + 1, in_size - 1)
        return low, high, src - low

    y0, y1, wy = source_indices(out_h, x.shape[2])
    x0, x1, wx = source_indices(out_w, x.shape[3])
    top = x[:, :, y0][..., x0] * (1 - wx) + x[:, :, y0][..., x1] * wx
    bottom = x[:, :, y1][..., x0] * (1 - wx) + x[:, :, y1][..., x1] * wx
    return top * (1 - wy[:, None]) + bottom * wy[:, None]


# ---- values ----


@pytest.mark.parametrize(
    'kwargs, student_temp, teacher_temp',
    [
        ({}, 1.0, 1.0),
        ({'temperature': 4.0}, 4.0, 4.0),
        ({'student_temperature': 2.0, 'teacher_temperature': 5.0}, 2.0, 5.0),
        ({'temperature': 3.0, 'teacher_temperature': 0.5}, 3.0, 0.5),
    ],
)
def test_kl_loss_matches_numpy(kwargs, student_temp, teacher_temp):
    student, teacher = _random(SHAPE, 0), _random(SHAPE, 1)
    loss = KLDivergenceLoss(**kwargs)(_tensor(student), _tensor(teacher))
    expected = _np_kl(student, teacher, student_temp, teacher_temp)
    np.testing.assert_allclose(loss.numpy(), expected, atol=TOLERANCE)


def _np_z_score(x):
    return (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-7)


def test_standardized_kl_names_why_it_cannot_compare_two_classes_only():
    """The probe refuses a term whose loss gives a reason (tests/test_distill.py)."""
    assert 'over its 2 channels' in KLDivergenceLoss(standardize=True).channel_error(2)
    assert KLDivergenceLoss(standardize=True).channel_error(3) is None
    assert KLDivergenceLoss().channel_error(2) is None


@pytest.mark.parametrize('shape', [(5, 10), SHAPE])
def test_kl_loss_standardized_matches_numpy(shape):
    student, teacher = _random(shape, 0) * 3, _random(shape, 1) * 7 + 2
    loss = KLDivergenceLoss(temperature=2.0, standardize=True)(_tensor(student), _tensor(teacher))
    expected = _np_kl(_np_z_score(student), _np_z_score(teacher), 2.0, 2.0)
    np.testing.assert_allclose(loss.numpy(), expected, atol=TOLERANCE)
    # Standardised, the loss ignores each side's logit scale and shift; plain KL does not.
    moved = _tensor(teacher * 0.2 - 5)
    np.testing.assert_allclose(
        KLDivergenceLoss(temperature=2.0, standardize=True)(_tensor(student), moved).numpy(),
        loss.numpy(),
        atol=TOLERANCE,
    )
    assert (
        abs(
            float(KLDivergenceLoss(temperature=2.0)(_tensor(student), moved))
            - float(KLDivergenceLoss(temperature=2.0)(_tensor(student), _tensor(teacher)))
        )
        > 0.1
    )


def test_kl_loss_ignores_masked_pixels():
    student, teacher = _random(SHAPE, 0), _random(SHAPE, 1)
    n, _, h, w = SHAPE
    label = np.random.RandomState(2).randint(0, 3, size=(n, h, w))
    label[:, :2, :3] = 255
    loss = KLDivergenceLoss(student_temperature=2.0, teacher_temperature=3.0)(
        _tensor(student), _tensor(teacher), _tensor(label.astype('int64'))
    )
    expected = _np_kl(student, teacher, 2.0, 3.0, label)
    np.testing.assert_allclose(loss.numpy(), expected, atol=TOLERANCE)


def test_kl_loss_all_ignored_is_zero_with_gradient_path():
    student = _tensor(_random(SHAPE, 0), requires_grad=True)
    n, _, h, w = SHAPE
    label = paddle.full([n, h, w], 255, dtype='int64')
    loss = KLDivergenceLoss()(student, _tensor(_random(SHAPE, 1)), label)
    assert float(loss) == 0.0
    loss.backward()
    assert student.grad is not None


@pytest.mark.parametrize('tau', [1.0, 4.0])
def test_channel_wise_loss_matches_numpy(tau):
    student, teacher = _random(SHAPE, 0), _random(SHAPE, 1)
    loss = ChannelWiseDistillLoss(tau=tau)(_tensor(student), _tensor(teacher))
    expected = _np_channel_wise(student, teacher, tau)
    np.testing.assert_allclose(loss.numpy(), expected, atol=TOLERANCE)


def test_l2_loss_matches_numpy():
    student, teacher = _random(SHAPE, 0), _random(SHAPE, 1)
    loss = L2Loss()(_tensor(student), _tensor(teacher))
    np.testing.assert_allclose(loss.numpy(), ((student - teacher) ** 2).mean(), atol=TOLERANCE)


def test_fsp_loss_matches_numpy():
    student = (_random((2, 3, 4, 5), 0), _random((2, 6, 4, 5), 1))
    teacher = (_random((2, 3, 8, 10), 2), _random((2, 6, 8, 10), 3))
    loss = FSPLoss()([_tensor(x) for x in student], [_tensor(x) for x in teacher])
    expected = ((_np_fsp(*student) - _np_fsp(*teacher)) ** 2).mean()
    np.testing.assert_allclose(loss.numpy(), expected, atol=TOLERANCE)


def test_fsp_loss_resizes_second_map_to_first():
    first, second_small = _random((2, 3, 4, 6), 0), _random((2, 5, 2, 3), 1)
    teacher = (_random((2, 3, 4, 6), 2), _random((2, 5, 4, 6), 3))
    loss = FSPLoss()([_tensor(first), _tensor(second_small)], [_tensor(x) for x in teacher])
    student_fsp = _np_fsp(first, _np_bilinear_half_pixel(second_small, 4, 6))
    expected = ((student_fsp - _np_fsp(*teacher)) ** 2).mean()
    np.testing.assert_allclose(loss.numpy(), expected, atol=TOLERANCE)


@pytest.mark.parametrize('kwargs', [{}, {'tau': 4.0}, {'tau': 2.0, 'beta': 0.5, 'gamma': 3.0}])
def test_dist_loss_matches_numpy(kwargs):
    student, teacher = _random(SHAPE, 0), _random(SHAPE, 1)
    loss = DISTLoss(**kwargs)(_tensor(student), _tensor(teacher))
    np.testing.assert_allclose(loss.numpy(), _np_dist(student, teacher, **kwargs), atol=TOLERANCE)


def test_dist_loss_leaves_ignored_pixels_out_of_both_relations():
    student, teacher = _random(SHAPE, 0), _random(SHAPE, 1)
    n, _, h, w = SHAPE
    label = np.random.RandomState(2).randint(0, 3, size=(n, h, w))
    label[:, :2, :3] = 255
    label[1, 3] = 255
    loss = DISTLoss(tau=2.0)(_tensor(student), _tensor(teacher), _tensor(label.astype('int64')))
    expected = _np_dist(student, teacher, tau=2.0, label=label)
    np.testing.assert_allclose(loss.numpy(), expected, atol=TOLERANCE)
    # Ignored pixels make a difference: without the label the value is another one.
    assert abs(float(loss) - _np_dist(student, teacher, tau=2.0)) > 1e-3


def test_dist_loss_resizes_the_label_to_a_feature_map_by_nearest():
    student, teacher = _random((2, 3, 2, 3), 0), _random((2, 3, 2, 3), 1)
    label = np.zeros((2, 4, 6), dtype='int64')
    label[0, 0:2, 0:2] = 255  # covers the nearest source of feature pixel (0, 0, 0)
    loss = DISTLoss()(_tensor(student), _tensor(teacher), _tensor(label))
    expected = _np_dist(student, teacher, label=label[:, ::2, ::2])
    np.testing.assert_allclose(loss.numpy(), expected, atol=TOLERANCE)


def test_dist_loss_on_classification_logits_matches_numpy():
    """(N, C) logits: the images are the rows; a sample labelled ignore_index is left out."""
    student, teacher = _random((7, 10), 0), _random((7, 10), 1) * 3
    label = np.array([0, 255, 3, 4, 9, 255, 1], dtype='int64')
    loss = DISTLoss(tau=4.0, beta=2.0, gamma=2.0)(
        _tensor(student), _tensor(teacher), _tensor(label)
    )
    expected = _np_dist(student, teacher, tau=4.0, beta=2.0, gamma=2.0, label=label)
    np.testing.assert_allclose(loss.numpy(), expected, atol=TOLERANCE)
    assert abs(float(loss) - _np_dist(student, teacher, tau=4.0, beta=2.0, gamma=2.0)) > 1e-3


def test_dist_loss_is_zero_when_the_student_is_the_teacher():
    teacher = _random(SHAPE, 1)
    assert abs(float(DISTLoss()(_tensor(teacher), _tensor(teacher)))) < 1e-5


def _inter_class_gradient(student, teacher):
    """The student's gradient from DIST's inter-class term alone (gamma 0), and its value."""
    student = _tensor(student, True)
    loss = DISTLoss(beta=1.0, gamma=0.0)(student, _tensor(teacher))
    loss.backward()
    return student.grad.numpy(), float(loss)


def test_dist_inter_class_term_of_two_classes_sends_no_gradient_spike():
    """With two classes a row's Pearson correlation is a step (the sign agreement), whose
    epsilon-sized denominator spikes the gradient where the student's p crosses 1/2: a
    pixel whose logits differ by 1e-7 would get about 1e5. The term keeps its value and
    sends nothing."""
    student, teacher = _random((2, 2, 4, 6), 0), _random((2, 2, 4, 6), 1) * 3
    student[0, :, 1, 2] = [0.3, 0.3 + 1e-7]
    gradient, value = _inter_class_gradient(student, teacher)
    assert np.abs(gradient).max() == 0
    np.testing.assert_allclose(value, _np_dist(student, teacher, gamma=0.0), atol=TOLERANCE)
    # With more classes a row's correlation varies smoothly, and the term does send one.
    three_classes, _ = _inter_class_gradient(_random(SHAPE, 0), _random(SHAPE, 1))
    assert np.abs(three_classes).sum() > 0


@pytest.mark.parametrize(
    'student_shape, teacher_shape, scale, pool, window',
    [
        ((2, 3, 4, 6), (2, 5, 4, 6), 0.5, 'avg', (2, 3)),  # channels differ
        ((2, 4, 8, 8), (2, 4, 8, 8), 0.25, 'max', (2, 2)),
        ((2, 3, 5, 7), (2, 6, 5, 7), 0.4, 'avg', (2, 3)),  # partial last windows
        ((2, 2, 4, 4), (2, 2, 4, 4), 0.25, 'avg', (1, 1)),  # every pixel a node
    ],
)
def test_pairwise_affinity_loss_matches_numpy(student_shape, teacher_shape, scale, pool, window):
    student, teacher = _random(student_shape, 0), _random(teacher_shape, 1)
    loss = PairwiseAffinityLoss(scale=scale, pool=pool)(_tensor(student), _tensor(teacher))
    expected = _np_pairwise(student, teacher, window, pool)
    np.testing.assert_allclose(loss.numpy(), expected, atol=TOLERANCE)


def test_pairwise_affinity_loss_resizes_the_student():
    student, teacher = _random((2, 3, 2, 3), 0), _random((2, 8, 4, 6), 1)
    loss = PairwiseAffinityLoss(scale=0.5)(_tensor(student), _tensor(teacher))
    expected = _np_pairwise(_np_bilinear_half_pixel(student, 4, 6), teacher, (2, 3))
    np.testing.assert_allclose(loss.numpy(), expected, atol=TOLERANCE)


@pytest.mark.parametrize('kwargs', [{'scale': 0}, {'scale': 1.5}, {'pool': 'median'}])
def test_pairwise_affinity_loss_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match='PairwiseAffinityLoss'):
        PairwiseAffinityLoss(**kwargs)


# ---- resize path: student half the teacher's spatial size ----


@pytest.mark.parametrize(
    'loss_layer, reference',
    [
        (KLDivergenceLoss(temperature=2.0), lambda s, t: _np_kl(s, t, 2.0, 2.0)),
        (ChannelWiseDistillLoss(tau=4.0), lambda s, t: _np_channel_wise(s, t, 4.0)),
        (L2Loss(), lambda s, t: ((s - t) ** 2).mean()),
        (DISTLoss(tau=2.0), lambda s, t: _np_dist(s, t, tau=2.0)),
    ],
)
def test_student_is_resized_to_teacher(loss_layer, reference):
    n, c, h, w = SHAPE
    student, teacher = _random((n, c, h // 2, w // 2), 0), _random(SHAPE, 1)
    loss = loss_layer(_tensor(student), _tensor(teacher))
    expected = reference(_np_bilinear_half_pixel(student, h, w), teacher)
    np.testing.assert_allclose(loss.numpy(), expected, atol=TOLERANCE)


# ---- channel mismatch ----


@pytest.mark.parametrize(
    'loss_layer', [KLDivergenceLoss(), ChannelWiseDistillLoss(), L2Loss(), DISTLoss()]
)
def test_channel_mismatch_raises(loss_layer):
    student_shape, teacher_shape = [2, 3, 4, 6], [2, 5, 4, 6]
    with pytest.raises(ValueError) as error:
        loss_layer(_tensor(_random(student_shape, 0)), _tensor(_random(teacher_shape, 1)))
    assert str(student_shape) in str(error.value)
    assert str(teacher_shape) in str(error.value)


def test_fsp_channel_mismatch_raises():
    student = [_tensor(_random(s, 0)) for s in ([2, 3, 4, 5], [2, 6, 4, 5])]
    teacher = [_tensor(_random(s, 1)) for s in ([2, 3, 4, 5], [2, 7, 4, 5])]
    with pytest.raises(ValueError) as error:
        FSPLoss()(student, teacher)
    for shape in ([2, 6, 4, 5], [2, 7, 4, 5]):
        assert str(shape) in str(error.value)


# ---- gradients: student learns, teacher is a constant ----


def _pair_inputs(requires_grad):
    return (_tensor(_random(SHAPE, 0), requires_grad), _tensor(_random(SHAPE, 1), requires_grad))


def _fsp_inputs(requires_grad):
    return (
        [
            _tensor(_random((2, 3, 4, 5), 0), requires_grad),
            _tensor(_random((2, 6, 4, 5), 1), requires_grad),
        ],
        [
            _tensor(_random((2, 3, 4, 5), 2), requires_grad),
            _tensor(_random((2, 6, 4, 5), 3), requires_grad),
        ],
    )


@pytest.mark.parametrize(
    'loss_layer, make_inputs',
    [
        (KLDivergenceLoss(student_temperature=2.0, teacher_temperature=3.0), _pair_inputs),
        (ChannelWiseDistillLoss(tau=4.0), _pair_inputs),
        (L2Loss(), _pair_inputs),
        (FSPLoss(), _fsp_inputs),
        (DISTLoss(tau=2.0), _pair_inputs),
        (PairwiseAffinityLoss(scale=0.5), _pair_inputs),
    ],
)
def test_gradient_reaches_student_only(loss_layer, make_inputs):
    student, teacher = make_inputs(requires_grad=True)
    loss_layer(student, teacher).backward()
    for tensor in student if isinstance(student, list) else [student]:
        assert tensor.grad is not None
        assert np.abs(tensor.grad.numpy()).sum() > 0
    for tensor in teacher if isinstance(teacher, list) else [teacher]:
        assert tensor.grad is None


def _degenerate_student(case):
    """SHAPE logits where one pixel's classes are equal (a constant row: zero spread), or
    one pixel is all zeros (a zero vector to normalise)."""
    student = _random(SHAPE, 4)
    student[0, :, 1, 2] = 0.7 if case == 'equal classes' else 0.0
    return student


@pytest.mark.parametrize(
    'loss_layer, case, ignored',
    [
        (DISTLoss(tau=2.0), 'equal classes', False),
        (DISTLoss(), None, True),
        (PairwiseAffinityLoss(scale=1 / 6), 'zero vector', False),  # every pixel a node
        (KLDivergenceLoss(standardize=True), 'equal classes', False),
    ],
)
def test_a_degenerate_pixel_gives_finite_gradients(loss_layer, case, ignored):
    """A pixel with no spread over its classes, an all-zero feature vector, or an ignored
    pixel (whose rows the relations drop to zeros) must not turn the student's gradient
    into NaN, as sqrt at 0 would; the loss itself still matches its value nearby."""
    student = _tensor(_degenerate_student(case) if case else _random(SHAPE, 4), True)
    teacher = _tensor(_random(SHAPE, 5))
    args = (student, teacher)
    if ignored:
        label = np.zeros((SHAPE[0], SHAPE[2], SHAPE[3]), dtype='int64')
        label[0, 1, 2] = 255
        args += (paddle.to_tensor(label),)
    loss = loss_layer(*args)
    loss.backward()
    assert np.isfinite(float(loss))
    assert np.isfinite(student.grad.numpy()).all()
    assert np.abs(student.grad.numpy()).sum() > 0


def test_dkd_loss_on_classification_logits_matches_numpy():
    """(N, C) logits: the images are the rows; a sample labelled ignore_index is left out."""
    student, teacher = _random((7, 10), 0), _random((7, 10), 1) * 3
    label = np.array([0, 255, 3, 4, 9, 255, 1], dtype='int64')
    loss = DKDLoss(alpha=0.7, beta=3.0, temperature=2.0)(
        _tensor(student), _tensor(teacher), _tensor(label)
    )
    np.testing.assert_allclose(
        loss.numpy(), _np_dkd(student, teacher, label, 0.7, 3.0, 2.0), rtol=TOLERANCE
    )


def test_dkd_loss_on_segmentation_maps_matches_numpy():
    student, teacher = _random(SHAPE, 0), _random(SHAPE, 1) * 2
    n, _, h, w = SHAPE
    label = np.random.RandomState(2).randint(0, 3, size=(n, h, w))
    label[0, :2] = 255
    loss = DKDLoss()(_tensor(student), _tensor(teacher), _tensor(label.astype('int64')))
    np.testing.assert_allclose(
        loss.numpy(), _np_dkd(student, teacher, label, 1.0, 8.0, 4.0), rtol=TOLERANCE
    )


def test_dkd_loss_decouples_kd():
    """Classic KD is TCKD + (1 - teacher's p_target) * NCKD, per row: with the teacher's
    non-target mass as the NCKD weight, DKD is KL, row by row."""
    student, teacher = _random((5, 4), 0), _random((5, 4), 1) * 3
    label = np.array([0, 1, 2, 3, 1], dtype='int64')
    p_target = np.exp(_np_log_softmax(teacher / 2.0, axis=1))[np.arange(5), label]
    rows = [
        DKDLoss(alpha=1.0, beta=1 - p_target[i], temperature=2.0)(
            _tensor(student[i : i + 1]), _tensor(teacher[i : i + 1]), _tensor(label[i : i + 1])
        )
        for i in range(5)
    ]
    np.testing.assert_allclose(
        np.mean([float(row) for row in rows]), _np_kl(student, teacher, 2.0, 2.0), rtol=TOLERANCE
    )


def test_dkd_loss_gradient_reaches_student_only():
    student, teacher = _pair_inputs(requires_grad=True)
    label = _tensor(np.random.RandomState(2).randint(0, 3, size=(2, 4, 6)).astype('int64'))
    DKDLoss()(student, teacher, label).backward()
    assert np.abs(student.grad.numpy()).sum() > 0 and teacher.grad is None


def test_our_losses_are_registered_under_names_of_their_own():
    from paddleseg.cvlibs import manager
    from paddleseg.models.losses.kl_loss import KLLoss as PaddleSegKLLoss

    for loss_class in (
        KLDivergenceLoss,
        ChannelWiseDistillLoss,
        L2Loss,
        FSPLoss,
        DISTLoss,
        DKDLoss,
        PairwiseAffinityLoss,
    ):
        assert manager.LOSSES[loss_class.__name__] is loss_class
    assert manager.LOSSES['KLLoss'] is PaddleSegKLLoss  # paddleseg's name keeps its meaning


# ---- cost at deploy-like sizes: no kernel that grows faster than the map ----


def _pair_inputs_of(shape, seed):
    return (_tensor(_random(shape, seed), requires_grad=True), _tensor(_random(shape, seed + 1)))


@pytest.mark.parametrize(
    'make_loss',
    [
        lambda: KLDivergenceLoss(temperature=2.0),
        lambda: ChannelWiseDistillLoss(tau=4.0),
        L2Loss,
        lambda: DISTLoss(tau=2.0),
        DKDLoss,
        lambda: PairwiseAffinityLoss(scale=0.125),
    ],
    ids=[
        'KLDivergenceLoss',
        'ChannelWiseDistillLoss',
        'L2Loss',
        'DISTLoss',
        'DKDLoss',
        'PairwiseAffinityLoss',
    ],
)
def test_every_map_loss_is_cheap_at_512x512(make_loss):
    """Forward and backward over a batch of two 512x512 maps take a fraction of a second: a
    guard against kernels quadratic in the map's length (paddle's CPU log_softmax over H*W
    took tens of seconds here), not a speed target."""
    import time

    loss_layer = make_loss()
    student, teacher = _pair_inputs_of((2, 2, 512, 512), seed=0)
    label = _tensor(np.random.RandomState(2).randint(0, 2, size=(2, 512, 512)).astype('int64'))
    start = time.perf_counter()
    if 'label' in loss_layer.forward.__code__.co_varnames:
        loss = loss_layer(student, teacher, label)
    else:
        loss = loss_layer(student, teacher)
    loss.backward()
    assert time.perf_counter() - start < 1.0
