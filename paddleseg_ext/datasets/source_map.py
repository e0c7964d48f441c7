"""Where each pixel of an augmented training sample came from.

A `SourceMap` step, placed in a dataset's transforms, adds a `source` field: for every pixel
of the image as it is at that step, its flat position y * W + x plus OFFSET. PaddleSeg's
geometric transforms move every `gt_fields` entry exactly as they move the label (nearest
neighbour resize, crop, flip, rotation; padding with their `label_padding_value`), so
after the later random steps `source` tells, for each output pixel, which pixel of the
image at the `SourceMap` step it shows, and values below OFFSET mark padding. Anything
computed once on that image (a frozen teacher's logits) can then be replayed on any
augmented view of it.
"""

import numpy as np

# Above every padding value a transform writes into gt_fields (labels are uint8), and small
# enough that OFFSET + H * W stays an exact integer in float32 for images up to 4096x4096.
OFFSET = 256
MAX_PIXELS = 2**24 - OFFSET

# What replay needs to know of PaddleSeg's transforms, by registry name:
# deterministic geometry that may run before the SourceMap step (the canonical view) ...
CANONICAL_GEOMETRY = ('Resize', 'ResizeByLong', 'LimitLong', 'Padding')
# ... random geometry, replayed exactly because it moves gt_fields with the image ...
REPLAYED_GEOMETRY = (
    'ResizeStepScaling',
    'ResizeRangeScaling',
    'ResizeByShort',
    'RandomPaddingCrop',
    'RandomCenterCrop',
    'RandomHorizontalFlip',
    'RandomVerticalFlip',
    'RandomRotation',
    'RandomAffine',
    'RandomScaleAspect',
    *CANONICAL_GEOMETRY,
)
# ... and pixel-value changes, which the canonical view leaves out (Normalize applies to it).
PHOTOMETRIC = ('Normalize', 'RandomDistort', 'RandomBlur', 'RandomNoise')


def replay_plan(transforms_cfg):
    """(the number of leading transforms that make the canonical view, None), or
    (None, why these transforms cannot be replayed)."""
    names = [t.get('type') for t in transforms_cfg]
    prefix = 0
    while prefix < len(names) and names[prefix] in CANONICAL_GEOMETRY + ('Normalize',):
        prefix += 1
    unknown = [n for n in names[prefix:] if n not in REPLAYED_GEOMETRY + PHOTOMETRIC]
    if unknown:
        return None, (
            f'train transforms {unknown} are not known to move the label exactly '
            f"as the image, so the teacher's outputs cannot be replayed on them"
        )
    padding = [
        t.get('label_padding_value', 255) for t in transforms_cfg if 'label_padding_value' in t
    ]
    if any(not isinstance(v, int) or not 0 <= v < OFFSET for v in padding):
        return None, (
            f'a label_padding_value {padding} outside [0, {OFFSET}) would be '
            f'mistaken for an image position'
        )
    return prefix, None


class SourceMap:
    """A transform step that adds `source` (float32 H x W, y * W + x + OFFSET) to the sample
    and to its gt_fields, so the following transforms carry it along."""

    def __call__(self, data):
        height, width = data['img'].shape[:2]
        if height * width > MAX_PIXELS:
            raise ValueError(
                f'an image of {width}x{height} pixels is too large for a source '
                f'map (at most {MAX_PIXELS} pixels)'
            )
        data['source'] = np.arange(height * width, dtype=np.float32).reshape(height, width) + OFFSET
        data['gt_fields'].append('source')
        return data


def track_sources(dataset, prefix):
    """Puts a SourceMap step after the first `prefix` transforms of `dataset` (a
    paddleseg_ext Dataset): its training samples then carry `source`."""
    steps = dataset.transforms.transforms
    if not any(isinstance(step, SourceMap) for step in steps):
        steps.insert(prefix, SourceMap())


def canonical_input(dataset, prefix, index):
    """Image `index` of `dataset` as the SourceMap step sees it, then normalised as training
    normalises it: the view whose outputs the source map indexes (CHW float32)."""
    from paddleseg.transforms import Compose

    image, _ = dataset.read_sample(index)
    steps = dataset.transforms.transforms
    normalize = [s for s in steps[prefix:] if type(s).__name__ == 'Normalize']
    canonical = Compose(
        [s for s in steps[:prefix] if not isinstance(s, SourceMap)] + normalize,
        img_channels=dataset.img_channels,
    )
    return canonical({'img': image, 'gt_fields': [], 'trans_info': []})['img']
