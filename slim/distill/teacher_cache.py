"""Offline distillation: the frozen teacher's outputs computed once per distinct input.

With a frozen teacher and deterministic inputs, the teacher's forward pass (the one
unavoidable extra cost of distillation) can be paid once per distinct input instead of
once per iteration. An entry is found by a digest of the input tensor itself, so the cache
needs nothing from the data pipeline: a flipped image is simply another input. Outputs are
stored as float16 in memory-mapped .npy files under a folder key that hashes everything they
depend on, so a changed teacher, transform or dataset never serves stale outputs.
"""

import hashlib
import json
import os

import numpy as np
import paddle
from paddleseg.utils import logger

from paddleseg_ext.weights import sha256

# Transforms that map an image to the same tensor every time; RandomHorizontalFlip is the
# one random transform the cache handles: it makes at most two inputs of an image.
DETERMINISTIC_TRANSFORMS = (
    'Resize',
    'ResizeByLong',
    'ResizeByShort',
    'LimitLong',
    'Normalize',
    'Padding',
    'RandomHorizontalFlip',
)


def cache_blocker(train_transforms_cfg):
    """None if the cache applies to these train transforms, else the reason it does not."""
    random_ones = [
        t.get('type') for t in train_transforms_cfg if t.get('type') not in DETERMINISTIC_TRANSFORMS
    ]
    if random_ones:
        return (
            f'train transforms {random_ones} are random, so each iteration sees a new '
            f'input; only {", ".join(DETERMINISTIC_TRANSFORMS)} allow caching'
        )
    return None


def teacher_outputs_key(teacher_weights, teacher_model_cfg, file_list, precision, **parts):
    """Hash of the teacher (weights file, model config), the images (paths, sizes, times),
    the precision and `parts`, whatever else a cache's stored outputs depend on."""
    parts.update(
        teacher_weights=sha256(teacher_weights),
        teacher_model=teacher_model_cfg,
        files=[[p, os.path.getsize(p), os.path.getmtime(p)] for p, _ in file_list],
        precision=precision,
    )
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_key(teacher_weights, teacher_model_cfg, train_dataset_cfg, file_list, refs, precision):
    """Hash of everything the cached outputs depend on."""
    return teacher_outputs_key(
        teacher_weights,
        teacher_model_cfg,
        file_list,
        precision,
        transforms=train_dataset_cfg.get('transforms', []),
        features=[str(ref) for ref in refs],
    )


def input_digests(images):
    """A 16-byte digest of each input tensor of the batch."""
    return [
        hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()
        for image in images.numpy()
    ]


class TeacherCache:
    """Wraps a FrozenTeacher with the same call, serving each input's outputs from disk.

    Entries are filled lazily: a batch runs the teacher only on inputs not seen before, so
    the cache costs nothing up front. It holds `capacity` entries (two per image: both
    flips); inputs beyond that run online. Each process keeps its own files (rank_R/) so
    data-parallel ranks never write to the same file.
    """

    def __init__(self, teacher, cache_dir, key, capacity):
        self.teacher = teacher
        self.capacity = capacity
        self.dir = os.path.join(cache_dir, key, f'rank_{paddle.distributed.get_rank()}')
        os.makedirs(self.dir, exist_ok=True)
        self.digests = self._open('digests', (capacity, 16), np.uint8)
        self.filled = self._open('filled', (capacity,), np.uint8)
        self.slots = {bytes(self.digests[i]): int(i) for i in np.flatnonzero(self.filled)}
        self.arrays = None  # name -> memmap, created when the first shapes are known
        meta_path = os.path.join(self.dir, 'meta.json')
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                self.arrays = {name: self._open(name, None, None) for name in json.load(f)}
        self.hits = 0
        self.misses = 0
        self.warned_full = False
        logger.info(
            f'Teacher cache: {self.dir} ({len(self.slots)}/{capacity} inputs already computed)'
        )

    def info(self):
        return {**self.teacher.info(), 'teacher_cache': self.dir}

    def _open(self, name, shape, dtype):
        path = os.path.join(self.dir, f'{name}.npy')
        if os.path.exists(path):
            return np.load(path, mmap_mode='r+')
        return np.lib.format.open_memmap(path, mode='w+', dtype=dtype, shape=shape)

    def _ensure_arrays(self, tensors):
        if self.arrays is None:
            self.arrays = {
                name: self._open(name, (self.capacity, *t.shape[1:]), np.float16)
                for name, t in tensors.items()
            }
            with open(os.path.join(self.dir, 'meta.json'), 'w') as f:
                json.dump(list(self.arrays), f)

    def _store(self, digests, logits, records):
        """Writes new entries; the filled flag last, so a crash leaves no half entry."""
        tensors = {
            'logits': logits,
            **{f'feature_{i}': records[ref] for i, ref in enumerate(self.teacher.recorder.refs)},
        }
        self._ensure_arrays(tensors)
        arrays = {name: t.astype('float32').numpy() for name, t in tensors.items()}
        for row, digest in enumerate(digests):
            if digest in self.slots:
                continue
            slot = len(self.slots)
            for name, array in arrays.items():
                self.arrays[name][slot] = array[row]
            self.digests[slot] = np.frombuffer(digest, np.uint8)
            self.filled[slot] = 1
            self.slots[digest] = slot

    def __call__(self, images):
        digests = input_digests(images)
        missing = [i for i, d in enumerate(digests) if d not in self.slots]
        self.misses += len(missing)
        self.hits += len(digests) - len(missing)
        if missing:
            if len(self.slots) + len({digests[i] for i in missing}) > self.capacity:
                if not self.warned_full:
                    logger.warning(
                        f'Teacher cache {self.dir} is full ({self.capacity} inputs):'
                        f' new inputs run the teacher online'
                    )
                    self.warned_full = True
                return self.teacher(images)
            subset = (
                images
                if len(missing) == len(digests)
                else paddle.gather(images, paddle.to_tensor(missing))
            )
            logits, records = self.teacher(subset)
            self._store([digests[i] for i in missing], logits, records)
        # Served from the float16 store even when just computed, so every epoch sees the
        # same values.
        slots = [self.slots[d] for d in digests]
        logits = paddle.to_tensor(self.arrays['logits'][slots].astype('float32'))
        records = {
            ref: paddle.to_tensor(self.arrays[f'feature_{i}'][slots].astype('float32'))
            for i, ref in enumerate(self.teacher.recorder.refs)
        }
        return logits, records
