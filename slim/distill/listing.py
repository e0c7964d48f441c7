"""--list_layers: the dygraph form of "list the variables" before choosing distill_features:
every sublayer's path, class and output shape, for an input of the size the config trains
at, optionally only the paths under a prefix."""

import paddle

from paddleseg_ext.components import build_model_without_weights
from paddleseg_ext.config import load_config
from paddleseg_ext.eval_mode import eval_mode
from slim.distill.probe import probe_input_shape

# The transforms whose argument fixes the size of a training input.
_SIZE_KEYS = {'Resize': 'target_size', 'RandomPaddingCrop': 'crop_size'}


def config_input_size(config_dict):
    """(height, width) a training batch has under the config's train transforms, or None."""
    size = None
    dataset = config_dict.get('train_dataset') or {}
    for transform in dataset.get('transforms') or []:
        key = _SIZE_KEYS.get(transform.get('type')) if isinstance(transform, dict) else None
        if key and key in transform:
            value = transform[key]
            width, height = (value, value) if isinstance(value, int) else value
            size = (height, width)
    return size


def describe_output(output):
    """Shape of a tensor, or `list of N: [shapes]` for a list/tuple of tensors."""
    if isinstance(output, paddle.Tensor):
        return list(output.shape)
    if isinstance(output, (list, tuple)):
        shapes = [
            list(t.shape) if isinstance(t, paddle.Tensor) else type(t).__name__ for t in output
        ]
        return f'list of {len(shapes)}: {shapes}'
    return None


def layer_shapes(model, input_shape):
    """[(dotted path, class name, output description)] for every sublayer, one forward on
    zeros in eval mode (BN statistics untouched)."""
    shapes = {}
    hooks = []
    names = dict(model.named_sublayers())
    for path, layer in names.items():

        def hook(layer, inputs, output, path=path):
            shapes.setdefault(path, describe_output(output))

        hooks.append(layer.register_forward_post_hook(hook))
    try:
        with eval_mode(model), paddle.no_grad():
            model(paddle.zeros(input_shape, dtype='float32'))
    finally:
        for hook in hooks:
            hook.remove()
    return [(path, type(layer).__name__, shapes.get(path)) for path, layer in names.items()]


def print_layers(teacher_config_path, student_config_path, prefix=''):
    for role, path in (('teacher', teacher_config_path), ('student', student_config_path)):
        config = load_config(path, required=('model',))
        model, _ = build_model_without_weights(config)
        input_shape = probe_input_shape(model)
        size = config_input_size(config.dic)
        origin = "the train transforms' size"
        if size is None:
            origin = 'no size in the train transforms'
        else:
            input_shape = (*input_shape[:2], *size)
        rows = [row for row in layer_shapes(model, input_shape) if row[0].startswith(prefix)]
        under = f', paths under {prefix!r}: {len(rows)}' if prefix else ''
        print(f'# {role}: {path} (output shapes for input {list(input_shape)}, {origin}{under})')
        for layer_path, class_name, shape in rows:
            print(f'{layer_path:<48} {class_name:<24} {shape}')
