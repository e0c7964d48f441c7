import paddle
import paddle.nn as nn
from paddleseg.cvlibs import manager

from ._arguments import require_positive
from ._shapes import kl_divergence, log_softmax, masked_mean, student_and_constant_teacher, z_score


@manager.LOSSES.add_component
class KLDivergenceLoss(nn.Layer):
    """Per-pixel KL divergence between teacher and student class distributions: summed over
    the classes, averaged over the pixels (or images).

    PaddleSeg's own `KLLoss` (still registered under that name, with its meaning) averages
    over the classes too, so for C classes its `coef` is worth 1/C of this loss's; this one
    adds separate temperatures, the label's ignore_index and logit standardisation.

    Hinton et al., "Distilling the Knowledge in a Neural Network" (2015), with
    separate student/teacher temperatures as in PaddleSlim's
    ``soft_label_loss``. The loss is scaled by ``Ts * Tt`` (``T^2`` when equal)
    so gradient magnitudes stay comparable across temperatures.

    Args:
        temperature (float): Temperature used for whichever side has none of its own.
        student_temperature (float, optional): Temperature for the student logits.
        teacher_temperature (float, optional): Temperature for the teacher logits.
        ignore_index (int): Label value whose pixels are left out of the mean.
        standardize (bool): z-score both sides' logits over the classes before the
            temperature (Sun et al., "Logit Standardization in Knowledge Distillation",
            CVPR 2024), so the student matches the teacher's ranking of classes rather
            than the scale of its logits.
    """

    def __init__(
        self,
        temperature=1.0,
        student_temperature=None,
        teacher_temperature=None,
        ignore_index=255,
        standardize=False,
    ):
        super().__init__()
        self.standardize = standardize
        self.student_temperature = (
            temperature if student_temperature is None else student_temperature
        )
        self.teacher_temperature = (
            temperature if teacher_temperature is None else teacher_temperature
        )
        require_positive(
            'KLDivergenceLoss',
            student_temperature=self.student_temperature,
            teacher_temperature=self.teacher_temperature,
        )
        self.ignore_index = ignore_index

    def channel_error(self, channels):
        """Why this loss cannot compare tensors of `channels` classes, or None: the probe
        refuses such a term before training."""
        if self.standardize and channels < 3:
            return (
                f'standardize: true z-scores each pixel over its {channels} channels, which '
                f'leaves only which one is ahead (+1 or -1): a step whose gradient is zero '
                f'but for spikes where they tie, so the term teaches nothing: set '
                f'standardize: false'
            )
        return None

    def forward(self, student, teacher, label=None):
        """student, teacher: logits (N, C, ...), e.g. (N, C, H, W) per pixel or (N, C) per
        image (classification soft labels); label (optional): (N, ...) integer labels, whose
        ignore_index pixels (or samples) are left out."""
        student_logits, teacher_logits = student_and_constant_teacher(student, teacher)
        if self.standardize:
            student_logits, teacher_logits = z_score(student_logits), z_score(teacher_logits)

        teacher_log_prob = log_softmax(teacher_logits / self.teacher_temperature, axis=1)
        student_log_prob = log_softmax(student_logits / self.student_temperature, axis=1)
        pixel_kl = kl_divergence(teacher_log_prob, student_log_prob)

        if label is None:
            mean_kl = paddle.mean(pixel_kl)
        else:
            mean_kl = masked_mean(pixel_kl, (label != self.ignore_index).astype(pixel_kl.dtype))
        return mean_kl * self.student_temperature * self.teacher_temperature
