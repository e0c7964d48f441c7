import paddle
import paddle.nn as nn
from paddleseg.cvlibs import manager

from ._shapes import student_and_constant_teacher


@manager.LOSSES.add_component
class L2Loss(nn.Layer):
    """Mean squared error between student and teacher feature maps.

    Corresponds to PaddleSlim's ``l2_loss``.
    """

    def forward(self, student_feat, teacher_feat, label=None):
        """label: unused; accepted so callers can pass labels uniformly."""
        student_feat, teacher_feat = student_and_constant_teacher(student_feat, teacher_feat)
        return paddle.mean(paddle.square(student_feat - teacher_feat))
