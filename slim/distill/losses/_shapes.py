"""Shape and reduction helpers shared by the distillation losses."""

import paddle
import paddle.nn.functional as F


def resize_spatial(feature, height_width):
    """Bilinearly resize an NCHW tensor to ``height_width``; no-op if it already matches."""
    height_width = list(height_width)
    if list(feature.shape[2:]) == height_width:
        return feature
    return F.interpolate(feature, size=height_width, mode='bilinear', align_corners=False)


def student_and_constant_teacher(student, teacher):
    """(student NCHW resized to the teacher's H, W; teacher detached): what every
    student-vs-teacher loss compares, so each takes (N, C, h, w) and (N, C, H, W).

    Channels cannot be reconciled by resizing (they need a learned adapter),
    so a channel mismatch is an error.
    """
    if student.shape[1] != teacher.shape[1]:
        raise ValueError(
            f'Student and teacher channel counts differ: student shape {student.shape}, teacher shape {teacher.shape}'
        )
    return resize_spatial(student, teacher.shape[2:]), teacher.detach()


def class_rows(logits):
    """(N, C) as it is, or (N, C, H, W) as (N*H*W, C): one row of class scores per image or
    pixel, in the order of label.reshape([-1])."""
    if logits.ndim == 2:
        return logits
    return logits.transpose([0, 2, 3, 1]).reshape([-1, logits.shape[1]])


def label_like(label, feature):
    """An (N, H', W') integer label at the (H, W) of an NCHW feature map, by nearest
    neighbour (a label has no values between its classes)."""
    label = label.reshape([label.shape[0], -1, *label.shape[-2:]])[:, 0]  # (N, 1, H, W) too
    if list(label.shape[1:]) == list(feature.shape[2:]):
        return label
    resized = F.interpolate(
        label.unsqueeze(1).astype('float32'), size=feature.shape[2:], mode='nearest'
    )
    return resized.squeeze(1).astype(label.dtype)


def log_softmax(values, axis):
    """log softmax along `axis`, as values - logsumexp: paddle's CPU `log_softmax` kernel
    is quadratic in the axis length, which over a map's H*W pixels (channel-wise
    distillation) costs more than the whole training step (docs/speed.md)."""
    return values - paddle.logsumexp(values, axis=axis, keepdim=True)


def kl_divergence(teacher_log_prob, student_log_prob, axis=1):
    """KL(teacher || student) of log-probabilities over `axis` (by default the classes)."""
    return paddle.sum(
        paddle.exp(teacher_log_prob) * (teacher_log_prob - student_log_prob), axis=axis
    )


def masked_mean(values, valid):
    """The mean of values where valid is 1. Clamping the count to 1 makes an all-ignored
    batch yield 0 while keeping the student in the graph."""
    return paddle.sum(values * valid) / paddle.clip(paddle.sum(valid), min=1.0)


def safe_sqrt(values):
    """paddle.sqrt(values), values >= 0, with a gradient of 0 instead of NaN where a value
    is 0 (sqrt's derivative is infinite there, and infinity times the 0 that flows back
    through a constant row or an all-zero vector is NaN, which would reach the weights)."""
    positive = values > 0
    roots = paddle.sqrt(paddle.where(positive, values, paddle.ones_like(values)))
    return paddle.where(positive, roots, paddle.zeros_like(values))


def z_score(logits, epsilon=1e-7):
    """Logits shifted and scaled to mean 0 and standard deviation 1 over axis 1 (the
    classes), per image or pixel."""
    centred = logits - paddle.mean(logits, axis=1, keepdim=True)
    std = safe_sqrt(paddle.mean(paddle.square(centred), axis=1, keepdim=True))
    return centred / (std + epsilon)
