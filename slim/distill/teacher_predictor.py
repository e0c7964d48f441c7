"""The frozen teacher compiled for inference: Paddle Inference runs its forward pass.

A frozen teacher needs no autograd, so its forward can run as one optimised static program
(conv+BN folded, oneDNN kernels on CPU) instead of op by op in dygraph (README, Speed, has
the figures); autograd-recording teachers (PaddleSlim's `Distill`) cannot do this. The
tensors that `distill_features` record are extra outputs of the same program, so nothing
else changes.
"""

import os
import tempfile
import time

import paddle
from paddleseg.utils import logger

from paddleseg_ext.compat import saved_program
from paddleseg_ext.deploy.export import export_stage
from paddleseg_ext.deploy.inference import inference_config
from paddleseg_ext.process import cpu_threads


class _LogitsAndRecords(paddle.nn.Layer):
    """The exported outputs: the main logits, then each recorded feature in recorder order."""

    def __init__(self, model, recorder):
        super().__init__()
        self.model = model
        self.recorder = recorder

    def forward(self, x):
        logits, records = self.recorder.record(self.model, x)
        return [logits[0]] + [records[ref] for ref in self.recorder.refs]


def _restore_dygraph_forwards(model):
    """jit.save swaps each sublayer's forward for its converted code and leaves it swapped
    (even when it fails); the dygraph teacher must go on running its own code."""
    for layer in [model, *model.sublayers()]:
        for name, func in layer._original_funcs.items():
            setattr(layer, name, func.__get__(layer))
        layer._original_funcs.clear()


class TeacherPredictor:
    """(logits, {FeatureRef: feature}) of the teacher for a batch, from a Paddle Inference predictor.

    Built from the loaded dygraph teacher for `channels`-channel NCHW input of any batch
    size and spatial size; the export lives in a temporary folder only while it is loaded.
    """

    def __init__(self, model, recorder, channels, precision):
        start = time.time()
        self.refs = list(recorder.refs)
        on_gpu = paddle.get_device().startswith('gpu')
        # The student's CPU threads; None on a GPU, where there is nothing to restore.
        self.threads = None if on_gpu else cpu_threads() or 1
        self.backend = f'GPU, {precision}' if on_gpu else f'CPU oneDNN, {self.threads} threads'
        with tempfile.TemporaryDirectory(prefix='teacher_predictor_') as folder:
            prefix = os.path.join(folder, 'teacher')
            spec = paddle.static.InputSpec([None, channels, None, None], 'float32', 'x')
            net = _LogitsAndRecords(model, recorder)
            net.eval()
            # Exported in float32 even inside the step's autocast: the predictor's precision
            # is its own setting.
            try:
                with export_stage(), paddle.amp.auto_cast(enable=False):
                    paddle.jit.save(net, prefix, input_spec=[spec])
            finally:
                _restore_dygraph_forwards(model)
            self.predictor = paddle.inference.create_predictor(
                inference_config(
                    saved_program(prefix),
                    prefix + '.pdiparams',
                    cpu_threads=self.threads,
                    use_mkldnn=True,
                    precision=precision,
                )
            )
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.outputs = [
            self.predictor.get_output_handle(name) for name in self.predictor.get_output_names()
        ]
        self.build_s = time.time() - start

    def __call__(self, images):
        # The predictor reads this memory in place: `images` must stay alive until run ends.
        images = images if images.dtype == paddle.float32 else images.astype('float32')
        self.input.share_external_data(images)
        self.predictor.run()
        if self.threads:
            # A predictor run leaves paddle's CPU kernels on fewer threads, which slows the
            # student's next step: set the count again.
            paddle.framework.core.set_num_threads(self.threads)
        logits, *features = [
            paddle.to_tensor(h.copy_to_cpu(), dtype='float32') for h in self.outputs
        ]
        return logits, dict(zip(self.refs, features))


# Largest |compiled - dygraph| on the first batch, relative to that output's largest |value|.
# Measured: ~1e-6 on CPU (oneDNN, fp32); a wrong export differs by order 1.
MATCH_TOLERANCE = {'fp32': 1e-2, 'fp16': 5e-2, 'bf16': 5e-2}


def _largest_difference(outputs, reference):
    """(name, relative difference) of the worst-matching tensor of two (logits, records)."""
    pairs = [('logits', outputs[0], reference[0])]
    pairs += [(str(ref), outputs[1][ref], reference[1][ref]) for ref in reference[1]]
    worst = ('logits', 0.0)
    for name, compiled, expected in pairs:
        if compiled.shape != expected.shape:
            return name, float('inf')
        scale = max(float(expected.abs().max()), 1e-6)
        difference = float((compiled - expected.astype(compiled.dtype)).abs().max()) / scale
        if not difference <= worst[1]:  # NaN counts as the worst
            worst = (name, difference)
    return worst


def compile_teacher(model, recorder, images, reference, precision):
    """A TeacherPredictor checked against the dygraph teacher's `reference` outputs for
    `images`, or None (the reason logged) when the model does not export to a static program
    or its export computes something else: the teacher then runs in dygraph, slower but
    right."""
    fallback = 'it runs in dygraph under no_grad instead (--teacher_engine dygraph says so)'
    try:
        predictor = TeacherPredictor(model, recorder, images.shape[1], precision)
        name, difference = _largest_difference(predictor(images), reference)
    except Exception as exc:  # export support varies by model; dygraph always works
        # Export errors end with the model's own error, after the converted code's trace.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = (lines[-1] if lines else '')[:200]
        if not reason.startswith(type(exc).__name__):
            reason = f'{type(exc).__name__}: {reason}'
        logger.warning(f'Teacher not compiled for Paddle Inference ({reason}); {fallback}')
        return None
    if not difference <= MATCH_TOLERANCE[precision]:
        logger.warning(
            f'Teacher compiled for Paddle Inference disagrees with the dygraph '
            f'teacher on the first batch ({name}: relative difference '
            f'{difference:.2g}); {fallback}'
        )
        return None
    logger.info(
        f'Teacher compiled for Paddle Inference ({predictor.backend}) in '
        f'{predictor.build_s:.1f} s; matches the dygraph teacher on the first batch '
        f'(relative difference {difference:.1g})'
    )
    return predictor
