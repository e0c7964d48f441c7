"""--list_layers: the dygraph form of "list the variables" before choosing distill_features."""

from paddleseg_ext.config import build_model_without_weights, load_config
from slim.distill.probe import probe_input_shape
from slim.distill.recorder import layer_shapes


def print_layers(teacher_config_path, student_config_path):
    for role, path in (('teacher', teacher_config_path), ('student', student_config_path)):
        model, _ = build_model_without_weights(load_config(path, required=('model',)))
        input_shape = probe_input_shape(model)
        print(f'# {role}: {path} (output shapes for input {list(input_shape)})')
        for layer_path, class_name, shape in layer_shapes(model, input_shape):
            print(f'{layer_path:<48} {class_name:<24} {shape}')
