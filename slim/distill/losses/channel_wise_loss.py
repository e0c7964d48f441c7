import paddle
import paddle.nn as nn
from paddleseg.cvlibs import manager

from ._arguments import require_positive
from ._shapes import kl_divergence, log_softmax, student_and_constant_teacher


@manager.LOSSES.add_component
class ChannelWiseDistillLoss(nn.Layer):
    """Channel-wise distillation loss.

    Shu et al., "Channel-wise Knowledge Distillation for Dense Prediction",
    ICCV 2021: each channel is turned into a distribution over spatial
    positions (softmax of x / tau over H*W) and the student matches the
    teacher's distribution by KL divergence, scaled by ``tau^2`` and averaged
    over N*C.

    Args:
        tau (float): Softmax temperature.
    """

    needs_spatial = True  # [N, C] tensors are refused when the config is read (probe)

    def __init__(self, tau=1.0):
        super().__init__()
        require_positive('ChannelWiseDistillLoss', tau=tau)
        self.tau = tau

    def forward(self, student, teacher):
        student_feat, teacher_feat = student_and_constant_teacher(student, teacher)

        batch_size, channels = teacher_feat.shape[:2]
        teacher_log_prob, student_log_prob = (
            log_softmax(feat.reshape([batch_size, channels, -1]) / self.tau, axis=2)
            for feat in (teacher_feat, student_feat)
        )
        channel_kl = kl_divergence(teacher_log_prob, student_log_prob, axis=2)
        return self.tau**2 * paddle.mean(channel_kl)
