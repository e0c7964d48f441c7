"""How many threads paddle's CPU kernels use: one unless told, and paddle cannot say."""
import os

import paddle

_threads = None


def use_cpu_cores(threads=None):
    """paddle's CPU kernels run on one thread unless told otherwise: 2 threads made a
    training step 1.5x faster on a 2-core machine. Processes launched side by side share
    the cores."""
    global _threads
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // paddle.distributed.get_world_size())
    _threads = threads
    paddle.framework.core.set_num_threads(threads)


def cpu_threads():
    """The count use_cpu_cores set (None before it ran): paddle has no getter for it."""
    return _threads
