"""Mixed precision: fp16/bf16 autocast on a GPU; CPU always runs fp32."""

import contextlib

import paddle

AMP_DTYPES = {'fp32': None, 'fp16': 'float16', 'bf16': 'bfloat16'}


def amp_enabled(precision):
    return AMP_DTYPES[precision] is not None and paddle.get_device().startswith('gpu')


def autocast(precision):
    """AMP context for fp16/bf16 on a GPU, a no-op otherwise."""
    if not amp_enabled(precision):
        return contextlib.nullcontext()
    return paddle.amp.auto_cast(enable=True, level='O1', dtype=AMP_DTYPES[precision])
