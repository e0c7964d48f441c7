"""Offline distillation: the frozen teacher's outputs computed once per (image, flip).

With a frozen teacher and deterministic inputs, the teacher's forward pass (the one
unavoidable extra cost of distillation) can be paid once per distinct input instead of
once per iteration. Outputs are stored as float16 in memory-mapped .npy files under a key
that hashes everything they depend on, so a changed teacher, transform or dataset never
serves stale outputs.
"""
import hashlib
import json
import os

import numpy as np
import paddle
from paddleseg.utils import logger

# Transforms that map an image to the same tensor every time; RandomHorizontalFlip is the
# one random transform the cache handles (it stores both flips).
DETERMINISTIC_TRANSFORMS = ('Resize', 'ResizeByLong', 'ResizeByShort', 'LimitLong',
                            'Normalize', 'Padding', 'RandomHorizontalFlip')


def cache_blocker(train_transforms_cfg):
    """None if the cache applies to these train transforms, else the reason it does not."""
    random_ones = [t.get('type') for t in train_transforms_cfg
                   if t.get('type') not in DETERMINISTIC_TRANSFORMS]
    if random_ones:
        return (f"train transforms {random_ones} are random, so each iteration sees a new "
                f"input; only {', '.join(DETERMINISTIC_TRANSFORMS)} allow caching")
    return None


def _file_digest(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def cache_key(teacher_weights, teacher_model_cfg, train_dataset_cfg, file_list, feature_paths,
              precision):
    """Hash of everything the cached outputs depend on."""
    parts = {
        'teacher_weights': _file_digest(teacher_weights),
        'teacher_model': teacher_model_cfg,
        'transforms': train_dataset_cfg.get('transforms', []),
        'files': [[p, os.path.getsize(p), os.path.getmtime(p)] for p, _ in file_list],
        'features': list(feature_paths),
        'precision': precision,
    }
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class TeacherCache:
    """Wraps a FrozenTeacher: same call, plus the batch's sample keys (index * 2 + flip).

    Each process keeps its own files (rank_R/) so data-parallel ranks never write to the
    same file. Entries are filled lazily: a batch runs the teacher only on its samples not
    seen before, so the cache costs nothing up front.
    """

    def __init__(self, teacher, cache_dir, key, num_samples):
        self.teacher = teacher
        self.num_entries = num_samples * 2
        self.dir = os.path.join(cache_dir, key, f'rank_{paddle.distributed.get_rank()}')
        os.makedirs(self.dir, exist_ok=True)
        self.filled = self._open('filled', (self.num_entries,), np.uint8)
        self.arrays = None  # name -> memmap, created when the first shapes are known
        self.record_paths = []
        meta_path = os.path.join(self.dir, 'meta.json')
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                meta = json.load(f)
            self.record_paths = meta['record_paths']
            self.arrays = {name: self._open(name, None, None) for name in meta['arrays']}
        self.hits = 0
        self.misses = 0
        logger.info(f'Teacher cache: {self.dir} ({int(self.filled.sum())}/{self.num_entries} '
                    f'(image, flip) entries already computed)')

    def _open(self, name, shape, dtype):
        path = os.path.join(self.dir, f'{name}.npy')
        if os.path.exists(path):
            return np.load(path, mmap_mode='r+')
        return np.lib.format.open_memmap(path, mode='w+', dtype=dtype, shape=shape)

    def _ensure_arrays(self, logits, records):
        if self.arrays is None:
            tensors = {'logits': logits, **{f'feature_{i}': t for i, t in
                                            enumerate(records.values())}}
            self.arrays = {name: self._open(name, (self.num_entries, *t.shape[1:]), np.float16)
                           for name, t in tensors.items()}
            self.record_paths = list(records)
            with open(os.path.join(self.dir, 'meta.json'), 'w') as f:
                json.dump({'record_paths': self.record_paths, 'arrays': list(self.arrays)}, f)

    def __call__(self, images, sample_keys=None):
        keys = sample_keys.numpy().astype('int64')
        missing = [i for i, k in enumerate(keys) if not self.filled[k]]
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        if missing:
            subset = images if len(missing) == len(keys) else paddle.gather(
                images, paddle.to_tensor(missing))
            logits, records = self.teacher(subset)
            self._ensure_arrays(logits, records)
            for name, tensor in (('logits', logits), *((f'feature_{i}', t) for i, t in
                                                      enumerate(records.values()))):
                self.arrays[name][keys[missing]] = tensor.astype('float32').numpy()
            self.filled[keys[missing]] = 1
        # Served from the float16 store even when just computed, so every epoch sees the
        # same values.
        logits = paddle.to_tensor(self.arrays['logits'][keys].astype('float32'))
        records = {path: paddle.to_tensor(self.arrays[f'feature_{i}'][keys].astype('float32'))
                   for i, path in enumerate(self.record_paths)}
        return logits, records
