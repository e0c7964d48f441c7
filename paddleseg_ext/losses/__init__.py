"""Supervised losses paddleseg lacks; importing this registers them in ``manager.LOSSES``."""

from paddleseg_ext.losses.classification import CELoss

__all__ = ['CELoss']
