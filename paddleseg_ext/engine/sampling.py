"""Training batches that any iteration can restart from, identically, read in this process
or in worker processes whose errors reach the main process as one line.

Batch k is a function of (seed, k) alone, and so is every random transform of every
sample: a run resumed at iteration k sees the same data as an uninterrupted one,
whatever num_workers is.
"""

import os
import random
import tempfile
import threading

import numpy as np
import paddle

from paddleseg_ext.errors import UserInputError


def iteration_seed(seed, *keys):
    """A 32-bit seed derived from the run's seed and any keys (epoch, index, iteration)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


class ResumableBatchSampler(paddle.io.BatchSampler):
    """Yields this rank's batches for iterations start_iter+1 .. iters.

    Each epoch is a fresh permutation drawn from (seed, epoch); the last incomplete global
    batch of an epoch is dropped. Items are (sample index, epoch) pairs.
    """

    def __init__(self, num_samples, batch_size, iters, seed, start_iter=0, rank=0, world_size=1):
        global_batch = batch_size * world_size
        if num_samples < global_batch:
            raise UserInputError(
                f'the training set has {num_samples} images, fewer than batch_size '
                f'{batch_size} x {world_size} processes: lower batch_size or add images'
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.iters = iters
        self.seed = seed
        self.start_iter = start_iter
        self.rank = rank
        self.global_batch = global_batch
        self.batches_per_epoch = num_samples // global_batch

    def __len__(self):
        return max(self.iters - self.start_iter, 0)

    def __iter__(self):
        permutation, permutation_epoch = None, None
        for iteration in range(self.start_iter, self.iters):
            epoch, position = divmod(iteration, self.batches_per_epoch)
            if epoch != permutation_epoch:
                permutation = np.random.default_rng([self.seed, epoch]).permutation(
                    self.num_samples
                )
                permutation_epoch = epoch
            start = position * self.global_batch + self.rank * self.batch_size
            yield [(int(i), epoch) for i in permutation[start : start + self.batch_size]]


# The fields of a training sample, in order; a sample whose dataset tracks sources
# (paddleseg_ext.datasets.source_map) has all four, others the first two.
SAMPLE_FIELDS = ('img', 'label', 'index', 'source')


class SeededSamples(paddle.io.Dataset):
    """Indexes a paddleseg dataset by (index, epoch), seeding its random transforms by both.

    Yields (image, label), or (image, label, index, source map) where the dataset's samples
    carry a `source` map."""

    def __init__(self, dataset, seed, error_file=None):
        self.dataset = dataset
        self.seed = seed
        # A worker process's UserInputError is written here for the main process to raise.
        self.error_file = error_file

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        index, epoch = key
        # paddleseg's transforms draw from Python's and numpy's global generators.
        sample_seed = iteration_seed(self.seed, epoch, index)
        random.seed(sample_seed)
        np.random.seed(sample_seed)
        try:
            sample = self.dataset[index]
        except UserInputError as exc:
            if self.error_file:
                with open(self.error_file, 'w') as f:
                    f.write(str(exc))
            raise
        fields = (sample['img'], sample['label'].astype('int64'))
        if 'source' in sample:
            fields += (np.int64(index), sample['source'])
        return fields


def batches(samples, sampler, num_workers):
    """Training batches: worker processes, or with num_workers 0 the main thread itself.

    paddle's DataLoader reads in a background thread even with no workers, where a bad
    image's error is printed and the loop hangs; read here, it reaches the CLI as one line.
    """
    if num_workers > 0:
        return _worker_batches(samples, sampler, num_workers)
    collate = paddle.io.dataloader.collate.default_collate_fn
    return (
        [paddle.to_tensor(field) for field in collate([samples[key] for key in keys])]
        for keys in sampler
    )


def _worker_batches(samples, sampler, num_workers):
    """DataLoader batches; a bad sample in a worker becomes the worker's one-line error."""
    handle, samples.error_file = tempfile.mkstemp(prefix='sample_error_')
    os.close(handle)
    default_hook = threading.excepthook

    def quiet_when_reported(args):
        # paddle's reader thread re-raises the worker's error and prints its traceback;
        # the main thread reports a bad sample as one line instead.
        if os.path.getsize(samples.error_file) == 0:
            default_hook(args)

    threading.excepthook = quiet_when_reported
    try:
        yield from paddle.io.DataLoader(
            samples,
            batch_sampler=sampler,
            num_workers=num_workers,
            return_list=True,
            persistent_workers=True,
        )
    except Exception:
        with open(samples.error_file) as f:
            message = f.read()
        if message:
            raise UserInputError(message) from None
        raise
    finally:
        threading.excepthook = default_hook
        os.remove(samples.error_file)
