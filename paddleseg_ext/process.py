"""Setting up a process before any model is built: device, CPU threads, seeds and, under
`paddle.distributed.launch`, the data-parallel group. One place, used by train.py,
distill_train.py, val.py and the tools."""

import os
import random

import numpy as np
import paddle

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


def setup_process(device='auto', threads=None, seed=None):
    """Device (and on CPU, all its cores), seeds, data-parallel group; returns the device."""
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
