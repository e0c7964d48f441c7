"""Distillation losses; importing this package registers them in ``manager.LOSSES``."""

from .channel_wise_loss import ChannelWiseDistillLoss
from .dist_loss import DISTLoss
from .dkd_loss import DKDLoss
from .fsp_loss import FSPLoss
from .kl_loss import KLDivergenceLoss
from .l2_loss import L2Loss
from .pairwise_loss import PairwiseAffinityLoss

__all__ = [
    'KLDivergenceLoss',
    'ChannelWiseDistillLoss',
    'L2Loss',
    'FSPLoss',
    'DISTLoss',
    'DKDLoss',
    'PairwiseAffinityLoss',
]
