"""Connectors: trainable layers that map a student tensor to the teacher's shape.

Chosen per feature term by `connector: {type: ...}` (registered in CONNECTORS) or
`align: auto`, the shorthand for ConvBNConnector where the channel counts differ. They train
with the student and are saved beside it in checkpoints, never in its weights file.
"""

import paddle.nn as nn
from paddleseg.cvlibs.manager import ComponentManager

CONNECTORS = ComponentManager('CONNECTORS')


@CONNECTORS.add_component
class ConvBNConnector(nn.Layer):
    """1x1 conv + BN on the student side (the usual CWD / FitNets connector)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size=1, bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels)

    def forward(self, x):
        return self.bn(self.conv(x))


@CONNECTORS.add_component
class ConvConnector(nn.Layer):
    """A 1x1 conv alone (FitNets' regressor), for features that should keep their scale."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size=1)

    def forward(self, x):
        return self.conv(x)


def build_connector(spec, in_channels, out_channels):
    """A connector from a term's spec: 'auto' or {type: T, other args}."""
    cfg = {'type': 'ConvBNConnector'} if spec == 'auto' else dict(spec)
    return CONNECTORS[cfg.pop('type')](in_channels, out_channels, **cfg)
