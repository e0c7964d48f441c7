import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager

from ._shapes import resize_spatial, safe_sqrt

_EPS = 1e-8


def _affinity(feature):
    """(N, C, H, W) -> (N, HW, HW): cosine similarity of every pair of pixels' C-vectors."""
    flat = feature.reshape([feature.shape[0], feature.shape[1], -1])
    unit = flat / (safe_sqrt(paddle.sum(paddle.square(flat), axis=1, keepdim=True)) + _EPS)
    return paddle.matmul(unit, unit, transpose_x=True)


@manager.LOSSES.add_component
class PairwiseAffinityLoss(nn.Layer):
    """Pair-wise (structured) distillation of a feature map or the logits.

    Liu et al., "Structured Knowledge Distillation for Semantic Segmentation", CVPR 2019:
    each map is pooled into a grid of nodes (windows of `scale` times the teacher map's
    height and width, as in the paper; the last window of a row or column may be
    partial), each node's C-vector is L2-normalised, and the affinity matrix holds the
    cosine similarity of every pair of nodes (HW x HW). The loss is the mean squared
    difference between the student's and the teacher's affinity matrices. Only the
    nodes are compared, never channels against channels, so student and teacher may have
    different channel counts (no connector needed). The student map is first resized to
    the teacher's spatial size.

    Args:
        scale (float): Pooling window as a fraction of the teacher map's size (0 < scale
            <= 1); 1 / H keeps every pixel a node. Smaller windows: more nodes, and an
            affinity matrix of (nodes)^2 entries per image.
        pool (str): 'avg' or 'max' over each window.
    """

    # Read by the shape probe: student and teacher channels need not match, and [N, C]
    # tensors (no pixels to relate) are refused when the config is read.
    channels_may_differ = True
    needs_spatial = True

    def __init__(self, scale=0.5, pool='avg'):
        super().__init__()
        if not 0 < scale <= 1:
            raise ValueError(f'PairwiseAffinityLoss scale must be in (0, 1], got {scale}')
        if pool not in ('avg', 'max'):
            raise ValueError(f"PairwiseAffinityLoss pool must be 'avg' or 'max', got {pool!r}")
        self.scale = scale
        self.pool = pool

    def _nodes(self, feature):
        window = [max(1, int(round(size * self.scale))) for size in feature.shape[2:]]
        if window == [1, 1]:
            return feature
        if self.pool == 'max':
            return F.max_pool2d(feature, window, stride=window, ceil_mode=True)
        return F.avg_pool2d(feature, window, stride=window, ceil_mode=True, exclusive=True)

    def forward(self, student, teacher):
        """student, teacher: (N, Cs, h, w) and (N, Ct, H, W); Cs and Ct may differ."""
        teacher = teacher.detach()
        student = resize_spatial(student, teacher.shape[2:])
        difference = _affinity(self._nodes(student)) - _affinity(self._nodes(teacher))
        return paddle.mean(paddle.square(difference))
