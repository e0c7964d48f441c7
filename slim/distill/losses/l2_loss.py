import paddle
import paddle.nn as nn
from paddleseg.cvlibs import manager

from ._shapes import align_student_to_teacher


@manager.LOSSES.add_component
class L2Loss(nn.Layer):
    """Mean squared error between student and teacher feature maps.

    Corresponds to PaddleSlim's ``l2_loss``.
    """

    def forward(self, student_feat, teacher_feat, label=None):
        """
        Args:
            student_feat (Tensor): (N, C, h, w), resized to the teacher's size if needed.
            teacher_feat (Tensor): (N, C, H, W), treated as a constant.
            label: Unused; accepted so callers can pass labels uniformly.
        """
        teacher_feat = teacher_feat.detach()
        student_feat = align_student_to_teacher(student_feat, teacher_feat)
        return paddle.mean(paddle.square(student_feat - teacher_feat))
