"""tools/tune.py: trials scored on a split of the training list, never on val."""

import json
import os
import random
import re
import shlex
from types import SimpleNamespace

import pytest
import yaml
from conftest import TEST_CONFIGS, data_opts, run_cli

from slim.benchmark.runs import RunDiverged, check_exit, evaluations, run_watched
from slim.benchmark.tune import has_own_recipe, pick, searched_losses, warn_if_trials_are_long
from slim.benchmark.tune_inputs import TuneError, carve_split, check_same_search, search_inputs

TEACHER = os.path.join(TEST_CONFIGS, 'tiny_teacher.yml')


def student_on(tmp_path, root):
    """tiny_student.yml with its data at root (the tuner reads the config's dataset_root),
    without a recipe of its own (so the shipped recipe, trial 0, is the incumbent)."""
    path = tmp_path / 'student.yml'
    path.write_text(
        f"_base_: '{os.path.join(TEST_CONFIGS, 'tiny_student.yml')}'\n"
        f'train_dataset: {{dataset_root: {root}}}\n'
        f'val_dataset: {{dataset_root: {root}}}\n'
        'distill_loss: null\n'
    )
    return str(path)


def tune_args(teacher_config, teacher_weights, student_config, out, *extra):
    """tools/tune.py's command line for this pair."""
    return (
        'tools/tune.py',
        '--teacher_config',
        teacher_config,
        '--teacher_weights',
        teacher_weights,
        '--student_config',
        student_config,
        '--out',
        out,
        *extra,
    )


def test_tune_writes_the_best_recipe_and_every_trial_without_reading_val(
    tmp_path, synthetic_root, teacher_weights
):
    out = tmp_path / 'tune'
    args = tune_args(
        TEACHER,
        teacher_weights,
        student_on(tmp_path, synthetic_root),
        str(out),
        *('--trials', '2', '--iters', '2', '--allow_weak_teacher'),
    )
    result = run_cli(*args, timeout=600)
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
    # The search starts from the shipped recipes, with coef auto at its default pull.
    configs = [yaml.safe_load(open(out / 'configs' / f'trial_{i}.yml')) for i in (0, 1)]
    first, second = (c['distill_loss'] for c in configs)
    assert first == {'types': [{'type': 'ChannelWiseDistillLoss', 'tau': 4.0}], 'coef': ['auto']}
    assert second['types'][0]['type'] == 'KLDivergenceLoss' and second['coef'] == ['auto']
    assert [c['distill_auto_ratio'] for c in configs] == [0.5, 0.5]
    trials = json.load(open(out / 'trials.json'))
    assert [t['trial'] for t in trials['trials']] == [0, 1]
    assert all(t['state'] == 'complete' and t['score'] is not None for t in trials['trials'])
    # Each trial records the coefficient auto measured in its run.
    for t in trials['trials']:
        log = (out / f'trial_{t["trial"]}' / 'run.log').read_text()
        logged = re.search(r'coef auto: \S+ = (\S+) \(its gradient 0\.5 times', log)
        assert t['auto_ratio'] == 0.5 and t['coef'] == pytest.approx(float(logged[1]), rel=1e-3)
    # Both finalists, and the student alone, trained again with two fresh seeds, each seed
    # on its own fold: held-out images disjoint from the search's and from each other's,
    # from the same training list.
    held_out = [set(parts[1])]
    for seed in (1, 2):
        fold = out / f'fold_{seed}'
        fold_parts = [
            sorted(open(fold / f'{name}.txt').readlines())
            for name in ('tune_train', 'tune_holdout')
        ]
        assert sorted(fold_parts[0] + fold_parts[1]) == train_lines
        assert len(fold_parts[1]) == len(parts[1])
        assert all(not set(fold_parts[1]) & other for other in held_out)
        held_out.append(set(fold_parts[1]))
        for name in ('trial_0', 'trial_1', 'student_alone'):
            config = yaml.safe_load(open(fold / 'configs' / f'{name}.yml'))
            assert config['val_dataset']['val_path'] == str(fold / 'tune_holdout.txt')
            assert evaluations(str(fold / f'{name}_seed{seed}'), 'mIoU')
            assert f', seed {seed}, ' in (fold / f'{name}_seed{seed}' / 'run.log').read_text()
    assert trials['confirm_seeds'] == [1, 2] and len(trials['student_alone_confirm']) == 2
    for t in trials['trials']:  # each confirmation run is reported as it ends
        for seed, score in zip((1, 2), t['confirm_scores']):
            assert f'trial_{t["trial"]}, seed {seed}: held-out mIoU {score:.4f}' in result.stdout
    assert all(len(t['confirm_scores']) == 2 for t in trials['trials'])
    # The shipped recipe (trial 0) stays the pick unless trial 1 beats it on both fresh seeds.
    shipped, other = trials['trials']
    challenger_wins = all(
        map(lambda a, b: a > b, other['confirm_scores'], shipped['confirm_scores'])
    )
    best = yaml.safe_load(open(out / 'best_student.yml'))
    assert best['distill_loss'] == (second if challenger_wins else first)
    # A pick no better than the student alone on the fresh seeds is said to be so.
    picked_mean = sum((other if challenger_wins else shipped)['confirm_scores']) / 2
    alone_mean = sum(trials['student_alone_confirm']) / 2
    warned = 'Warning: the pick does not beat the student alone' in result.stdout
    assert warned == (picked_mean <= alone_mean), result.stdout[-2000:]
    assert best['distill_auto_ratio'] == 0.5
    assert 'val_dataset' not in best  # the user's own data, untouched
    assert (out / 'trials.png').stat().st_size > 0 and 'student alone' in (
        out / 'trials.md'
    ).read_text()
    # The winning config trains as it is, by the command the tuner gives.
    command = re.search(r'^Next, train it and judge it on val: python (.*)$', result.stdout, re.M)
    again = run_cli(
        *shlex.split(command[1]), '--iters', '1', '--save_dir', str(tmp_path / 'best_run')
    )
    assert 'best_student.yml' in command[1] and '--do_eval' in command[1]
    assert again.returncode == 0, again.stderr[-3000:]
    # The same --out continues the search: its trials are done, so none is added or rerun.
    trial_log = (out / 'trial_0' / 'run.log').stat().st_mtime
    resumed = run_cli(*args, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert [t['trial'] for t in json.load(open(out / 'trials.json'))['trials']] == [0, 1]
    assert (out / 'trial_0' / 'run.log').stat().st_mtime == trial_log


def test_a_classifier_is_tuned_from_its_own_recipes_without_the_spatial_losses(tmp_path):
    """CWD compares spatial maps, which a classifier's [N, C] logits are not: the search
    for a classifier leaves it out and starts from the digits' KL T=4."""
    assert searched_losses('classification') == ['DISTLoss', 'KLDivergenceLoss']
    assert 'ChannelWiseDistillLoss' in searched_losses('segmentation')
    root = tmp_path / 'digits'
    made = run_cli('tools/prepare_data.py', '--digits', '--out', str(root), '--size', '16')
    assert made.returncode == 0, made.stderr[-3000:]
    data = {}
    for mode, count in (('train', 48), ('val', 16)):
        lines = (root / f'{mode}_list.txt').read_text().splitlines(keepends=True)[:count]
        (root / f'tiny_{mode}.txt').write_text(''.join(lines))
        data[f'{mode}_dataset'] = {
            'dataset_root': str(root),
            f'{mode}_path': str(root / f'tiny_{mode}.txt'),
        }
    configs = {}
    for side in ('teacher', 'student'):
        configs[side] = tmp_path / f'{side}.yml'
        configs[side].write_text(
            yaml.safe_dump({'_base_': os.path.join(TEST_CONFIGS, f'tiny_cls_{side}.yml'), **data})
        )
    teacher = run_cli(
        'train.py',
        '--config',
        str(configs['teacher']),
        '--iters',
        '1',
        '--save_dir',
        str(tmp_path / 't'),
    )
    assert teacher.returncode == 0, teacher.stderr[-3000:]
    out = tmp_path / 'tune'
    result = run_cli(
        *tune_args(
            str(configs['teacher']),
            str(tmp_path / 't' / 'iter_1' / 'model.pdparams'),
            str(configs['student']),
            str(out),
            *('--trials', '2', '--iters', '2', '--finalists', '1', '--confirm_seeds', '1'),
            '--allow_weak_teacher',
        ),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = json.load(open(out / 'trials.json'))
    trials = table['trials']
    assert [(t['loss'], t['temperature'], t['state']) for t in trials] == [
        ('KLDivergenceLoss', 4.0, 'complete'),
        ('DISTLoss', 1.0, 'complete'),
    ]
    assert 'Top1' in (out / 'trial_0' / 'train_log.jsonl').read_text()
    # The student config's own recipe (KL and an L2 feature term) is trained on the split
    # with the search seed and the one fresh seed, and is the incumbent: it stays unless the
    # best trial beats it on the fresh seed.
    yours = table['yours']
    assert evaluations(str(out / 'yours'), 'Top1')
    assert evaluations(str(out / 'fold_1' / 'yours_seed1'), 'Top1')
    assert not (out / 'fold_2').exists() and table['confirm_seeds'] == [1]
    assert 'L2Loss' in (out / 'yours' / 'run.log').read_text()
    best = max(trials, key=lambda t: t['score'])
    beaten = best['confirm_scores'][0] > yours['confirm_scores'][0]
    picked = yaml.safe_load(open(out / 'best_student.yml'))
    if beaten:
        assert picked['distill_loss']['types'][0]['type'] == best['loss']
    else:
        assert picked == {'_base_': str(configs['student'])}
    assert 'own recipe (the incumbent)' in (out / 'trials.md').read_text()


def test_a_diverging_trial_loses_and_the_search_goes_on(
    tmp_path, synthetic_root, teacher_weights, monkeypatch
):
    """trial_1's run stops on a NaN loss (exit 3): it is recorded as diverged, not picked,
    and the search and the finalists' fresh seeds go on."""
    from slim.benchmark import tune_runs
    from slim.benchmark.tune import tune

    real_run = tune_runs.run_watched

    def run_watched(args, run_dir, *rest, **kwargs):
        if os.path.basename(run_dir) == 'trial_1':
            os.makedirs(run_dir, exist_ok=True)
            log = os.path.join(run_dir, 'run.log')
            with open(log, 'w') as f:
                f.write('error: iter 1: loss term CrossEntropyLoss is nan\n')
            check_exit(3, log, 'trial_1')
        return real_run(args, run_dir, *rest, **kwargs)

    monkeypatch.setattr(tune_runs, 'run_watched', run_watched)
    out = tmp_path / 'tune'
    pick = tune(
        TEACHER,
        teacher_weights,
        student_on(tmp_path, synthetic_root),
        str(out),
        trials=3,
        timeout_s=None,
        iters=2,
        allow_weak_teacher=True,
    )
    trials = {t['trial']: t for t in json.load(open(out / 'trials.json'))['trials']}
    assert sorted(trials) == [0, 1, 2]
    assert trials[1]['state'] == 'diverged' and trials[1]['confirm_scores'] is None
    assert trials[0]['state'] == trials[2]['state'] == 'complete'
    assert all(None not in trials[i]['confirm_scores'] for i in (0, 2))
    assert '| diverged |' in (out / 'trials.md').read_text()
    best = yaml.safe_load(open(pick['config']))['distill_loss']['types'][0]['type']
    assert best != 'KLDivergenceLoss'  # trial_1 is the shipped KL start


def test_each_fold_holds_out_its_own_part_and_fold_0_is_the_search_split(tmp_path, synthetic_root):
    student = student_on(tmp_path, synthetic_root)
    with open(os.path.join(synthetic_root, 'train_list.txt')) as f:
        count = sum(1 for line in f if line.strip())

    def held_out(fold, **kwargs):
        split, train_count, holdout_count = carve_split(
            student, str(tmp_path / f'fold{fold}'), seed=3, fold=fold, **kwargs
        )
        assert train_count + holdout_count == count
        return set(open(split['val_dataset']['val_path']).readlines())

    folds = count // len(held_out(0))
    parts = [held_out(fold) for fold in range(folds)]
    assert all(not parts[i] & parts[j] for i in range(folds) for j in range(i))
    assert held_out(folds) == parts[0]  # counted round
    # Fold 0 is what the search has always held out (the first part of the list shuffled
    # by the seed), so a search's --out carries on.
    with open(os.path.join(synthetic_root, 'train_list.txt')) as f:
        lines = [line for line in f if line.strip()]
    order = list(range(count))
    random.Random(3).shuffle(order)
    assert parts[0] == {lines[i] for i in order[: len(parts[0])]}


def test_the_incumbent_stays_unless_beaten_on_every_fresh_seed():
    """Only the confirmation seeds decide: the finalists were chosen for their score on
    the search seed, which that choice inflates."""

    def trial(number, search_score):
        return SimpleNamespace(number=number, value=search_score)

    shipped, lucky, steady, better = trial(0, 0.78), trial(6, 0.79), trial(7, 0.785), trial(8, 0.80)
    # One fresh seed ahead, the other 0.0002 behind: the incumbent stays.
    assert pick([lucky, shipped], shipped, {0: [0.74, 0.7391], 6: [0.75, 0.7389]}) is shipped
    # Far ahead on the search seed is no help; ahead on both fresh seeds is.
    assert pick([better, shipped], shipped, {0: [0.74, 0.75], 8: [0.73, 0.76]}) is shipped
    behind = trial(9, 0.70)
    assert pick([behind, shipped], shipped, {0: [0.74, 0.75], 9: [0.745, 0.76]}) is behind
    # Of those ahead on every fresh seed, the best fresh mean wins.
    confirm = {0: [0.74, 0.74], 6: [0.75, 0.76], 7: [0.77, 0.75], 8: [0.80, 0.70]}
    assert pick([lucky, steady, better, shipped], shipped, confirm) is steady
    # A diverged run (None) loses its seed, and beats no one there.
    assert pick([lucky, shipped], shipped, {0: [None, 0.74], 6: [0.70, 0.75]}) is lucky
    assert pick([lucky, shipped], shipped, {0: [0.74, 0.74], 6: [None, 0.80]}) is shipped
    # No fresh seeds (--finalists 0): the best search score; no incumbent: the best fresh mean.
    assert pick([lucky, shipped], shipped, {}) is lucky
    assert pick([lucky, steady], None, {6: [0.70, 0.71], 7: [0.75, 0.70]}) is steady


def test_trials_too_long_for_the_timeout_are_said_to_be(
    tmp_path, synthetic_root, teacher_weights, capsys
):
    """A student config's full schedule makes a trial too long for a search: when fewer
    than half the trials asked for can start in --timeout, the tuner says so and still
    picks from those that ran."""
    out = tmp_path / 'tune'
    args = ('--trials', '4', '--iters', '2', '--timeout', '1', '--finalists', '0')
    result = run_cli(
        *tune_args(TEACHER, teacher_weights, student_on(tmp_path, synthetic_root), str(out), *args),
        '--allow_weak_teacher',
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    warning = re.findall(
        r'Warning: the student alone took \d+ s for 2 iterations, so at most about 1 of the 4 '
        r'trials can start within --timeout 1 s: give a smaller --iters for short trials, or a '
        r'larger --timeout',
        result.stdout,
    )
    assert len(warning) == 1, result.stdout[-3000:]
    assert len(json.load(open(out / 'trials.json'))['trials']) < 4
    assert (out / 'best_student.yml').exists()
    capsys.readouterr()
    warn_if_trials_are_long(40, 150, 24, 540)  # 13 fit, half of 24 or more: nothing to say
    assert capsys.readouterr().out == ''
    warn_if_trials_are_long(50, 150, 24, 540)  # 10 fit
    assert capsys.readouterr().out.startswith('Warning: the student alone took 50 s for 150 ')


@pytest.mark.parametrize(
    'dic, own',
    [
        ({}, False),
        ({'distill_loss': None}, False),
        ({'distill_loss': {'types': [], 'coef': []}}, False),
        ({'distill_loss': {'types': [{'type': 'KLDivergenceLoss'}], 'coef': [1]}}, True),
        ({'distill_features': [{'student': 'a', 'teacher': 'b', 'loss': {}}]}, True),
        ({'distill_loss': 'KL'}, True),  # malformed: its run says what is wrong
    ],
)
def test_a_student_config_with_distill_terms_has_its_own_recipe(dic, own):
    assert has_own_recipe(SimpleNamespace(dic=dic)) is own


def test_only_a_nan_loss_exit_is_a_divergence(tmp_path):
    log = tmp_path / 'run.log'
    log.write_text('error: something\n')
    with pytest.raises(RunDiverged, match=r'run failed \(exit 3\): error: something'):
        check_exit(3, str(log), 'run')
    with pytest.raises(RuntimeError) as raised:
        check_exit(1, str(log), 'run')
    assert not isinstance(raised.value, RunDiverged)


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


@pytest.mark.parametrize(
    'flag, message',
    [
        (('--finalists', '-1'), '--finalists -1: give 0 (pick on one seed) or more'),
        (
            ('--confirm_seeds', '0'),
            '--confirm_seeds 0: give 1 or more (--finalists 0 picks on one seed)',
        ),
    ],
)
def test_a_bad_finalists_or_confirm_seeds_count_is_one_line(tmp_path, flag, message):
    result = run_cli(
        *tune_args(
            TEACHER,
            str(tmp_path / 'unused.pdparams'),
            os.path.join(TEST_CONFIGS, 'tiny_student.yml'),
            str(tmp_path / 'tune'),
            *flag,
        )
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f'tune.py: error: {message}'
    assert not (tmp_path / 'tune').exists()


def test_a_search_is_not_continued_with_other_inputs(tmp_path, synthetic_root):
    """The same --out continues a search only for the same pair, data, weights, iterations
    and seed: otherwise its trials would mix two searches. Refused before anything in it
    is touched."""
    weights = tmp_path / 'teacher.pdparams'
    weights.write_bytes(b'weights')
    student = student_on(tmp_path, synthetic_root)
    out = tmp_path / 'tune'
    out.mkdir()
    (out / 'tune_train.txt').write_text('the earlier split\n')
    inputs = search_inputs(TEACHER, str(weights), student, 4, 0)
    (out / 'search.json').write_text(json.dumps({**inputs, 'student_config': 'other'}))
    result = run_cli(*tune_args(TEACHER, str(weights), student, str(out), '--iters', '4'))
    assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip() == (
        f'tune.py: error: {out} holds a search with another student_config than {student}: '
        f'give a new --out to search for these inputs, or delete {out} to start over'
    )
    assert (out / 'tune_train.txt').read_text() == 'the earlier split\n'
    assert sorted(os.listdir(out)) == ['search.json', 'tune_train.txt']
    # Changed weights are another search too; the same inputs are the same search.
    (out / 'search.json').write_text(json.dumps(inputs))
    weights.write_bytes(b'other weights')
    with pytest.raises(TuneError, match='another teacher_weights than'):
        check_same_search(str(out), search_inputs(TEACHER, str(weights), student, 4, 0), NAMES)
    weights.write_bytes(b'weights')
    check_same_search(str(out), search_inputs(TEACHER, str(weights), student, 4, 0), NAMES)


NAMES = {
    key: key for key in ('teacher_config', 'teacher_weights', 'student_config', 'iters', 'seed')
}
