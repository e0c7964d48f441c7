"""OpticDiscSeg with PaddleSeg's YAML, minus the download behind the user's back."""

import os

from paddleseg.cvlibs import manager

from paddleseg_ext.datasets.dataset import Dataset, read_file_list
from paddleseg_ext.datasets.layout import list_file
from paddleseg_ext.errors import UserInputError
from paddleseg_ext.registry import override_component

# Synthetic data is only the demo's stand-in: it goes to a folder of its own, never into
# the folder a user's config names.
PREPARE_HINT = (
    "point dataset_root at PaddleSeg's optic disc data (python tools/prepare_data.py "
    '--from_zip optic_disc_seg.zip --out {root} unpacks its zip), or train on your own data: '
    'python tools/prepare_data.py --images IMAGES --masks MASKS --out data/my_dataset writes '
    "PaddleSeg's generic layout (`type: Dataset`, see configs/own_data/); to try the configs "
    'without data, python tools/prepare_data.py --synthetic 200 --seed 0 --out '
    'data/synthetic_optic_disc and --opts train_dataset.dataset_root=data/synthetic_optic_disc '
    'val_dataset.dataset_root=data/synthetic_optic_disc'
)


@override_component(manager.DATASETS)
class OpticDiscSeg(Dataset):
    """PaddleSeg's optic disc layout: dataset_root/{train,val,test}_list.txt, 2 classes.

    paddleseg's own class downloads a zip when the folder is missing; with no network that
    is a hang. Here a missing folder is one line naming it and the command that prepares it.
    """

    NUM_CLASSES = 2
    IGNORE_INDEX = 255
    IMG_CHANNELS = 3

    def __init__(self, dataset_root=None, transforms=None, mode='train', edge=False):
        mode = str(mode).lower()
        if mode not in ('train', 'val', 'test'):
            raise UserInputError(f'dataset mode {mode!r} is invalid: use train, val or test')
        if dataset_root is None or not os.path.isdir(dataset_root):
            root = dataset_root or 'data/optic_disc_seg'
            raise UserInputError(
                f"OpticDiscSeg dataset_root '{root}' does not exist: "
                f'{PREPARE_HINT.format(root=root)}'
            )
        if transforms is None:
            raise UserInputError('OpticDiscSeg needs `transforms` in the config')
        list_path = list_file(dataset_root, mode)
        self._setup(
            mode,
            dataset_root,
            transforms,
            self.NUM_CLASSES,
            self.IMG_CHANNELS,
            self.IGNORE_INDEX,
            edge,
            read_file_list(list_path, dataset_root, mode),
        )
