from typing import Tuple

import paddle
import paddle.nn as nn
from paddleseg.cvlibs import manager

from ._shapes import resize_spatial


def _fsp_matrix(first_feat, second_feat):
    """Flow of Solution Procedure matrix: (N, C1, HW) @ (N, HW, C2) / HW -> (N, C1, C2)."""
    second_feat = resize_spatial(second_feat, first_feat.shape[2:])
    batch_size, first_channels, height, width = first_feat.shape
    num_positions = height * width
    first_flat = first_feat.reshape([batch_size, first_channels, -1])
    second_flat = second_feat.reshape([batch_size, second_feat.shape[1], -1])
    return paddle.matmul(first_flat, second_flat, transpose_y=True) / num_positions


@manager.LOSSES.add_component
class FSPLoss(nn.Layer):
    """Flow of Solution Procedure (FSP) distillation loss.

    Yim et al., "A Gift from Knowledge Distillation", CVPR 2017; corresponds
    to PaddleSlim's ``fsp_loss``. Each network contributes a pair of feature
    maps from two layers; the student's FSP matrix (channel-to-channel
    correlation between the two layers) is matched to the teacher's by MSE.
    Only the channel counts must agree between networks: the FSP matrix does
    not depend on the spatial size.
    """

    needs_spatial = True  # [N, C] tensors are refused when the config is read (probe)

    # The annotation tells distill_features to give two layers per model.
    def forward(
        self,
        student: Tuple[paddle.Tensor, paddle.Tensor],
        teacher: Tuple[paddle.Tensor, paddle.Tensor],
    ):
        """
        Args:
            student: Two student feature maps (N, C1, H, W), (N, C2, H', W').
            teacher: Two teacher feature maps with the same C1, C2, treated as constants.
        """
        student_first, student_second = student
        teacher_first, teacher_second = [feat.detach() for feat in teacher]
        if (
            student_first.shape[1] != teacher_first.shape[1]
            or student_second.shape[1] != teacher_second.shape[1]
        ):
            raise ValueError(
                f'FSP channel counts differ: student shapes {student_first.shape} and {student_second.shape}, teacher '
                f'shapes {teacher_first.shape} and {teacher_second.shape}'
            )
        student_fsp = _fsp_matrix(student_first, student_second)
        teacher_fsp = _fsp_matrix(teacher_first, teacher_second)
        return paddle.mean(paddle.square(student_fsp - teacher_fsp))
