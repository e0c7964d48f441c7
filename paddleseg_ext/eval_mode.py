"""A model in evaluation mode for a while: for evaluation, shape probes and layer listings."""

import contextlib


@contextlib.contextmanager
def eval_mode(model):
    """Puts every sublayer in eval mode, then restores each one's own previous mode.

    Per sublayer rather than `model.train()`: a distillation student may hold frozen parts
    (e.g. a teacher or BN layers) that must stay in eval mode after evaluation.
    """
    previous_modes = [(layer, layer.training) for layer in model.sublayers(include_self=True)]
    model_was_training = model.training
    model.eval()
    try:
        yield
    finally:
        if model_was_training:
            model.train()  # also resets paddle's global dygraph mode, which eval() changed
        for layer, was_training in previous_modes:
            layer.training = was_training
