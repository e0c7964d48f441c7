"""PaddleSeg's val.py test-time options: --aug_eval (multi-scale and flip: the softmax
probabilities of every scale/flip, mapped back to the network input size, are averaged;
paddleseg 2.8's aug_inference averages raw logits instead) and --is_slide (sliding-window
inference: overlapping window logits averaged, paddleseg's slide_inference, which works on
paddle 2.6); the flags checked together, each mistake one line."""

import dataclasses
from typing import Optional, Sequence, Tuple

import paddle
import paddle.nn.functional as F
from paddleseg.core import infer as paddleseg_infer

from paddleseg_ext.errors import UserInputError


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
    """Test-time augmentation and sliding-window inference (PaddleSeg's val.py flags).

    aug_eval: average softmax probabilities over `scales` x flips; flips and scales are
        used only with aug_eval, as in PaddleSeg.
    is_slide: predict windows of crop_size (w, h) every stride (w, h) and average the
        overlapping logits.
    """

    aug_eval: bool = False
    scales: Sequence[float] = (1.0,)
    flip_horizontal: bool = False
    flip_vertical: bool = False
    is_slide: bool = False
    crop_size: Optional[Tuple[int, int]] = None
    stride: Optional[Tuple[int, int]] = None

    def __post_init__(self):
        scales = [self.scales] if isinstance(self.scales, (int, float)) else list(self.scales)
        if not scales or any(not scale > 0 for scale in scales):
            raise UserInputError(
                f'--scales {scales}: give one or more positive factors, e.g. --scales 0.75 1.0 1.25'
            )
        object.__setattr__(self, 'scales', tuple(float(scale) for scale in scales))
        if not self.aug_eval and (
            self.flip_horizontal or self.flip_vertical or self.scales != (1.0,)
        ):
            raise UserInputError(
                '--flip_horizontal, --flip_vertical and --scales apply with '
                '--aug_eval only: add --aug_eval'
            )
        if self.is_slide:
            for name in ('crop_size', 'stride'):
                value = getattr(self, name)
                if value is None or len(value) != 2 or min(value) <= 0:
                    raise UserInputError(
                        f'--is_slide needs --{name} W H (two positive integers), got {value}'
                    )
            if self.stride[0] > self.crop_size[0] or self.stride[1] > self.crop_size[1]:
                raise UserInputError(
                    f'--stride {list(self.stride)} is larger than --crop_size '
                    f'{list(self.crop_size)}: windows would leave pixels '
                    f'unpredicted; use a stride <= crop size'
                )
            object.__setattr__(self, 'crop_size', tuple(int(v) for v in self.crop_size))
            object.__setattr__(self, 'stride', tuple(int(v) for v in self.stride))
        elif self.crop_size is not None or self.stride is not None:
            raise UserInputError(
                '--crop_size and --stride apply with --is_slide only: add --is_slide'
            )

    @property
    def is_plain(self):
        return not self.aug_eval and not self.is_slide


def _logits(model, image, options):
    """Main logits (N, C, H, W) of one input, by sliding window where asked."""
    if options.is_slide:
        logits = paddleseg_infer.slide_inference(
            model, image, crop_size=options.crop_size, stride=options.stride
        )
    else:
        logits = model(image)[0]
    return logits.astype('float32')


def infer_scores(model, image, options):
    """Class scores at the network input size: the logits, or with aug_eval the log of the
    softmax probabilities averaged over scales and flips (each prediction flipped back and
    resized to the input size first).

    The log keeps the result logit-like: bilinear resizing (to the label size) then argmax
    picks the same class as for logits, so aug_eval with one scale of 1.0 and no flip is
    exactly the plain evaluation.
    """
    if not options.aug_eval:
        return _logits(model, image, options)
    height, width = image.shape[-2:]
    total = 0
    flips = paddleseg_infer.flip_combination(options.flip_horizontal, options.flip_vertical)
    for scale in options.scales:
        size = [max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))]
        scaled = image if size == [height, width] else F.interpolate(image, size, mode='bilinear')
        for flip in flips:
            logits = _logits(model, paddleseg_infer.tensor_flip(scaled, flip), options)
            logits = paddleseg_infer.tensor_flip(logits, flip)
            if list(logits.shape[-2:]) != [height, width]:
                logits = F.interpolate(logits, [height, width], mode='bilinear')
            total = total + F.softmax(logits, axis=1)
    mean_probability = total / (len(options.scales) * len(flips))
    return paddle.log(paddle.clip(mean_probability, min=1e-30))
