"""The teacher cache (offline distillation): same losses as online, never stale."""
import os
import re

import pytest

from conftest import TEST_CONFIGS, data_opts, run_cli

TEACHER = os.path.join(TEST_CONFIGS, 'tiny_teacher.yml')
STUDENT_CWD = os.path.join(TEST_CONFIGS, 'tiny_student_cwd.yml')
TERM = re.compile(r'(CrossEntropyLoss|KLLoss\(logits\)|ChannelWiseDistillLoss\([^)]*\)): '
                  r'([0-9.]+)')


@pytest.fixture(scope='module')
def teacher_weights(tmp_path_factory, synthetic_root):
    save_dir = tmp_path_factory.mktemp('teacher')
    result = run_cli('train.py', '--config', TEACHER, '--iters', '2', '--save_interval', '2',
                     '--seed', '0', '--save_dir', str(save_dir), *data_opts(synthetic_root))
    assert result.returncode == 0, result.stderr
    return str(save_dir / 'iter_2' / 'model.pdparams')


def distill(tmp_path, name, synthetic_root, weights, *extra, student=STUDENT_CWD):
    result = run_cli('distill_train.py', '--teather_config', TEACHER, '--student_config',
                     student, '--teacher_model_path', weights, '--iters', '1',
                     '--log_iters', '1', '--seed', '0', '--save_dir', str(tmp_path / name),
                     *extra, *data_opts(synthetic_root))
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    first_line = next(line for line in output.splitlines() if '[TRAIN]' in line)
    return {name: float(value) for name, value in TERM.findall(first_line)}, output


def test_cached_and_online_first_iteration_losses_agree(tmp_path, synthetic_root,
                                                        teacher_weights):
    cache = str(tmp_path / 'cache')
    online, _ = distill(tmp_path, 'online', synthetic_root, teacher_weights)
    cold, cold_log = distill(tmp_path, 'cold', synthetic_root, teacher_weights,
                             '--teacher_cache', cache)
    warm, warm_log = distill(tmp_path, 'warm', synthetic_root, teacher_weights,
                             '--teacher_cache', cache)
    assert set(online) == {'CrossEntropyLoss', 'KLLoss(logits)',
                           'ChannelWiseDistillLoss(backbone.bb_2_1)'}
    for losses in (cold, warm):
        assert set(losses) == set(online)
        for name, value in online.items():
            assert abs(losses[name] - value) <= 1e-3, (name, losses[name], value)
    assert '(0/' in cold_log  # the cold run starts empty ...
    computed = int(re.search(r'\((\d+)/\d+ \(image, flip\) entries', warm_log).group(1))
    assert computed >= 2  # ... and the warm run finds the first run's entries


def test_a_changed_teacher_gets_a_new_cache(tmp_path, synthetic_root, teacher_weights):
    cache = tmp_path / 'cache'
    distill(tmp_path, 'a', synthetic_root, teacher_weights, '--teacher_cache', str(cache))
    other = tmp_path / 'other_teacher.pdparams'
    other.write_bytes(open(teacher_weights, 'rb').read())
    import paddleseg_ext  # noqa: F401
    import paddle
    state = paddle.load(str(other))
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
    _, log = distill(tmp_path, 'crop', synthetic_root, teacher_weights, '--teacher_cache',
                     str(tmp_path / 'cache'), student=str(student))
    assert 'Teacher cache not used' in log and 'RandomPaddingCrop' in log
    assert not os.path.exists(tmp_path / 'cache')
