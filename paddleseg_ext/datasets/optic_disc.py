"""OpticDiscSeg with PaddleSeg's YAML, minus the download behind the user's back."""

import os

from paddleseg.cvlibs import manager

from paddleseg_ext.datasets.dataset import Dataset, read_file_list
from paddleseg_ext.datasets.layout import list_file
from paddleseg_ext.errors import UserInputError
from paddleseg_ext.registry import override_component

PREPARE_HINT = (
    'python tools/prepare_data.py --from_zip optic_disc_seg.zip --out {root} '
    "(PaddleSeg's real data) or python tools/prepare_data.py --synthetic 200 "
    '--seed 0 --out {root} (synthetic)'
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
                f"OpticDiscSeg dataset_root '{root}' does not exist; "
                f'prepare it with: {PREPARE_HINT.format(root=root)}'
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
