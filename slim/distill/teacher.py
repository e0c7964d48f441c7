"""The frozen teacher: eval mode, no gradients, never in the optimizer, weights read-only."""
import paddle

from paddleseg_ext.engine.checkpoint import load_weights
from slim.distill.recorder import FeatureRecorder


class FrozenTeacher:
    """Runs the teacher under `paddle.no_grad()` so no autograd graph is kept.

    Deliberately not a `paddle.nn.Layer` attribute of anything trainable: its parameters
    can never reach the optimizer, DataParallel or a saved checkpoint.
    """

    def __init__(self, model, feature_paths):
        self.model = model
        self.recorder = FeatureRecorder(model, feature_paths, 'teacher')
        self.weights_path = None
        self.model.eval()
        for param in self.model.parameters():
            param.stop_gradient = True

    def load(self, weights_path):
        self.weights_path = load_weights(self.model, weights_path, 'teacher')

    def __call__(self, images, sample_keys=None):
        """(main logits, {layer path: recorded output}); sample_keys serve the cache only."""
        with paddle.no_grad():
            logits = self.model(images)[0]
        return logits, self.recorder.pop()
