"""How the teacher runs: the cache (offline distillation) and the Paddle Inference engine
give the same losses as the dygraph teacher online; the cache is never stale."""

import json
import os
import re

import numpy as np
import paddle
import pytest
from conftest import TEST_CONFIGS, data_opts, run_cli

from paddleseg_ext import weights
from slim.distill.recorder import FeatureRef
from slim.distill.teacher import FrozenTeacher

TEACHER = os.path.join(TEST_CONFIGS, 'tiny_teacher.yml')
STAGE = FeatureRef('stage')
STUDENT_CWD = os.path.join(TEST_CONFIGS, 'tiny_student_cwd.yml')
LOSS_TERMS = (
    'CrossEntropyLoss',
    'KLDivergenceLoss(logits)',
    'ChannelWiseDistillLoss(backbone.bb_2_1)',
)


def distill(tmp_path, name, synthetic_root, weights, *extra, student=STUDENT_CWD):
    """Runs 1 iteration; (its loss terms from train_log.jsonl, the console output)."""
    save_dir = tmp_path / name
    result = run_cli(
        'distill_train.py',
        '--allow_weak_teacher',
        '--teather_config',
        TEACHER,
        '--student_config',
        student,
        '--teacher_model_path',
        weights,
        '--iters',
        '1',
        '--log_iters',
        '1',
        '--seed',
        '0',
        '--save_dir',
        str(save_dir),
        *extra,
        *data_opts(synthetic_root),
    )
    assert result.returncode == 0, result.stderr
    with open(save_dir / 'train_log.jsonl') as f:
        first = next(r for r in map(json.loads, f) if r['tag'] == 'Train')
    losses = {k: v for k, v in first.items() if k in LOSS_TERMS}
    return losses, result.stdout + result.stderr


def test_cached_and_online_first_iteration_losses_agree(tmp_path, synthetic_root, teacher_weights):
    cache = str(tmp_path / 'cache')
    online, _ = distill(tmp_path, 'online', synthetic_root, teacher_weights)
    cold, cold_log = distill(
        tmp_path, 'cold', synthetic_root, teacher_weights, '--teacher_cache', cache
    )
    warm, warm_log = distill(
        tmp_path, 'warm', synthetic_root, teacher_weights, '--teacher_cache', cache
    )
    assert set(online) == {
        'CrossEntropyLoss',
        'KLDivergenceLoss(logits)',
        'ChannelWiseDistillLoss(backbone.bb_2_1)',
    }
    for losses in (cold, warm):
        assert set(losses) == set(online)
        for name, value in online.items():
            assert abs(losses[name] - value) <= 1e-3, (name, losses[name], value)
    assert '(0/' in cold_log  # the cold run starts empty ...
    computed = int(re.search(r'\((\d+)/\d+ inputs already computed', warm_log).group(1))
    assert computed >= 2  # ... and the warm run finds the first run's entries


def test_inference_engine_matches_dygraph_teacher(tmp_path, synthetic_root, teacher_weights):
    dygraph, dygraph_log = distill(
        tmp_path, 'dygraph', synthetic_root, teacher_weights, '--teacher_engine', 'dygraph'
    )
    compiled, compiled_log = distill(
        tmp_path, 'inference', synthetic_root, teacher_weights, '--teacher_engine', 'inference'
    )
    assert 'Teacher compiled for Paddle Inference (CPU oneDNN' in compiled_log
    assert 'Teacher compiled' not in dygraph_log
    assert (
        set(compiled)
        == set(dygraph)
        == {
            'CrossEntropyLoss',
            'KLDivergenceLoss(logits)',
            'ChannelWiseDistillLoss(backbone.bb_2_1)',
        }
    )
    for name, value in dygraph.items():
        assert abs(compiled[name] - value) <= 1e-3, (name, compiled[name], value)


def test_a_changed_teacher_gets_a_new_cache(tmp_path, synthetic_root, teacher_weights):
    cache = tmp_path / 'cache'
    distill(tmp_path, 'a', synthetic_root, teacher_weights, '--teacher_cache', str(cache))
    other = tmp_path / 'other_teacher.pdparams'
    other.write_bytes(open(teacher_weights, 'rb').read())
    import paddle

    state = weights.load(str(other))
    first = next(iter(state))
    state[first] = state[first] * 2
    paddle.save(state, str(other))
    _, log = distill(tmp_path, 'b', synthetic_root, str(other), '--teacher_cache', str(cache))
    assert '(0/' in log
    assert len(os.listdir(cache)) == 2


def test_random_crops_run_online_and_say_why(tmp_path, synthetic_root, teacher_weights):
    student = tmp_path / 'student_crop.yml'
    student.write_text(f"""_base_: '{STUDENT_CWD}'
train_dataset:
  transforms:
    - type: RandomPaddingCrop
      crop_size: [64, 64]
    - type: RandomHorizontalFlip
    - type: Normalize
""")
    _, log = distill(
        tmp_path,
        'crop',
        synthetic_root,
        teacher_weights,
        '--teacher_cache',
        str(tmp_path / 'cache'),
        student=str(student),
    )
    assert 'Teacher cache not used' in log and 'RandomPaddingCrop' in log
    assert not os.path.exists(tmp_path / 'cache')


class TwoStageNet(paddle.nn.Layer):
    """A tiny segmentation-like model: logits first, a recordable `stage` sublayer."""

    def __init__(self, static_scale=1.0):
        super().__init__()
        self.stage = paddle.nn.Sequential(
            paddle.nn.Conv2D(3, 8, 3, padding=1), paddle.nn.BatchNorm2D(8), paddle.nn.ReLU()
        )
        self.head = paddle.nn.Conv2D(8, 2, 1)
        self.static_scale = static_scale

    def forward(self, x):
        logits = self.head(self.stage(x))
        if not paddle.in_dynamic_mode():  # what an export sees
            logits = logits * self.static_scale
        return [logits]


class DygraphOnlyNet(TwoStageNet):
    def forward(self, x):
        if not paddle.in_dynamic_mode():
            raise RuntimeError('this model cannot be exported')
        return super().forward(x)


def frozen(model):
    paddle.seed(0)
    return FrozenTeacher(model, [STAGE], engine='inference')


def test_compiled_teacher_serves_any_batch_and_image_size():
    teacher = frozen(TwoStageNet())
    for shape in ([2, 3, 32, 32], [3, 3, 48, 40]):
        images = paddle.randn(shape)
        logits, records = teacher(images)
        expected_logits, expected_records = teacher.dygraph(images)
        np.testing.assert_allclose(logits.numpy(), expected_logits.numpy(), atol=1e-4)
        np.testing.assert_allclose(
            records[STAGE].numpy(), expected_records[STAGE].numpy(), atol=1e-4
        )
    assert teacher.engine == 'inference' and teacher.predictor is not None


@pytest.mark.parametrize(
    'model, message',
    [
        (
            DygraphOnlyNet(),
            'Teacher not compiled for Paddle Inference (RuntimeError: this model '
            'cannot be exported',
        ),
        (
            TwoStageNet(static_scale=3.0),
            'disagrees with the dygraph teacher on the first batch (logits: relative difference',
        ),
    ],
)
def test_a_teacher_that_does_not_export_right_runs_in_dygraph(model, message, capsys):
    teacher = frozen(model)
    images = paddle.randn([2, 3, 16, 16])
    logits, records = teacher(images)
    assert message in capsys.readouterr().out
    assert teacher.engine == 'dygraph' and teacher.predictor is None
    expected_logits, expected_records = teacher.dygraph(images)
    np.testing.assert_array_equal(logits.numpy(), expected_logits.numpy())
    assert list(records) == [STAGE]


class CountingTeacher:
    """Stands in for a FrozenTeacher: logits and one record from the input, calls counted."""

    def __init__(self):
        self.recorder = type('R', (), {'refs': [STAGE]})()
        self.images_seen = 0

    def __call__(self, images):
        self.images_seen += images.shape[0]
        return images[:, :2] * 2.0, {STAGE: images + 1.0}

    def info(self):
        return {}


def test_cache_runs_the_teacher_once_per_distinct_input(tmp_path):
    from slim.distill.teacher_cache import TeacherCache

    teacher = CountingTeacher()
    cache = TeacherCache(teacher, str(tmp_path), 'key', capacity=4)
    images = paddle.randn([2, 3, 4, 4])
    flipped = paddle.flip(images, axis=[3])
    first = cache(images)
    again = cache(paddle.concat([images[1:], images[:1]]))  # same inputs, other order
    assert teacher.images_seen == 2 and (cache.hits, cache.misses) == (2, 2)
    np.testing.assert_array_equal(again[0].numpy(), first[0].numpy()[::-1])
    np.testing.assert_allclose(first[1][STAGE].numpy(), images.numpy() + 1.0, atol=1e-2)
    cache(flipped)  # a flipped image is another input
    assert teacher.images_seen == 4
    reopened = TeacherCache(teacher, str(tmp_path), 'key', capacity=4)
    np.testing.assert_array_equal(reopened(flipped)[0].numpy(), cache(flipped)[0].numpy())
    assert teacher.images_seen == 4  # served from disk by a new process's cache
    cache(images * 3.0)  # full: runs online, says so once
    assert teacher.images_seen == 6
