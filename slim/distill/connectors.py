"""Align layers: map a student feature to the teacher's channel count."""
import paddle.nn as nn


class ChannelAligner(nn.Layer):
    """1x1 conv + BN on the student side (the usual CWD/FitNets connector).

    Trains with the student; saved apart from the student's weights.
    """

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size=1, bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels)

    def forward(self, x):
        return self.bn(self.conv(x))
