"""Cross-entropy for classification logits: paddleseg's CrossEntropyLoss takes NCHW maps."""

import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager


@manager.LOSSES.add_component
class CELoss(nn.Layer):
    """Softmax cross-entropy of [N, C] logits against [N] class ids, mean over the samples
    whose label is not ignore_index (PaddleClas's `CELoss`, without label smoothing)."""

    def __init__(self, ignore_index=255):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logit, label):
        if logit.ndim != 2:
            raise ValueError(
                f'CELoss takes [N, C] classification logits, got shape '
                f'{logit.shape}: use CrossEntropyLoss for segmentation'
            )
        return F.cross_entropy(
            logit, label.reshape([-1]).astype('int64'), ignore_index=self.ignore_index
        )
