"""tools/tune.py: trials scored on a split of the training list, never on val."""

import json
import os

import yaml
from conftest import TEST_CONFIGS, data_opts, run_cli

from slim.benchmark.runs import evaluations
from slim.benchmark.tune import run_watched

TEACHER = os.path.join(TEST_CONFIGS, 'tiny_teacher.yml')


def student_on(tmp_path, root):
    """tiny_student.yml with its data at root (the tuner reads the config's dataset_root)."""
    path = tmp_path / 'student.yml'
    path.write_text(
        f"_base_: '{os.path.join(TEST_CONFIGS, 'tiny_student.yml')}'\n"
        f'train_dataset: {{dataset_root: {root}}}\n'
        f'val_dataset: {{dataset_root: {root}}}\n'
    )
    return str(path)


def test_tune_writes_the_best_recipe_and_every_trial_without_reading_val(
    tmp_path, synthetic_root, teacher_weights
):
    out = tmp_path / 'tune'
    result = run_cli(
        'tools/tune.py',
        '--teacher_config',
        TEACHER,
        '--teacher_weights',
        teacher_weights,
        '--student_config',
        student_on(tmp_path, synthetic_root),
        '--out',
        str(out),
        '--trials',
        '2',
        '--iters',
        '2',
        '--allow_weak_teacher',
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(os.path.join(synthetic_root, 'train_list.txt')) as f:
        train_lines = sorted(line for line in f if line.strip())
    parts = [
        sorted(open(out / f'{name}.txt').readlines()) for name in ('tune_train', 'tune_holdout')
    ]
    assert sorted(parts[0] + parts[1]) == train_lines and parts[1]
    with open(os.path.join(synthetic_root, 'val_list.txt')) as f:
        assert not set(f.readlines()) & set(parts[0] + parts[1])
    for name in ('trial_0', 'trial_1', 'student_alone'):
        config = yaml.safe_load(open(out / 'configs' / f'{name}.yml'))
        assert config['val_dataset']['val_path'] == str(out / 'tune_holdout.txt')
        assert evaluations(str(out / name), 'mIoU')  # scored on the held-out split
    # The search starts from the shipped recipes, with coef auto.
    first = yaml.safe_load(open(out / 'configs' / 'trial_0.yml'))['distill_loss']
    assert first == {'types': [{'type': 'ChannelWiseDistillLoss', 'tau': 4.0}], 'coef': ['auto']}
    second = yaml.safe_load(open(out / 'configs' / 'trial_1.yml'))['distill_loss']
    assert second['types'][0]['type'] == 'KLDivergenceLoss' and second['coef'] == ['auto']
    trials = json.load(open(out / 'trials.json'))
    assert [t['trial'] for t in trials['trials']] == [0, 1]
    assert all(t['state'] == 'complete' and t['score'] is not None for t in trials['trials'])
    # Both finalists trained again with the next seed, on the same held-out split.
    for name in ('trial_0_seed1', 'trial_1_seed1', 'student_alone_seed1'):
        assert evaluations(str(out / name), 'mIoU')
        assert ', seed 1, ' in (out / name / 'run.log').read_text()
    assert trials['student_alone_next_seed'] is not None
    assert all(t['next_seed_score'] is not None for t in trials['trials'])
    # The pick is the best mean over the two seeds.
    means = {t['trial']: t['score'] + t['next_seed_score'] for t in trials['trials']}
    best = yaml.safe_load(open(out / 'best_student.yml'))
    assert best['distill_loss'] in (first, second)
    assert means[(first, second).index(best['distill_loss'])] == max(means.values())
    assert 'val_dataset' not in best  # the user's own data, untouched
    assert (out / 'trials.png').stat().st_size > 0 and 'student alone' in (
        out / 'trials.md'
    ).read_text()
    # The winning config trains as it is.
    again = run_cli(
        'distill_train.py',
        '--allow_weak_teacher',
        '--teacher_config',
        TEACHER,
        '--teacher_model_path',
        teacher_weights,
        '--student_config',
        str(out / 'best_student.yml'),
        '--iters',
        '1',
        '--save_dir',
        str(tmp_path / 'best_run'),
    )
    assert again.returncode == 0, again.stderr[-3000:]


def test_a_losing_run_is_stopped_at_its_first_evaluation(tmp_path, synthetic_root):
    run_dir = str(tmp_path / 'run')
    seen = []
    curve, stopped, _ = run_watched(
        [
            'train.py',
            '--config',
            os.path.join(TEST_CONFIGS, 'tiny_student.yml'),
            '--iters',
            '40',
            '--do_eval',
            '--save_interval',
            '2',
            '--save_dir',
            run_dir,
            *data_opts(synthetic_root),
        ],
        run_dir,
        'mIoU',
        lambda iteration, score: seen.append(iteration) or True,
        poll_seconds=0.2,
    )
    assert stopped and seen == [2] and curve[0][0] == 2
    assert not os.path.exists(os.path.join(run_dir, 'iter_40'))


def test_a_negative_finalists_count_is_one_line(tmp_path):
    result = run_cli(
        'tools/tune.py',
        '--teacher_config',
        TEACHER,
        '--teacher_weights',
        str(tmp_path / 'unused.pdparams'),
        '--student_config',
        os.path.join(TEST_CONFIGS, 'tiny_student.yml'),
        '--out',
        str(tmp_path / 'tune'),
        '--finalists',
        '-1',
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        'tune.py: error: --finalists -1: give 0 (pick on one seed) or more'
    )
    assert not (tmp_path / 'tune').exists()
