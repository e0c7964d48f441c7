"""The frozen teacher: eval mode, no gradients, never in the optimizer, weights read-only."""

import paddle

from paddleseg_ext import weights
from slim.distill.recorder import Recorder
from slim.distill.teacher_predictor import compile_teacher

TEACHER_ENGINES = ('auto', 'inference', 'dygraph')


def resolve_engine(engine):
    """auto: Paddle Inference on CPU, dygraph on GPU, where the predictor has not been
    measured against dygraph under AMP yet."""
    if engine == 'auto':
        return 'dygraph' if paddle.get_device().startswith('gpu') else 'inference'
    return engine


class FrozenTeacher:
    """Runs the teacher without an autograd graph: in dygraph under `paddle.no_grad()`, or,
    with engine 'inference', compiled for Paddle Inference at the first batch (and checked
    against the dygraph teacher on it).

    Deliberately not a `paddle.nn.Layer`: its parameters can never reach the optimizer,
    DataParallel or a saved checkpoint.
    """

    def __init__(self, model, refs, engine='dygraph', precision='fp32'):
        self.model = model
        self.recorder = Recorder(model, refs, 'teacher')
        self.weights_path = None
        self.weights_sha256 = None
        self.engine = resolve_engine(engine)
        self.precision = precision
        self.predictor = None
        self.model.eval()
        for param in self.model.parameters():
            param.stop_gradient = True

    def load(self, weights_path):
        self.weights_path = weights.load_weights(self.model, weights_path, 'teacher')
        self.weights_sha256 = weights.sha256(self.weights_path)  # provenance in the run log
        self.predictor = None  # compiled from the weights loaded last

    def info(self):
        return {
            'teacher_weights': self.weights_path,
            'teacher_weights_sha256': self.weights_sha256,
            'teacher_engine': self.engine,
        }

    def __call__(self, images):
        """(main logits, {FeatureRef: recorded tensor})."""
        if self.engine == 'inference' and self.predictor is None:
            self.predictor = compile_teacher(
                self.model, self.recorder, images, self.dygraph(images), self.precision
            )
            if self.predictor is None:
                self.engine = 'dygraph'
        if self.predictor is not None:
            return self.predictor(images)
        return self.dygraph(images)

    def dygraph(self, images):
        with paddle.no_grad():
            logits, records = self.recorder.record(self.model, images)
        return logits[0], records
