import paddle
import paddle.nn as nn
from paddleseg.cvlibs import manager

from ._shapes import student_and_constant_teacher


@manager.LOSSES.add_component
class L2Loss(nn.Layer):
    """Mean squared error between student and teacher feature maps.

    Corresponds to PaddleSlim's ``l2_loss``.
    """

    def forward(self, student, teacher):
        student_feat, teacher_feat = student_and_constant_teacher(student, teacher)
        return paddle.mean(paddle.square(student_feat - teacher_feat))
