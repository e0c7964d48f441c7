import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager

from ._arguments import require_positive
from ._shapes import class_rows, label_like, safe_sqrt, student_and_constant_teacher

_EPS = 1e-8


def _mean_pearson(first, second, weight, axis):
    """Pearson correlations of `first` and `second` (P pixels x C classes) along `axis`,
    averaged: axis=1 gives one per pixel (mean over the kept pixels), axis=0 one per
    class (over the kept pixels only; mean over classes). weight (P, 1): 1 keeps a pixel,
    0 drops it."""
    weight = paddle.expand_as(weight, first)
    count = paddle.sum(weight, axis=axis, keepdim=True)
    safe_count = paddle.clip(count, min=1.0)
    centred = []
    for values in (first, second):
        mean = paddle.sum(values * weight, axis=axis, keepdim=True) / safe_count
        centred.append((values - mean) * weight)
    covariance = paddle.sum(centred[0] * centred[1], axis=axis)
    norms = safe_sqrt(paddle.sum(paddle.square(centred[0]), axis=axis)) * safe_sqrt(
        paddle.sum(paddle.square(centred[1]), axis=axis)
    )
    correlation = covariance / (norms + _EPS)
    if axis == 0:  # one correlation per class: every class counts
        return paddle.mean(correlation)
    row_weight = weight[:, 0]
    return paddle.sum(correlation * row_weight) / paddle.clip(paddle.sum(row_weight), min=1.0)


@manager.LOSSES.add_component
class DISTLoss(nn.Layer):
    """DIST: distillation by relations between class probabilities.

    Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022, in its
    classification form ((N, C) logits: the N images are the rows) and its segmentation
    form ((N, C, H, W): the N*H*W pixels are the rows of an (N*H*W, C) matrix). Every row
    becomes class probabilities softmax(x / tau). Instead of matching the
    probabilities exactly (KL), the student matches their relations, which tolerates a
    teacher far stronger than the student:

    - inter-class: for each pixel, 1 - Pearson(student row, teacher row): the ranking of
      the classes at that pixel; mean over pixels;
    - intra-class: for each class, 1 - Pearson(student column, teacher column): where,
      over the batch's pixels, that class is more or less likely; mean over classes.

    loss = tau^2 * (beta * inter + gamma * intra).

    With two classes a pixel's row holds (p, 1 - p), whose Pearson correlation with the
    teacher's is +1 or -1, their sign agreement: a step in p. Its true gradient is zero,
    but where the student's p crosses 1/2 the epsilon in the denominator turns it into a
    spike of up to 1/epsilon, which can stall a student's training (docs/recipes.md).
    So with two classes the inter-class term sends no gradient: its value still counts,
    and the intra-class term carries the signal.

    Rows whose label is ignore_index (when the term is given the label) are left out
    of both relations: they are not rows of the inter-class mean and do not enter the
    intra-class columns (means and correlations are over the kept rows only). A
    segmentation label is resized to the maps' size by nearest neighbour. The student map
    is resized to the teacher's spatial size; channel counts must match.

    Args:
        tau (float): Softmax temperature.
        beta (float): Weight of the inter-class relation.
        gamma (float): Weight of the intra-class relation.
        ignore_index (int): Label value whose pixels are left out.
    """

    def __init__(self, tau=1.0, beta=1.0, gamma=1.0, ignore_index=255):
        super().__init__()
        require_positive('DISTLoss', tau=tau)
        self.tau = tau
        self.beta = beta
        self.gamma = gamma
        self.ignore_index = ignore_index

    def forward(self, student, teacher, label=None):
        """student, teacher: logits (N, C) or logits / feature maps (N, C, H, W); label
        (optional): (N,) or (N, H', W') integer labels."""
        student_map, teacher_map = student_and_constant_teacher(student, teacher)
        student_probs, teacher_probs = (
            F.softmax(class_rows(feature) / self.tau, axis=1)
            for feature in (student_map, teacher_map)
        )
        if label is None:
            weight = paddle.ones([student_probs.shape[0], 1], dtype=student_probs.dtype)
        else:
            if teacher_map.ndim == 4:
                label = label_like(label, teacher_map)
            weight = (label != self.ignore_index).astype(student_probs.dtype).reshape([-1, 1])
        inter_student = student_probs.detach() if student_probs.shape[1] == 2 else student_probs
        inter = 1 - _mean_pearson(inter_student, teacher_probs, weight, axis=1)
        intra = 1 - _mean_pearson(student_probs, teacher_probs, weight, axis=0)
        return self.tau**2 * (self.beta * inter + self.gamma * intra)
