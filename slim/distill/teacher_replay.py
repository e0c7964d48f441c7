"""Offline distillation under random geometric augmentation: the teacher's logits computed
once per training image, replayed on every augmented view of it.

A segmentation model's logits follow the image's geometry: the teacher's logits for a
random scale, crop and flip of an image are close to the same scale, crop and flip of its
logits for the whole image (the idea Fast Knowledge Distillation applies to classification
crops). So each image's logits are computed once, at its canonical view (the image after
the config's leading deterministic transforms, normalised), and stored as float16 in one
memory-mapped .npy file per image. A training sample's source map
(paddleseg_ext.datasets.source_map) says, for each of its pixels, which canonical pixel it
shows; the replay gathers those logits, and padded pixels get the teacher's logits for a
padding-coloured image. Photometric transforms (RandomDistort, ...) are not replayed: the
teacher's view stays clean.

Files are written whole and renamed into place, so a killed run leaves no half entry and
data-parallel ranks can share the folder. The folder's key hashes everything the stored
logits depend on.
"""

import os

import numpy as np
import paddle
import paddle.nn.functional as F
from paddleseg.utils import logger

from paddleseg_ext.datasets.source_map import OFFSET, canonical_input
from slim.distill.teacher_cache import teacher_outputs_key

PAD_IMAGE_SIDE = 64


def replay_key(teacher_weights, teacher_model_cfg, train_dataset_cfg, prefix, file_list, precision):
    """Hash of everything the canonical logits depend on: the teacher, the transforms that
    make the canonical view (the leading deterministic ones and Normalize), the padding
    colour, the images. The random transforms are replayed, not stored, so changing them
    keeps the cache."""
    transforms = train_dataset_cfg.get('transforms', [])
    return teacher_outputs_key(
        teacher_weights,
        teacher_model_cfg,
        file_list,
        precision,
        kind='replay',
        canonical_transforms=transforms[:prefix]
        + [t for t in transforms[prefix:] if t.get('type') == 'Normalize'],
        padding=padding_colour(transforms),
        img_channels=train_dataset_cfg.get('img_channels', 3),
    )


def padding_colour(transforms_cfg):
    """The image value that padding writes (the first padding transform's, as PaddleSeg's
    default 127.5)."""
    for t in transforms_cfg:
        if 'im_padding_value' in t:
            return t['im_padding_value']
    return 127.5


class TeacherReplayCache:
    """Wraps a FrozenTeacher: called with a batch's images, sample indices and source maps,
    it returns the teacher's logits for those views from the stored canonical logits,
    computing an image's canonical logits the first time it is met.

    Records only the logits: a recipe that distils recorded features runs online.
    """

    def __init__(self, teacher, dataset, prefix, cache_dir, key):
        self.teacher = teacher
        self.dataset = dataset
        self.prefix = prefix
        self.dir = os.path.join(cache_dir, key)
        os.makedirs(self.dir, exist_ok=True)
        self.pad_logits = None
        self.hits = 0
        self.misses = 0
        stored = sum(1 for name in os.listdir(self.dir) if name.startswith('image_'))
        logger.info(
            f'Teacher replay cache: {self.dir} ({stored}/{len(dataset)} images already computed)'
        )

    def info(self):
        return {**self.teacher.info(), 'teacher_cache': self.dir}

    def _path(self, index):
        return os.path.join(self.dir, f'image_{index}.npy')

    def _write(self, path, array):
        temporary = f'{path}.{os.getpid()}.tmp'
        with open(temporary, 'wb') as f:
            np.save(f, array)
        os.replace(temporary, path)

    def _canonical_logits(self, image):
        """The teacher's (C, H, W) logits for one canonical image, at its size. In dygraph:
        a compiled predictor keeps kernels for every input shape it meets, and canonical
        images come in many."""
        logits, _ = self.teacher.dygraph(paddle.to_tensor(image[np.newaxis]))
        if list(logits.shape[2:]) != list(image.shape[1:]):
            logits = F.interpolate(logits, size=image.shape[1:], mode='bilinear')
        return logits[0].numpy()

    def fill(self, indices):
        """Computes and stores the canonical logits of the images not stored yet."""
        for index in indices:
            path = self._path(index)
            if not os.path.exists(path):
                image = canonical_input(self.dataset, self.prefix, index)
                self._write(path, self._canonical_logits(image).astype(np.float16))

    def _padding_logits(self):
        """(C,) the teacher's mean logits over an image of the padding colour."""
        if self.pad_logits is None:
            path = os.path.join(self.dir, 'padding.npy')
            if not os.path.exists(path):
                transforms = self.dataset.transforms.transforms
                colour = padding_colour([vars(t) for t in transforms])
                pad = np.full(
                    (PAD_IMAGE_SIDE, PAD_IMAGE_SIDE, self.dataset.img_channels), colour, np.float32
                )
                for step in transforms:
                    if type(step).__name__ == 'Normalize':
                        pad = step({'img': pad})['img']
                pad = pad.reshape(PAD_IMAGE_SIDE, PAD_IMAGE_SIDE, -1).transpose(2, 0, 1)
                self._write(path, self._canonical_logits(pad).mean(axis=(1, 2)))
            self.pad_logits = np.load(path).astype(np.float32)
        return self.pad_logits

    def __call__(self, images, index, source):
        """(logits (N, C, h, w) for the batch's views, {}): `index` (N,) the samples' dataset
        indices, `source` (N, h, w) their source maps."""
        indices = [int(i) for i in index.numpy()]
        missing = [i for i in indices if not os.path.exists(self._path(i))]
        self.misses += len(missing)
        self.hits += len(indices) - len(missing)
        self.fill(missing)
        pad = self._padding_logits()
        sources = source.numpy().astype(np.int64) - OFFSET
        views = np.empty((len(indices), pad.shape[0], *sources.shape[1:]), np.float32)
        for row, (image_index, positions) in enumerate(zip(indices, sources)):
            canonical = np.load(self._path(image_index), mmap_mode='r')
            positions = positions.reshape(-1)
            inside = positions >= 0
            # Reads only the pixels the view shows; padded ones take the padding logits.
            view = np.take(
                canonical.reshape(canonical.shape[0], -1), np.where(inside, positions, 0), axis=1
            ).astype(np.float32)
            view[:, ~inside] = pad[:, np.newaxis]
            views[row] = view.reshape(views.shape[1:])
        return paddle.to_tensor(views), {}
