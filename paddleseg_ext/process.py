"""Setting up a process before any model is built: device, CPU threads, seeds, quiet
third-party logs and, under `paddle.distributed.launch`, the data-parallel group. One
place, used by train.py, distill_train.py, val.py and the tools."""

import os
import random
import warnings

import numpy as np
import paddle
from paddleseg.utils import logger

from paddleseg_ext.errors import UserInputError

_threads = None


def select_device(device):
    """'auto': a GPU when this paddle build sees one, else the CPU."""
    if device == 'auto':
        device = (
            'gpu'
            if (paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0)
            else 'cpu'
        )
    if device == 'gpu' and not paddle.is_compiled_with_cuda():
        raise UserInputError(
            '--device gpu: this paddle build has no CUDA: install '
            'paddlepaddle-gpu (see README, GPUs) or use --device cpu'
        )
    paddle.set_device(device)
    return device


def use_cpu_cores(threads=None):
    """paddle's CPU kernels run on one thread unless told otherwise; processes launched
    side by side share the cores."""
    global _threads
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // paddle.distributed.get_world_size())
    _threads = threads
    paddle.framework.core.set_num_threads(threads)


def cpu_threads():
    """The count use_cpu_cores set (None before it ran): paddle has no getter for it."""
    return _threads


# paddleseg's builder prints each component's resolved config (the run folder's
# config.yml holds the whole of it) and fills in keys it asks the user to set.
_PADDLESEG_CHATTER = ('Use the following config to build', 'Add the `')
# paddle's BatchNorm says on every build that it tracks global statistics in training.
_KNOWN_WARNINGS = ('When training, we now always track global mean and variance',)


def quiet_third_party_logs():
    """Drops the known third-party lines that say nothing about this run, once per process."""
    if getattr(logger.log, 'quiet', False):
        return
    paddleseg_log = logger.log

    def log(level=2, message=''):
        if not str(message).startswith(_PADDLESEG_CHATTER):
            paddleseg_log(level, message)

    log.quiet = True
    logger.log = log
    for message in _KNOWN_WARNINGS:
        warnings.filterwarnings('ignore', message=message)


def setup_process(device='auto', threads=None, seed=None):
    """Device (and on CPU, all its cores), seeds, quiet logs, data-parallel group; returns
    the device."""
    quiet_third_party_logs()
    device = select_device(device)
    if device == 'cpu':
        use_cpu_cores(threads)
    if seed is not None:
        paddle.seed(seed)
        np.random.seed(seed)
        random.seed(seed)
    if paddle.distributed.get_world_size() > 1:
        paddle.distributed.init_parallel_env()
    return device
