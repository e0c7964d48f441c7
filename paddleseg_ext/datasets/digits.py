"""scikit-learn's handwritten digits (1,797 real 8x8 images, classes 0-9) written as PNG
files with train/val lists in PaddleClas's format, for the classification configs."""

import os
from pathlib import Path

import cv2
import numpy as np

from paddleseg_ext.datasets.layout import LIST_FILES, PrepareDataError, list_file, prepare_out_dir

NUM_CLASSES = 10
DEFAULT_OUT = os.path.join('data', 'digits')
# Halves, as scikit-learn's own digits example splits them: 899 val images make a top-1 of
# about 93% precise to about 0.8 points (one standard error), where a fifth (360) leaves
# 1.3, more than distillation's gain here.
VAL_FRACTION = 0.5
# What write_digits writes, and all that --force removes.
ENTRIES = ('images', *LIST_FILES[:2], 'labels.txt')


def write_digits(out=DEFAULT_OUT, size=32, val_fraction=VAL_FRACTION, seed=0, force=False):
    """Writes out/images/{train,val}/NNNN.png (grayscale, upscaled bilinearly to size x size),
    out/{train,val}_list.txt ('images/train/NNNN.png label' per line), split stratified by
    class with `seed`, and out/labels.txt. A non-empty `out` needs force. Returns
    {'train': count, 'val': count}."""
    from sklearn.datasets import load_digits  # imported here: only this tool needs it
    from sklearn.model_selection import train_test_split

    if not isinstance(size, int) or size < 8:
        raise PrepareDataError(f'--size must be an integer >= 8 (the digits are 8x8), got {size}')
    if not 0 < val_fraction < 1:
        raise PrepareDataError(f'--val_fraction must be in (0, 1), got {val_fraction}')
    prepare_out_dir(Path(out), force, ENTRIES)
    digits = load_digits()
    # 0..16 intensities to 0..255.
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    indices = np.arange(len(images))
    train_idx, val_idx = train_test_split(
        indices, test_size=val_fraction, random_state=seed, stratify=digits.target
    )
    counts = {}
    for mode, chosen in (('train', np.sort(train_idx)), ('val', np.sort(val_idx))):
        folder = os.path.join(out, 'images', mode)
        os.makedirs(folder, exist_ok=True)
        lines = []
        for index in chosen:
            name = f'images/{mode}/{index:04d}.png'
            image = cv2.resize(images[index], (size, size), interpolation=cv2.INTER_LINEAR)
            if not cv2.imwrite(os.path.join(out, name), image):
                raise PrepareDataError(
                    f"cannot write '{os.path.join(out, name)}': choose another --out"
                )
            lines.append(f'{name} {int(digits.target[index])}\n')
        with open(list_file(out, mode), 'w') as f:
            f.writelines(lines)
        counts[mode] = len(lines)
    with open(os.path.join(out, 'labels.txt'), 'w') as f:
        f.writelines(f'{label} {label}\n' for label in range(NUM_CLASSES))
    return counts
