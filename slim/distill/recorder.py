"""What to record: outputs of sublayers named by dotted path, via forward hooks.

The model's code is never edited to distill it (torchdistill's rule); a hook on
`backbone.stage2` stores that sublayer's output each forward pass (MMRazor's recorders).
"""
import difflib

import paddle

from paddleseg_ext.errors import UserInputError
from paddleseg_ext.evaluation.evaluate import eval_mode


def find_sublayer(model, path, role):
    """The sublayer at dotted `path`, or an error listing the closest valid paths."""
    sublayers = dict(model.named_sublayers())
    if path not in sublayers:
        near = difflib.get_close_matches(path, list(sublayers), n=5, cutoff=0.4)
        hint = f"closest: {', '.join(near)}" if near else "see --list_layers"
        raise UserInputError(f"distill_features: {role} layer {path!r} does not exist in the "
                             f"{role} model; {hint} (run with --list_layers to see all)")
    return sublayers[path]


def _first_tensor(output):
    # Some paddleseg layers return lists/tuples (e.g. backbones return feature lists).
    while isinstance(output, (list, tuple)):
        output = output[0]
    return output


class FeatureRecorder:
    """Keeps the latest output of each named sublayer of `model` in `records[path]`."""

    def __init__(self, model, paths, role):
        self.records = {}
        self._hooks = []
        self.paths = list(dict.fromkeys(paths))  # unique, in order
        for path in self.paths:
            layer = find_sublayer(model, path, role)
            self._hooks.append(layer.register_forward_post_hook(self._hook_for(path)))

    def _hook_for(self, path):
        def hook(layer, inputs, output):
            self.records[path] = _first_tensor(output)
        return hook

    def pop(self):
        """The records of the last forward pass; cleared so tensors are not kept alive."""
        records, self.records = self.records, {}
        return records

    def remove(self):
        for hook in self._hooks:
            hook.remove()
        self._hooks = []


def layer_shapes(model, input_shape):
    """[(dotted path, class name, output shape)] for every sublayer, from one dummy forward."""
    shapes = {}
    hooks = []
    names = dict(model.named_sublayers())
    for path, layer in names.items():
        def hook(layer, inputs, output, path=path):
            tensor = _first_tensor(output)
            if isinstance(tensor, paddle.Tensor):
                shapes.setdefault(path, list(tensor.shape))
        hooks.append(layer.register_forward_post_hook(hook))
    dummy_forward(model, input_shape)
    for hook in hooks:
        hook.remove()
    return [(path, type(layer).__name__, shapes.get(path)) for path, layer in names.items()]


def dummy_forward(model, input_shape):
    """One forward on zeros in eval mode (BN statistics untouched); returns the main logits."""
    with eval_mode(model), paddle.no_grad():
        return model(paddle.zeros(input_shape, dtype='float32'))[0]
