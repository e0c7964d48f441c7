"""--list_layers: the dygraph form of "list the variables" before choosing distill_features."""
from paddleseg_ext.config import build_model_without_weights, load_config
from slim.distill.probe import PROBE_INPUT_SHAPE
from slim.distill.recorder import layer_shapes


def print_layers(teacher_config_path, student_config_path):
    for role, path in (('teacher', teacher_config_path), ('student', student_config_path)):
        model, _ = build_model_without_weights(load_config(path, required=('model',)))
        print(f'# {role}: {path} (output shapes for input {list(PROBE_INPUT_SHAPE)})')
        for layer_path, class_name, shape in layer_shapes(model, PROBE_INPUT_SHAPE):
            print(f'{layer_path:<48} {class_name:<24} {shape}')
