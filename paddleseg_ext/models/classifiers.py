"""paddle.vision.models classifiers as registered components: `num_classes` and
`in_channels` from YAML, outputs in paddleseg's form (a list whose first element is the
main logits, here [N, num_classes]), so the engine, evaluation, teacher and distillation
terms take them as they take a segmentation model."""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.vision.models import MobileNetV1 as VisionMobileNetV1
from paddle.vision.models import ResNet as VisionResNet
from paddle.vision.models.mobilenetv1 import ConvNormActivation
from paddle.vision.models.resnet import BasicBlock, BottleneckBlock
from paddleseg.cvlibs import manager

from paddleseg_ext.errors import UserInputError
from paddleseg_ext.pretrained import load_weights

_RESNET_BLOCKS = {18: (BasicBlock, [2, 2, 2, 2]), 50: (BottleneckBlock, [3, 4, 6, 3])}


class _Classifier(nn.Layer):
    """`net` (a paddle.vision classifier) returning [logits]. `in_channels` is public: the
    distillation probe feeds the model a dummy input with that many channels."""

    def __init__(self, net, in_channels, pretrained):
        super().__init__()
        self.net = net
        self.in_channels = in_channels
        if pretrained:
            load_weights(self, pretrained)

    def forward(self, x):
        return [self.net(x)]


def _check_positive(name, **values):
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserInputError(f'model {name}: {key} must be a positive integer, got {value!r}')


class _ResNet(VisionResNet):
    """paddle.vision's ResNet (its blocks, stages and forward) with `in_channels` input
    channels and `width` stem channels, stages width x (1, 2, 4, 8); paddle.vision fixes
    3 and 64 (the published network, which width 64 and 3 channels rebuild exactly)."""

    def __init__(self, depth, num_classes, in_channels, width):
        nn.Layer.__init__(self)
        block, layers = _RESNET_BLOCKS[depth]
        self.num_classes = num_classes
        self.with_pool = True
        self._norm_layer = nn.BatchNorm2D
        self.groups = 1
        self.base_width = 64  # bottleneck inner width = its stage width, as published
        self.dilation = 1
        self.inplanes = width
        self.conv1 = nn.Conv2D(
            in_channels, width, kernel_size=7, stride=2, padding=3, bias_attr=False
        )
        self.bn1 = nn.BatchNorm2D(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2D((1, 1))
        self.fc = nn.Linear(8 * width * block.expansion, num_classes)


@manager.MODELS.add_component
class ResNet50(_Classifier):
    """paddle.vision's resnet50 (bottleneck blocks 3-4-6-3); width: stem channels (64 as
    published)."""

    def __init__(self, num_classes, in_channels=3, width=64, pretrained=None):
        _check_positive('ResNet50', num_classes=num_classes, in_channels=in_channels, width=width)
        super().__init__(_ResNet(50, num_classes, in_channels, width), in_channels, pretrained)


@manager.MODELS.add_component
class ResNet18(_Classifier):
    """paddle.vision's resnet18 (basic blocks 2-2-2-2); width as ResNet50's."""

    def __init__(self, num_classes, in_channels=3, width=64, pretrained=None):
        _check_positive('ResNet18', num_classes=num_classes, in_channels=in_channels, width=width)
        super().__init__(_ResNet(18, num_classes, in_channels, width), in_channels, pretrained)


class _DepthwiseConv2D(nn.Conv2D):
    """A depthwise convolution (groups == channels, no bias): on CPU computed as an unfold and
    a per-channel weighted sum, the same arithmetic as paddle's grouped convolution, whose
    CPU kernel loops over samples x channels and dominates MobileNetV1's step time on the
    wide, small maps of its deep layers. Same parameters, so checkpoints are unchanged.
    Traced into a program (export, a compiled teacher) it stays paddle's convolution, which
    keeps the program's sizes dynamic and leaves the kernel to Paddle Inference."""

    def forward(self, x):
        padding = self._padding
        if isinstance(padding, int):
            padding = [padding, padding]
        if (
            not paddle.in_dynamic_mode()
            or not paddle.get_device().startswith('cpu')
            or self._data_format != 'NCHW'
            or self._padding_mode != 'zeros'
            or len(padding) != 2
        ):
            return super().forward(x)
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (dh, dw), (ph, pw) = (
            self._kernel_size,
            self._stride,
            self._dilation,
            padding,
        )
        out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        columns = F.unfold(
            x, [kh, kw], strides=[sh, sw], paddings=[ph, pw], dilations=[dh, dw]
        ).reshape([n, c, kh * kw, out_h * out_w])
        out = (columns * self.weight.reshape([1, c, kh * kw, 1])).sum(axis=2)
        return out.reshape([n, c, out_h, out_w])


def _use_depthwise_kernel(net):
    """Swaps each depthwise nn.Conv2D (groups == in == out channels, no bias) of net for
    _DepthwiseConv2D, keeping its parameters."""
    for layer in net.sublayers():
        if (
            type(layer) is nn.Conv2D
            and layer._groups > 1
            and layer._groups == layer._in_channels == layer._out_channels
            and layer.bias is None
        ):
            layer.__class__ = _DepthwiseConv2D


@manager.MODELS.add_component
class MobileNetV1(_Classifier):
    """paddle.vision's mobilenet_v1; scale: the width multiplier (1.0 as published)."""

    def __init__(self, num_classes, in_channels=3, scale=1.0, pretrained=None):
        _check_positive('MobileNetV1', num_classes=num_classes, in_channels=in_channels)
        net = VisionMobileNetV1(scale=scale, num_classes=num_classes)
        if in_channels != 3:
            net.conv1 = ConvNormActivation(
                in_channels, int(32 * scale), kernel_size=3, stride=2, padding=1
            )
        _use_depthwise_kernel(net)
        super().__init__(net, in_channels, pretrained)
