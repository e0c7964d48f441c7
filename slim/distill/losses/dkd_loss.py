import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager

from ._arguments import require_positive
from ._shapes import (
    class_rows,
    kl_divergence,
    label_like,
    log_softmax,
    masked_mean,
    student_and_constant_teacher,
)

# Subtracted from the target class's logit to leave it out of a softmax over the others.
_MASKED = 1000.0


@manager.LOSSES.add_component
class DKDLoss(nn.Layer):
    """Decoupled knowledge distillation: Zhao et al., "Decoupled Knowledge Distillation",
    CVPR 2022 (MMRazor's DKDLoss).

    The soft-label KL splits into two parts, each its own KL over temperature-T softmaxes:

    - TCKD (target class): the binary distribution (p_target, 1 - p_target);
    - NCKD (non-target classes): the distribution among the other classes, renormalised.

    Classic KD equals TCKD + (1 - p_target of the teacher) * NCKD, so the "dark knowledge"
    among the wrong classes fades exactly where the teacher is confident, which on easy
    data is almost everywhere. DKD weighs the two parts freely:
    loss = T^2 * (alpha * TCKD + beta * NCKD), mean over the rows.

    Rows: the N images of (N, C) logits, or the N*H*W pixels of (N, C, H, W) logits (the
    label resized to the maps by nearest neighbour). The label says which class is the
    target, so the term needs it; rows labelled ignore_index are left out.

    Args:
        alpha (float): Weight of TCKD.
        beta (float): Weight of NCKD (the paper: 8 on CIFAR-100, 0.5 on ImageNet).
        temperature (float): Softmax temperature of both models.
        ignore_index (int): Label value whose rows are left out.
    """

    def __init__(self, alpha=1.0, beta=8.0, temperature=4.0, ignore_index=255):
        super().__init__()
        require_positive('DKDLoss', temperature=temperature)
        self.alpha = alpha
        self.beta = beta
        self.temperature = temperature
        self.ignore_index = ignore_index

    def forward(self, student, teacher, label):
        """student, teacher: logits (N, C) or (N, C, H, W); label: (N,) or (N, H', W')
        integer labels."""
        student_logits, teacher_logits = student_and_constant_teacher(student, teacher)
        channels = teacher_logits.shape[1]
        if teacher_logits.ndim == 4:
            label = label_like(label, teacher_logits)
        student_rows, teacher_rows = (
            class_rows(logits).astype('float32') / self.temperature
            for logits in (student_logits, teacher_logits)
        )
        label = label.reshape([-1]).astype('int64')
        valid = (label != self.ignore_index).astype('float32')
        target = F.one_hot(
            paddle.where(label == self.ignore_index, paddle.zeros_like(label), label), channels
        )

        def log_binary(logits):  # log (p_target, 1 - p_target), from logsumexps
            total = paddle.logsumexp(logits, axis=1)
            log_target = paddle.sum(logits * target, axis=1) - total
            log_others = paddle.logsumexp(logits - _MASKED * target, axis=1) - total
            return paddle.stack([log_target, log_others], axis=1)

        tckd = kl_divergence(log_binary(teacher_rows), log_binary(student_rows))
        nckd = kl_divergence(
            log_softmax(teacher_rows - _MASKED * target, axis=1),
            log_softmax(student_rows - _MASKED * target, axis=1),
        )
        return masked_mean(self.alpha * tckd + self.beta * nckd, valid) * self.temperature**2
