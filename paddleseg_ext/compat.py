"""Repairs that let paddleseg 2.8.0 (written for paddle 2.x) run on paddle 3 as well.

Each repair says what breaks and why; each works on paddle 2.6 too, so both stacks run the
same code. Version checks live here only.
"""

import contextlib
import os

import paddle
import paddle.nn.functional as F
from paddleseg.cvlibs import manager
from paddleseg.models.losses.cross_entropy_loss import (
    CrossEntropyLoss as _PaddleSegCrossEntropy,
)

from paddleseg_ext.registry import override_component

PADDLE_MAJOR = int(paddle.__version__.split('.')[0])
# paddle 3 saves programs in PIR form (.json) where paddle 2 wrote a ProgramDesc (.pdmodel);
# develop builds report version 0.0.0 and are paddle 3.
PADDLE_3 = PADDLE_MAJOR >= 3 or PADDLE_MAJOR == 0


@override_component(manager.LOSSES)
class CrossEntropyLoss(_PaddleSegCrossEntropy):
    """paddleseg's CrossEntropyLoss with its averaging done in float32.

    paddleseg multiplies the float32 mask by an int64 `ones_like(label)` (and the int64 label
    by the float32 mask for class weights); paddle 2 promoted silently, paddle 3 refuses to
    mix float and int tensors. Same loss, same arguments, YAML `type: CrossEntropyLoss`."""

    def _post_process_loss(self, logit, label, semantic_weights, loss):
        if self.avg_non_ignore:
            mask = paddle.cast(label != self.ignore_index, dtype='float32')
        else:
            mask = paddle.ones(label.shape, dtype='float32')
        mask.stop_gradient = True
        label.stop_gradient = True
        if loss.ndim > mask.ndim:
            loss = paddle.squeeze(loss, axis=-1)
        loss = loss * mask
        if semantic_weights is not None:
            loss = loss * semantic_weights
        if self.weight is not None:
            kept_label = label * paddle.cast(mask, label.dtype)
            coef = paddle.sum(F.one_hot(kept_label, logit.shape[-1]) * self.weight, axis=-1)
        else:
            coef = paddle.ones(label.shape, dtype='float32')
        if self.top_k_percent_pixels == 1.0:
            return paddle.mean(loss) / (paddle.mean(mask * coef) + self.EPS)
        loss = loss.reshape((-1,))
        loss, indices = paddle.topk(loss, int(self.top_k_percent_pixels * loss.numel()))
        coef = paddle.gather(coef.reshape((-1,)), indices)
        coef.stop_gradient = True
        return loss.mean() / (paddle.mean(coef) + self.EPS)


# paddle.jit.save writes the program as PREFIX.json (PIR) on paddle 3 and as PREFIX.pdmodel
# (ProgramDesc) on paddle 2; the weights are PREFIX.pdiparams on both. Paddle Inference 3
# reads both program formats, Paddle Inference 2.6 only .pdmodel.
PROGRAM_SUFFIX = '.json' if PADDLE_3 else '.pdmodel'
PROGRAM_SUFFIXES = ('.json', '.pdmodel')


def saved_program(prefix):
    """The program file `paddle.jit.save(..., prefix)` wrote, in whichever format, or None."""
    for suffix in (PROGRAM_SUFFIX, *PROGRAM_SUFFIXES):
        if os.path.isfile(prefix + suffix):
            return prefix + suffix
    return None


def repair_onednn_config(config):
    """Paddle Inference 3.3 on CPU with oneDNN: keeps oneDNN's fused kernels but skips the pass
    that moves every op onto oneDNN. It moves bilinear_interp (in every PaddleSeg head) there
    too, whose `scale` attribute (a list of doubles) paddle 3.3's executor cannot pass to the
    kernel: every run fails with "ConvertPirAttribute2RuntimeAttribute not support".
    Only for PIR programs (.json): a .pdmodel runs paddle 2's passes, which need the pass."""
    if PADDLE_3 and config.prog_file().endswith('.json'):
        config.delete_pass('onednn_placement_pass')


def legacy_static_ir():
    """Context: static graphs as ProgramDesc (paddle 2's IR) instead of paddle 3's PIR, for
    tools that know only the former (PaddleSlim's and paddle's static post-training
    quantization in 3.3); a no-op on paddle 2."""
    if PADDLE_3:
        return paddle.pir_utils.OldIrGuard()
    return contextlib.nullcontext()
