"""paddleseg's generic `Dataset` (image/label list files), with input checks.

Replaces paddleseg's registry entry of the same name, so YAML `type: Dataset` keeps its
meaning while every bad file or list line gets one clear message naming it.
"""

import os

import cv2
import numpy as np
from paddleseg.cvlibs import manager
from paddleseg.datasets import Dataset as PaddleSegDataset
from paddleseg.transforms import Compose
from PIL import Image

from paddleseg_ext.errors import UserInputError
from paddleseg_ext.registry import override_component


def list_lines(list_path, mode, prepare_hint, separator=' '):
    """(line number, text, fields) of each non-blank line of a list file; a missing file is
    one error naming the `mode` list and how to make it (`prepare_hint`, a command)."""
    if not os.path.isfile(list_path):
        raise UserInputError(
            f"{mode} list file '{list_path}' does not exist: check dataset_root / "
            f'{mode}_path in the config, or prepare the data with {prepare_hint}'
        )
    with open(list_path) as f:
        for line_no, line in enumerate(f, start=1):
            text = line.strip()
            if text:
                yield line_no, text, text.split(separator)


def read_file_list(list_path, dataset_root, mode, separator=' '):
    """Parses an "image label" list file into [image_path, label_path] pairs.

    In 'test' mode the label column is optional. Missing files are reported with the list
    file and line number, before any training starts.
    """
    pairs = []
    for line_no, text, items in list_lines(list_path, mode, 'tools/prepare_data.py', separator):
        if len(items) != 2 and not (mode == 'test' and len(items) == 1):
            raise UserInputError(
                f"{list_path}:{line_no}: expected 'image_path{separator}label_path', "
                f'got {text!r}: fix that line of the list file'
            )
        paths = [os.path.join(dataset_root, item) for item in items]
        sizes = [image_size(path, list_path, line_no) for path in paths]
        if len(sizes) == 2 and sizes[0] != sizes[1]:
            raise UserInputError(
                f"label '{paths[1]}' is {sizes[1][0]}x{sizes[1][1]} but its image "
                f"'{paths[0]}' is {sizes[0][0]}x{sizes[0][1]}: they must match"
            )
        pairs.append(paths if len(paths) == 2 else [paths[0], None])
    return pairs


def image_size(path, list_path, line_no):
    """(width, height) from the file header: a cheap check of every file before training."""
    if not os.path.isfile(path):
        raise UserInputError(
            f"{list_path}:{line_no}: file '{path}' does not exist: fix the path or remove the line"
        )
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:
        raise UserInputError(
            f"'{path}' ({list_path}:{line_no}) cannot be read as an image: "
            f'the file is empty or damaged; replace it or remove its line'
        ) from None


IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def read_image(path, img_channels, fix='replace it or remove its list line'):
    """The image at path as cv2 reads it (uint8, HWC BGR or HW grey); one clear error for a
    missing, unreadable or truncated file, ending with `fix`."""
    flag = cv2.IMREAD_GRAYSCALE if img_channels == 1 else cv2.IMREAD_COLOR
    image = cv2.imread(path, flag)
    if image is None:
        raise UserInputError(
            f"image '{path}' cannot be read: the file is missing, empty or not an image; {fix}"
        )
    if _is_truncated_jpeg(path):
        raise UserInputError(f"image '{path}' is truncated (a JPEG without its end marker): {fix}")
    return image


def _is_truncated_jpeg(path):
    """cv2 decodes a cut-off JPEG without an error, filling the rest with grey; a complete
    one ends with the EOI marker (possibly followed by a little padding)."""
    with open(path, 'rb') as f:
        if f.read(2) != b'\xff\xd8':
            return False
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64))
        return b'\xff\xd9' not in f.read()


def check_label(
    label,
    label_path,
    image,
    image_path,
    num_classes,
    ignore_index,
    fix,
    what='label',
    error=UserInputError,
):
    """A label (a mask) must be a single-channel map of class ids of its image's size, each
    in [0, num_classes) or ignore_index; `error` naming the file otherwise, ending with
    `fix` where a value is out of range."""
    if label.ndim != 2:
        raise error(
            f"{what} '{label_path}' has shape {label.shape}: {what}s must be single-channel "
            f'PNGs of class ids (0, 1, ...), not colour images'
        )
    if label.shape != image.shape[:2]:
        raise error(
            f"{what} '{label_path}' is {label.shape[1]}x{label.shape[0]} but its image "
            f"'{image_path}' is {image.shape[1]}x{image.shape[0]}: they must match"
        )
    values = np.unique(label)
    bad = values[(values >= num_classes) & (values != ignore_index)]
    if bad.size:
        raise error(
            f"{what} '{label_path}' holds value {int(bad[0])}, outside [0, {num_classes}) "
            f'and not ignore_index {ignore_index}: {fix}'
        )
    return values


@override_component(manager.DATASETS)
class Dataset(PaddleSegDataset):
    """A segmentation dataset given by list files, as in PaddleSeg.

    Each sample is read here (not in the transforms) so a bad image or label names its file:
    unreadable files, image/label size mismatch, and label values outside
    [0, num_classes) other than ignore_index.
    """

    def __init__(
        self,
        mode,
        dataset_root,
        transforms,
        num_classes,
        img_channels=3,
        train_path=None,
        val_path=None,
        test_path=None,
        separator=' ',
        ignore_index=255,
        edge=False,
    ):
        mode = str(mode).lower()
        if mode not in ('train', 'val', 'test'):
            raise UserInputError(f'dataset mode {mode!r} is invalid: use train, val or test')
        if not os.path.isdir(dataset_root):
            raise UserInputError(
                f"dataset_root '{dataset_root}' does not exist: point dataset_root at your data, "
                f'or write it from a folder of images and a folder of masks with '
                f'python tools/prepare_data.py --images IMAGES --masks MASKS --out {dataset_root}'
            )
        list_path = {'train': train_path, 'val': val_path, 'test': test_path}[mode]
        if list_path is None:
            raise UserInputError(
                f'a {mode} dataset of type Dataset needs `{mode}_path` '
                f"(a list file of 'image label' lines) in the config"
            )
        self._setup(
            mode,
            dataset_root,
            transforms,
            num_classes,
            img_channels,
            ignore_index,
            edge,
            read_file_list(list_path, dataset_root, mode, separator),
        )

    def _setup(
        self,
        mode,
        dataset_root,
        transforms,
        num_classes,
        img_channels,
        ignore_index,
        edge,
        file_list,
    ):
        self.mode = mode
        self.dataset_root = dataset_root
        self.transforms = Compose(transforms, img_channels=img_channels)
        self.num_classes = num_classes
        self.img_channels = img_channels
        self.ignore_index = ignore_index
        self.edge = edge
        self.file_list = file_list

    def read_sample(self, idx):
        """Returns (image float32 HWC in BGR as cv2 reads it, label uint8 HW or None)."""
        image_path, label_path = self.file_list[idx]
        image = read_image(image_path, self.img_channels)
        if label_path is None:
            return image.astype('float32'), None
        try:
            label = np.asarray(Image.open(label_path))
        except Exception as exc:
            raise UserInputError(
                f"label '{label_path}' cannot be read ({exc}): replace it or remove its list line"
            ) from None
        check_label(
            label,
            label_path,
            image,
            image_path,
            self.num_classes,
            self.ignore_index,
            fix='fix the label or num_classes',
        )
        return image.astype('float32'), label

    def _transform(self, data, idx):
        """self.transforms(data); a transform failing (e.g. a bad value in the config) is
        one line naming the file and the transforms."""
        try:
            return self.transforms(data)
        except UserInputError:
            raise
        except Exception as exc:
            detail = ' '.join(str(exc).split()) or type(exc).__name__
            raise UserInputError(
                f"the {self.mode}_dataset transforms failed on '{self.file_list[idx][0]}' "
                f'({detail}): check the transforms and their values in the config'
            ) from None

    def __getitem__(self, idx):
        image, label = self.read_sample(idx)
        data = {'img': image, 'label': label, 'trans_info': [], 'gt_fields': []}
        if self.mode == 'val':
            # The label stays at its original size: evaluation maps logits back to it.
            data = self._transform(data, idx)
            data['label'] = data['label'][np.newaxis, :, :]
        else:
            if label is not None:
                data['gt_fields'].append('label')
            data = self._transform(data, idx)
            if self.edge:
                from paddleseg.transforms import functional as F

                data['edge'] = F.mask_to_binary_edge(
                    data['label'], radius=2, num_classes=self.num_classes
                )
        return data
