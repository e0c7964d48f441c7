"""A folder of images and a folder of masks written as PaddleSeg's generic dataset layout
(YAML `type: Dataset`), for tools/prepare_data.py --images DIR --masks DIR:

<out>/images/<name>          the images, copied as they are
<out>/labels/<stem>.png      the masks: single-channel PNGs of class ids (255: ignore_index)
<out>/train_list.txt         lines "images/<name> labels/<stem>.png", relative to <out>
<out>/val_list.txt

An image's mask is the PNG with the same stem in the masks folder. Every pair is checked
before anything is written, so a bad file stops with one line naming it and no half data set.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from paddleseg_ext.datasets.dataset import IMAGE_EXTENSIONS, check_label, read_image
from paddleseg_ext.datasets.layout import LIST_FILES, PrepareDataError, prepare_out_dir
from paddleseg_ext.errors import UserInputError

IGNORE_INDEX = 255  # paddleseg's default ignore_index
IMAGES, LABELS = 'images', 'labels'
TRAIN_LIST, VAL_LIST = LIST_FILES[:2]
# What write_from_folders writes, and all that --force removes.
ENTRIES = (IMAGES, LABELS, TRAIN_LIST, VAL_LIST)


def _images_of(images_dir: Path) -> list[Path]:
    if not images_dir.is_dir():
        raise PrepareDataError(f"--images '{images_dir}' is not a folder: pass the images' folder")
    images = sorted(
        p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not images:
        raise PrepareDataError(
            f"--images '{images_dir}' holds no images ({', '.join(IMAGE_EXTENSIONS)}): "
            f'pass the folder that holds them'
        )
    stems = [p.stem for p in images]
    duplicate = next((s for s in stems if stems.count(s) > 1), None)
    if duplicate is not None:
        raise PrepareDataError(
            f"--images '{images_dir}' holds two images with the stem '{duplicate}': "
            f'their masks would be the same file; rename one'
        )
    return images


def _check_pair(image_path: Path, mask_path: Path, num_classes: int | None) -> np.ndarray:
    """The mask's class ids present, after checking the pair; PrepareDataError naming the
    file otherwise."""
    if not mask_path.is_file():
        raise PrepareDataError(
            f"image '{image_path}' has no mask: expected '{mask_path}' (same stem, .png)"
        )
    try:
        image = read_image(str(image_path), 3, fix='replace it or move it out of --images')
    except UserInputError as exc:
        raise PrepareDataError(str(exc)) from None
    try:
        with Image.open(mask_path) as opened:
            mask = np.asarray(opened)
    except Exception:
        raise PrepareDataError(
            f"mask '{mask_path}' cannot be read as a PNG: the file is empty or damaged; replace it"
        ) from None
    limit = IGNORE_INDEX if num_classes is None else num_classes
    return check_label(
        mask,
        mask_path,
        image,
        image_path,
        limit,
        IGNORE_INDEX,
        fix='fix the mask' + ('' if num_classes is None else ' or --num_classes'),
        what='mask',
        error=PrepareDataError,
    )


def write_from_folders(
    images_dir, masks_dir, out_dir, val_fraction=0.2, seed=0, num_classes=None, force=False
) -> dict:
    """Checks every image and its mask, then writes the layout above under out_dir with
    val_fraction of the pairs in val (drawn with seed). Returns {'train', 'val',
    'num_classes', 'classes'}: num_classes is the given one, or the largest class id seen
    plus one; classes, the ids seen."""
    if not 0.0 < val_fraction < 1.0:
        raise PrepareDataError(f'--val_fraction must be in (0, 1), got {val_fraction}')
    if num_classes is not None and not 2 <= num_classes < IGNORE_INDEX:
        raise PrepareDataError(f'--num_classes must be in [2, {IGNORE_INDEX}), got {num_classes}')
    images_dir, masks_dir, out_dir = Path(images_dir), Path(masks_dir), Path(out_dir)
    if not masks_dir.is_dir():
        raise PrepareDataError(f"--masks '{masks_dir}' is not a folder: pass the masks' folder")
    images = _images_of(images_dir)
    if len(images) < 2:
        raise PrepareDataError(
            f"--images '{images_dir}' holds one image: train and val need two at least"
        )
    seen = set()
    for image_path in images:
        seen.update(_check_pair(image_path, masks_dir / f'{image_path.stem}.png', num_classes))
    classes = sorted(int(v) for v in seen if v != IGNORE_INDEX)
    if not classes:
        raise PrepareDataError(
            f"the masks in '{masks_dir}' hold only {IGNORE_INDEX} (ignore_index): masks hold "
            f'class ids 0, 1, ...; convert a 0/{IGNORE_INDEX} mask to 0/1'
        )
    if classes == [0]:
        raise PrepareDataError(
            f"the masks in '{masks_dir}' hold only class 0 (and {IGNORE_INDEX}, ignore_index): "
            f'if {IGNORE_INDEX} marks your objects, convert the masks to class ids 0/1'
        )

    prepare_out_dir(out_dir, force, ENTRIES)
    (out_dir / IMAGES).mkdir()
    (out_dir / LABELS).mkdir()
    lines = []
    for image_path in images:
        image_rel = f'{IMAGES}/{image_path.name}'
        label_rel = f'{LABELS}/{image_path.stem}.png'
        shutil.copyfile(image_path, out_dir / image_rel)
        shutil.copyfile(masks_dir / f'{image_path.stem}.png', out_dir / label_rel)
        lines.append(f'{image_rel} {label_rel}\n')
    n_val = min(max(int(round(len(lines) * val_fraction)), 1), len(lines) - 1)
    val_ids = set(np.random.default_rng(seed).permutation(len(lines))[:n_val].tolist())
    train = [line for i, line in enumerate(lines) if i not in val_ids]
    val = [line for i, line in enumerate(lines) if i in val_ids]
    for name, subset in ((TRAIN_LIST, train), (VAL_LIST, val)):
        with open(os.path.join(out_dir, name), 'w', encoding='utf-8') as f:
            f.writelines(subset)
    return {
        'train': len(train),
        'val': len(val),
        'num_classes': num_classes or classes[-1] + 1,
        'classes': classes,
    }
