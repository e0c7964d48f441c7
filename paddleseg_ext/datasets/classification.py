"""Image classification data in PaddleClas's list format: one `image_path label` per line."""

import os

import numpy as np
import paddle
from paddleseg.cvlibs import manager
from paddleseg.transforms import Compose

from paddleseg_ext.datasets.dataset import image_size, list_lines, read_image
from paddleseg_ext.errors import UserInputError


def read_class_list(list_path, dataset_root, num_classes, mode, separator=' '):
    """[(image path, class id)] from a list file; every line, file and label is checked
    before training starts, each mistake named by file and line."""
    samples = []
    prepare = 'python tools/prepare_data.py --digits'
    for line_no, text, items in list_lines(list_path, mode, prepare, separator):
        where = f'{list_path}:{line_no}'
        if len(items) != 2:
            raise UserInputError(
                f"{where}: expected 'image_path{separator}label' (a class "
                f'id), got {text!r}: fix that line of the list file'
            )
        try:
            label = int(items[1])
        except ValueError:
            raise UserInputError(
                f'{where}: label {items[1]!r} is not an integer class id: '
                f'fix that line of the list file'
            ) from None
        if not 0 <= label < num_classes:
            raise UserInputError(
                f'{where}: label {label} is outside [0, {num_classes}) '
                f'for num_classes {num_classes}: fix the line or '
                f'num_classes in the config'
            )
        path = os.path.join(dataset_root, items[0])
        image_size(path, list_path, line_no)
        samples.append((path, label))
    if not samples:
        raise UserInputError(
            f"{mode} list file '{list_path}' lists no images: add 'image_path label' lines"
        )
    return samples


@manager.DATASETS.add_component
class ClassificationDataset(paddle.io.Dataset):
    """Images and class ids from PaddleClas-style list files; paddleseg's transforms
    (Resize, Normalize, ...) apply to the image. A sample is {'img': CHW float32,
    'label': int64 class id}.

    `task` tells the engine and val.py to score top-1/top-5 accuracy (not mIoU).
    IGNORE_INDEX is what paddleseg's builder gives a loss that names none.
    """

    task = 'classification'
    IGNORE_INDEX = 255

    def __init__(
        self,
        mode,
        dataset_root,
        transforms,
        num_classes,
        img_channels=3,
        train_path=None,
        val_path=None,
        separator=' ',
    ):
        mode = str(mode).lower()
        if mode not in ('train', 'val'):
            raise UserInputError(f'dataset mode {mode!r} is invalid: use train or val')
        if not os.path.isdir(dataset_root):
            raise UserInputError(
                f"dataset_root '{dataset_root}' does not exist: fix the path in the config or "
                f'prepare the data with python tools/prepare_data.py --digits'
            )
        if img_channels not in (1, 3):
            raise UserInputError(f'img_channels must be 1 (grayscale) or 3, got {img_channels!r}')
        list_path = {'train': train_path, 'val': val_path}[mode]
        if list_path is None:
            raise UserInputError(
                f'a {mode} dataset of type ClassificationDataset needs '
                f"`{mode}_path` (a list file of 'image_path label' lines)"
            )
        self.mode = mode
        self.dataset_root = dataset_root
        self.num_classes = num_classes
        self.img_channels = img_channels
        self.ignore_index = self.IGNORE_INDEX
        self.transforms = Compose(transforms, img_channels=img_channels)
        self.file_list = read_class_list(list_path, dataset_root, num_classes, mode, separator)

    def __len__(self):
        return len(self.file_list)

    def __getitem__(self, idx):
        path, label = self.file_list[idx]
        image = read_image(path, self.img_channels)
        data = self.transforms({'img': image.astype('float32'), 'trans_info': [], 'gt_fields': []})
        if data['img'].shape[0] != self.img_channels:
            raise UserInputError(
                f'the transforms turned a {self.img_channels}-channel image into shape '
                f'{list(data["img"].shape)} (CHW): give Normalize one mean and std per '
                f'channel, e.g. mean: [0.5], std: [0.5] for img_channels 1'
            )
        return {'img': data['img'], 'label': np.array(label, dtype='int64')}
