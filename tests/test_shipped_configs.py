"""Every config under configs/ loads and builds its model, transforms, loss and schedule
and, for a student config with distill terms, binds them to its teacher's layers, as
distill_train.py would before training (no data or weights needed)."""

import glob
import os

import pytest
from paddleseg.cvlibs import SegBuilder

import paddleseg_ext  # noqa: F401  (registers our components in paddleseg's manager)
from paddleseg_ext.components import build, build_model_without_weights
from paddleseg_ext.config import load_config
from slim.benchmark.recipes import (
    AUGMENTED_RECIPE,
    AUGMENTED_TEACHER,
    RECIPES,
    TEACHER_CONFIG,
    UNTUNED_STUDENTS,
)
from slim.distill.probe import connect
from slim.distill.schema import parse_terms

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = sorted(
    os.path.relpath(path, REPO)
    for path in glob.glob(os.path.join(REPO, 'configs', '**', '*.yml'), recursive=True)
    if '_base_' not in path.split(os.sep)
)

# The teacher each student config with distill terms is written for (its header comment,
# the README's table or the benchmark's pair). A new one must be added here.
R18_TEACHER = TEACHER_CONFIG  # the demo's and the benchmarks' teacher
R50_TEACHER = 'configs/cpu/deeplabv3p_resnet50_os16_optic_disc_64x64_teacher.yml'
QUICK_START_TEACHER = (
    'configs/quick_start/deeplabv3p_resnet50_os8_optic_disc_512x512_1k_teacher.yml'
)
TEACHER_OF = {
    'configs/classification/mobilenetv1_digits_student.yml': 'configs/classification/resnet50_digits_teacher.yml',
    'configs/cpu/deeplabv3p_resnet18_os16_optic_disc_64x64_student.yml': R18_TEACHER,
    'configs/cpu/deeplabv3p_resnet18_os16_optic_disc_64x64_student_cwd_logits.yml': R18_TEACHER,
    'configs/cpu/deeplabv3p_resnet18_os16_optic_disc_64x64_student_cwd_logits_features.yml': R18_TEACHER,
    'configs/cpu/deeplabv3p_resnet18_os16_optic_disc_64x64_student_kl_feature_cwd.yml': R50_TEACHER,
    **{path: R18_TEACHER for path in RECIPES.values()},
    **{path: R18_TEACHER for path in UNTUNED_STUDENTS.values()},
    AUGMENTED_RECIPE: AUGMENTED_TEACHER,
    'configs/quick_start/deeplabv3p_resnet18_os8_optic_disc_512x512_1k_student.yml': QUICK_START_TEACHER,
    'configs/quick_start/mobileseg_mobilenetv3_large_optic_disc_512x512_1k_student.yml': QUICK_START_TEACHER,
    'configs/own_data/mobileseg_mobilenetv3_large_student.yml': 'configs/own_data/deeplabv3p_resnet18_teacher.yml',
}


def test_the_shipped_configs_are_found():
    assert len(SHIPPED) >= 20
    assert 'configs/classification/mobilenetv1_digits_student.yml' in SHIPPED


@pytest.mark.parametrize('config_path', SHIPPED)
def test_every_shipped_config_builds_and_binds_its_distill_terms(config_path):
    path = os.path.join(REPO, config_path)
    config = load_config(path)
    builder = SegBuilder(config)
    terms = parse_terms(config, builder.build_component, path)
    model, _ = build_model_without_weights(config)  # pretrained backbones are out of reach
    for dataset in ('train_dataset', 'val_dataset'):  # the data itself is not here
        for transform in config.dic.get(dataset, {}).get('transforms', []):
            builder.build_component(transform)
    build(builder, 'loss')
    assert builder.lr_scheduler is not None
    if not terms or config_path in TEACHER_OF.values():  # teachers ignore inherited terms
        return
    assert config_path in TEACHER_OF, f'{config_path} has distill terms: add its teacher'
    teacher_path = os.path.join(REPO, TEACHER_OF[config_path])
    teacher, _ = build_model_without_weights(load_config(teacher_path, required=('model',)))
    connect(terms, model, teacher, path, teacher_path)
