"""The replay cache: a teacher's logits computed once per image, replayed on random views."""

import os
import re

import numpy as np
import paddle
import pytest
from conftest import TEST_CONFIGS, data_opts, run_cli
from paddleseg.transforms import (
    Normalize,
    RandomHorizontalFlip,
    RandomPaddingCrop,
    ResizeStepScaling,
)

from paddleseg_ext.datasets import OpticDiscSeg
from paddleseg_ext.datasets.source_map import OFFSET, replay_plan, track_sources
from paddleseg_ext.engine.sampling import SeededSamples
from slim.distill.teacher import FrozenTeacher
from slim.distill.teacher_replay import TeacherReplayCache, replay_key

AUGMENTED = [
    {
        'type': 'ResizeStepScaling',
        'min_scale_factor': 0.5,
        'max_scale_factor': 2.0,
        'scale_step_size': 0.25,
    },
    {'type': 'RandomPaddingCrop', 'crop_size': [64, 64]},
    {'type': 'RandomHorizontalFlip'},
    {'type': 'RandomDistort'},
    {'type': 'Normalize'},
]


def pointwise_teacher():
    """A teacher whose logits at a pixel depend on that pixel alone (a 1x1 convolution):
    its logits for a crop, flip or padding of an image are exactly that crop, flip or
    padding of its logits for the image."""
    paddle.seed(0)

    class Pointwise(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.head = paddle.nn.Conv2D(3, 2, 1)
            self.head.bias.set_value(paddle.to_tensor([0.7, -0.4]))  # padding is not 0

        def forward(self, x):
            return [self.head(x)]

    return FrozenTeacher(Pointwise(), [], engine='dygraph')


def replayed_and_online(tmp_path, root, transforms, samples=8):
    dataset = OpticDiscSeg(root, transforms, mode='train')
    prefix, why = replay_plan([{'type': type(t).__name__} for t in transforms])
    assert why is None
    track_sources(dataset, prefix)
    teacher = pointwise_teacher()
    cache = TeacherReplayCache(teacher, dataset, prefix, str(tmp_path), 'key')
    seeded = SeededSamples(dataset, seed=0)
    for index in range(samples):
        image, label, sample_index, source = seeded[(index, 0)]
        replayed, records = cache(
            paddle.to_tensor(image[None]),
            paddle.to_tensor([sample_index]),
            paddle.to_tensor(source[None]),
        )
        online, _ = teacher(paddle.to_tensor(image[None]))
        assert records == {} and sample_index == index
        yield replayed.numpy()[0], online.numpy()[0], source


def test_replay_of_crops_flips_and_padding_is_the_teacher_on_the_view(tmp_path, synthetic_root):
    transforms = [RandomPaddingCrop(crop_size=(80, 80)), RandomHorizontalFlip(), Normalize()]
    padded = flipped = 0
    for replayed, online, source in replayed_and_online(tmp_path, synthetic_root, transforms):
        np.testing.assert_allclose(replayed, online, rtol=1e-2, atol=1e-2)
        inside = source[source >= OFFSET]
        padded += int((source < OFFSET).any())
        flipped += int(inside.size > 1 and inside[0] > inside[1])  # x runs backwards
    assert padded and flipped  # the samples covered both


def test_replay_of_rescaled_views_is_close_to_the_teacher_on_them(tmp_path, synthetic_root):
    """Under random scaling the replay resamples by nearest neighbour where the image was
    resampled bilinearly: close, not equal."""
    transforms = [
        ResizeStepScaling(0.5, 2.0, 0.25),
        RandomPaddingCrop(crop_size=(64, 64)),
        Normalize(),
    ]
    for replayed, online, _ in replayed_and_online(tmp_path, synthetic_root, transforms):
        error = np.abs(replayed - online).mean()
        assert error < 0.1 * np.abs(online).mean(), error


def test_the_key_follows_what_changes_the_stored_logits(tmp_path):
    image = tmp_path / 'a.png'
    image.write_bytes(b'x')
    weights = tmp_path / 'w.pdparams'
    weights.write_bytes(b'w')
    files = [(str(image), None)]

    def key(transforms, model=None, weights_bytes=b'w'):
        weights.write_bytes(weights_bytes)
        return replay_key(
            str(weights),
            model or {'type': 'T'},
            {'transforms': transforms},
            replay_plan(transforms)[0],
            files,
            'fp32',
        )

    base = key(AUGMENTED)
    other_crop = [dict(t) for t in AUGMENTED]
    other_crop[1]['crop_size'] = [128, 128]
    assert key(other_crop) == base  # random geometry is replayed, not stored
    canonical_resize = [{'type': 'Resize', 'target_size': [96, 96]}] + AUGMENTED
    other_mean = AUGMENTED[:-1] + [{'type': 'Normalize', 'mean': [0.4, 0.4, 0.4]}]
    other_padding = [dict(t) for t in AUGMENTED]
    other_padding[1]['im_padding_value'] = 0
    changed = [
        key(canonical_resize),
        key(other_mean),
        key(other_padding),
        key(AUGMENTED, model={'type': 'U'}),
        key(AUGMENTED, weights_bytes=b'v'),
    ]
    assert len(set(changed + [base])) == len(changed) + 1


@pytest.mark.parametrize(
    'transforms, named',
    [
        (
            [{'type': 'ScalePadding', 'target_size': [64, 64]}, {'type': 'Normalize'}],
            'ScalePadding',
        ),
        (
            [
                {'type': 'RandomPaddingCrop', 'crop_size': [64, 64], 'label_padding_value': 300},
                {'type': 'Normalize'},
            ],
            'label_padding_value',
        ),
    ],
)
def test_transforms_that_cannot_be_replayed_are_named(transforms, named):
    prefix, why = replay_plan(transforms)
    assert prefix is None and named in why


def write_student(tmp_path):
    student = tmp_path / 'student_augmented.yml'
    student.write_text(f"""_base_: '{os.path.join(TEST_CONFIGS, 'tiny_student.yml')}'
train_dataset:
  transforms:
    - {{type: ResizeStepScaling, min_scale_factor: 0.5, max_scale_factor: 2.0,
       scale_step_size: 0.25}}
    - {{type: RandomPaddingCrop, crop_size: [64, 64]}}
    - {{type: RandomHorizontalFlip}}
    - {{type: RandomDistort}}
    - {{type: Normalize}}
""")
    return str(student)


def test_distill_train_replays_under_random_augmentation(tmp_path, synthetic_root, teacher_weights):
    """Through the CLI: the first run fills the cache as it meets images, a second run
    finds them, and both train."""
    cache = str(tmp_path / 'cache')
    logs = []
    for name in ('cold', 'warm'):
        result = run_cli(
            'distill_train.py',
            '--allow_weak_teacher',
            '--teacher_config',
            os.path.join(TEST_CONFIGS, 'tiny_teacher.yml'),
            '--student_config',
            write_student(tmp_path),
            '--teacher_model_path',
            teacher_weights,
            '--iters',
            '3',
            '--seed',
            '0',
            '--teacher_cache',
            cache,
            '--save_dir',
            str(tmp_path / name),
            *data_opts(synthetic_root),
        )
        assert result.returncode == 0, result.stderr[-3000:]
        logs.append(result.stdout + result.stderr)
    assert 'Teacher replay cache' in logs[0] and '(0/' in logs[0]
    stored = int(re.search(r'\((\d+)/\d+ images already computed', logs[1]).group(1))
    assert stored >= 2
    (key_dir,) = os.listdir(cache)
    assert (
        len([n for n in os.listdir(os.path.join(cache, key_dir)) if n.startswith('image_')])
        == stored
    )


def test_replay_error_tool_measures_the_gap_to_the_teacher(
    tmp_path, synthetic_root, teacher_weights
):
    """Views equal to the canonical one (no random transform) replay to the teacher's own
    logits up to float16; a transform that cannot be replayed is one line."""
    import json

    student = tmp_path / 'identity.yml'
    student.write_text(f"""_base_: '{os.path.join(TEST_CONFIGS, 'tiny_student.yml')}'
train_dataset:
  transforms: [{{type: Resize, target_size: [64, 64]}}, {{type: Normalize}}]
""")
    args = [
        'tools/replay_error.py',
        '--teacher_config',
        os.path.join(TEST_CONFIGS, 'tiny_teacher.yml'),
        '--teacher_weights',
        teacher_weights,
        '--samples',
        '4',
        '--opts',
        f'train_dataset.dataset_root={synthetic_root}',
    ]
    result = run_cli(*args, '--student_config', str(student))
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout[result.stdout.index('{') :])
    assert measured['samples'] == 4 and measured['relative_error'] < 0.01
    assert measured['argmax_agreement'] > 0.99 and measured['padded_relative_error'] is None
    student.write_text(
        student.read_text().replace('{type: Normalize}', '{type: ScalePadding}, {type: Normalize}')
    )
    result = run_cli(*args, '--student_config', str(student))
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if line.startswith('error:')
    ]
    assert 'ScalePadding' in result.stderr
