"""The benchmarks end to end on tiny configs: tools/benchmark_quality.py (the demo's
pipeline; tools/demo.py runs it with one seed) trains, scores, exports, quantizes and
reports; tools/benchmark_speed.py times every mode through the real loop."""

import glob
import itertools
import json
import os

import numpy as np
import pytest
from conftest import TEST_CONFIGS, data_opts, run_cli

from paddleseg_ext.datasets.synthetic import make_synthetic

TINY_TEACHER = os.path.join(TEST_CONFIGS, 'tiny_teacher.yml')
TINY_STUDENT = os.path.join(TEST_CONFIGS, 'tiny_student.yml')


def tiny_benchmark(data_root, out, *flags):
    """tools/benchmark_quality.py on the tiny configs, one seed, two iterations a run."""
    result = run_cli(
        'tools/benchmark_quality.py',
        '--teacher_config',
        TINY_TEACHER,
        '--student_config',
        TINY_STUDENT,
        '--data',
        data_root,
        '--teacher_data',
        data_root,
        '--teacher_iters',
        '2',
        '--student_iters',
        '2',
        '--seeds',
        '0',
        '--card_size',
        '96',
        '--allow_weak_teacher',
        '--out',
        str(out),
        *flags,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope='module')
def benchmark_out(tmp_path_factory, synthetic_root):
    """The folder of one tiny benchmark without a test set, shared by the tests below."""
    out = tmp_path_factory.mktemp('benchmark')
    tiny_benchmark(synthetic_root, out)
    return out


def test_benchmark_quality_writes_the_report(benchmark_out):
    out = benchmark_out
    with open(out / 'report.json') as f:
        report = json.load(f)
    assert 'test' not in report  # no --test_data
    for key in ('teacher', 'student', 'distilled'):
        assert 0.0 <= report[key] <= 1.0
    assert abs(report['gain'] - (report['distilled'] - report['student'])) < 1e-9
    card = report['model_card']
    assert set(card) == {'teacher', 'student_fp32', 'student_int8'}
    assert all(card[name]['latency_ms'] > 0 and card[name]['input_size'] == 96 for name in card)
    for name in ('student_fp32', 'student_int8'):
        assert (
            abs(
                card[name]['speedup_vs_teacher']
                - card['teacher']['latency_ms'] / card[name]['latency_ms']
            )
            < 1e-9
        )
    assert card['teacher']['params'] == report['params']['teacher']
    assert card['student_fp32']['params'] == report['params']['student']
    assert 0.0 < report['background_only'] < 0.5  # two classes, class 1 scores 0
    assert report['seeds_ahead'] == int(report['gain'] > 0)
    assert report['p_gain'] == (0.5 if report['gain'] > 0 else 1.0)  # one seed: 1/2 at best
    markdown = (out / 'report.md').read_text()
    assert '| distilled student, int8 |' in markdown and 'gap closed' in markdown
    assert (
        f'{"Ahead of" if report["seeds_ahead"] else "Not ahead of"} the student alone in this '
        'seed; how often it is needs more seeds: tools/benchmark_quality.py --seeds 0 1 2 3 '
        '4 5.'
    ) in markdown
    for picture in ('report.png', 'runs.png'):
        assert (out / picture).stat().st_size > 1000


@pytest.mark.parametrize(
    'gains',
    [[3.0, 2.0, 1.0], [1.0, -1.0], [0.5, -2.0, 1.5, 0.25, 3.0, -0.5], [0.0, 0.0, 0.0], [-1.0]],
)
def test_sign_flip_p_matches_enumerating_every_flip(gains):
    from slim.benchmark.report import sign_flip_p

    observed = np.mean(gains)
    flipped = [
        np.mean([s * g for s, g in zip(signs, gains)])
        for signs in itertools.product((1, -1), repeat=len(gains))
    ]
    expected = np.mean([m >= observed - 1e-12 for m in flipped])
    assert sign_flip_p(gains) == pytest.approx(expected, abs=1e-12)


def test_the_verdict_line_gives_the_seeds_ahead_and_the_p_value():
    from slim.benchmark.report import verdict, verdict_line

    figures = verdict([{'gain': g} for g in (0.02, 0.01, -0.005)])
    assert figures == {'seeds_ahead': 2, 'p_gain': 0.25}
    assert verdict_line(figures, 3) == (
        'Ahead of the student alone in 2 of 3 seeds; the sign-flip test of the mean gain '
        'gives p = 0.25 (one-sided; 3 seeds cannot give less than 0.125).'
    )


def test_sign_flip_p_of_many_seeds_is_drawn_and_never_zero():
    from slim.benchmark.report import sign_flip_p

    assert sign_flip_p([1.0] * 20, exact_up_to=16, draws=1000) == pytest.approx(1 / 1001)
    p = sign_flip_p([1.0, -0.5] * 10, exact_up_to=16, draws=20000)
    exact = sign_flip_p([1.0, -0.5] * 10, exact_up_to=20)
    assert abs(p - exact) < 0.02


def test_benchmark_quality_scores_reused_runs_on_a_test_set(
    tmp_path, synthetic_root, benchmark_out
):
    """--test_data: val.py scores each best_model, chosen on the val set, on the test set's
    val list too: a given teacher, a fresh run, and a student-alone run shared from a
    benchmark without a test set (--student_runs), which is not trained again."""
    test_root = str(tmp_path / 'test_set')
    make_synthetic(test_root, n=16, seed=1, min_size=64, max_size=96)  # not the val images
    out = tmp_path / 'benchmark'
    teacher = str(benchmark_out / 'teacher' / 'best_model' / 'model.pdparams')
    result = tiny_benchmark(
        synthetic_root,
        out,
        '--student_runs',
        str(benchmark_out),
        '--teacher_weights',
        teacher,
        '--test_data',
        test_root,
    )
    assert 'Reusing the student alone' in result.stdout
    assert 'Training the student alone' not in result.stdout
    report = json.loads((out / 'report.json').read_text())
    test = report['test']
    assert test['data'] == test_root
    [student] = glob.glob(str(benchmark_out / 'student_seed0_*'))
    [distilled] = glob.glob(str(out / 'distilled_custom_seed0_*'))
    for name, config, weights in (
        ('teacher', TINY_TEACHER, teacher),
        ('student', TINY_STUDENT, os.path.join(student, 'best_model', 'model.pdparams')),
        ('distilled', TINY_STUDENT, os.path.join(distilled, 'best_model', 'model.pdparams')),
    ):
        reference = tmp_path / f'{name}_on_test.json'
        scored = run_cli(
            'val.py',
            '--config',
            config,
            '--model_path',
            weights,
            '--json',
            str(reference),
            *data_opts(test_root),
        )
        assert scored.returncode == 0, scored.stdout[-3000:] + scored.stderr[-3000:]
        assert test[name] == json.loads(reference.read_text())['miou'] != report[name]
    assert test['gain'] == test['distilled'] - test['student']
    assert test['seeds_ahead'] == int(test['gain'] > 0) and 'p_gain' in test
    assert test['per_seed'][0]['student'] == test['student']
    with open(os.path.join(student, 'record.json')) as f:
        record = json.load(f)
    assert record['test'] == {test_root: test['student']}
    assert os.path.isfile(os.path.join(student, 'best_model', 'test_metrics.json'))
    markdown = (out / 'report.md').read_text()
    assert '| val mIoU (%) | test mIoU (%) |' in markdown
    assert f'On the test set `{test_root}`: gain ' in markdown
    assert 'best_model is chosen on the val set' in markdown
    assert f'Per seed on test: seed 0: {100 * test["student"]:.2f} -> ' in markdown


def test_benchmark_speed_measures_every_mode(tmp_path, synthetic_root):
    result = run_cli(
        'tools/benchmark_speed.py',
        '--teacher_config',
        os.path.join(TEST_CONFIGS, 'tiny_teacher.yml'),
        '--student_config',
        os.path.join(TEST_CONFIGS, 'tiny_student_cwd.yml'),
        '--data',
        synthetic_root,
        '--warmup',
        '1',
        '--iters',
        '2',
        '--rounds',
        '1',
        '--json',
        str(tmp_path / 'speed.json'),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(tmp_path / 'speed.json') as f:
        speed = json.load(f)
    modes = ('student', 'anchor', 'online_dygraph', 'online', 'cached')
    assert set(speed['ips']) == set(modes) and all(speed['ips'][m] > 0 for m in modes)
    assert all(speed['modes'][m]['timed_iters'] == 2 for m in modes)
    assert speed['modes']['online']['teacher_backend'].startswith('CPU oneDNN')
    assert 'teacher_backend' not in speed['modes']['online_dygraph']
    assert speed['modes']['cached']['cache_entries'] == 2 * speed['modes']['cached']['train_images']
    ratios = speed['ratios']
    assert abs(ratios['online_vs_anchor'] - speed['ips']['online'] / speed['ips']['anchor']) < 1e-9
    cached, online = speed['modes']['cached'], speed['modes']['online']
    assert ratios['cache_build_s'] == max(cached['first_epoch_s'] - online['first_epoch_s'], 0)
    assert cached['first_epoch_s'] > 0 and online['first_epoch_s'] > 0
    assert '| online |' in result.stdout and 'online / anchor ips' in result.stdout


def test_student_runs_are_keyed_shared_by_recipes_and_reused(tmp_path, monkeypatch):
    from slim.benchmark import compare
    from slim.benchmark.recipes import Setup

    base = os.path.join(TEST_CONFIGS, 'tiny_student.yml')
    with_features = os.path.join(TEST_CONFIGS, 'tiny_student_cwd.yml')
    teacher_config = os.path.join(TEST_CONFIGS, 'tiny_teacher.yml')
    weights = tmp_path / 'teacher.pdparams'
    weights.write_bytes(b'weights')

    def setup(config, data='data/a'):
        return Setup(
            recipe='r',
            teacher_config=teacher_config,
            student_config=config,
            data=data,
            teacher_data='data/t',
        )

    key = compare.run_key(setup(base), 0, 10)
    # Only the distill terms differ between these two configs: one student-alone run.
    assert compare.run_key(setup(with_features), 0, 10) == key
    assert compare.run_key(setup(base), 1, 10) != key
    assert compare.run_key(setup(base), 0, 20) != key
    assert compare.run_key(setup(base, data='data/b'), 0, 10) != key
    # Distilled runs depend on the distill terms and the teacher's weights.
    distilled = compare.run_key(setup(base), 0, 10, str(weights))
    assert distilled != key
    assert compare.run_key(setup(with_features), 0, 10, str(weights)) != distilled
    weights.write_bytes(b'other weights')
    assert compare.run_key(setup(base), 0, 10, str(weights)) != distilled

    run_dir = tmp_path / f'student_seed0_{key}'
    run_dir.mkdir()
    record = {'miou': 0.5, 'curve': [[10, 0.5]], 'seconds': 1.0, 'run_dir': str(run_dir)}
    (run_dir / 'record.json').write_text(json.dumps(record))
    monkeypatch.setattr(compare, 'train', lambda *a, **k: pytest.fail('trained again'))
    assert compare.student_run(setup(with_features), str(tmp_path), 0, 10) == record


def test_distilled_runs_keep_a_teacher_cache_in_their_folder_when_the_task_asks(
    tmp_path, monkeypatch
):
    from slim.benchmark import compare
    from slim.benchmark.recipes import TASK_DEFAULTS, Setup

    assert TASK_DEFAULTS['classification']['teacher_cache']
    weights = tmp_path / 'teacher.pdparams'
    weights.write_bytes(b'weights')
    caches = {}

    def fake_train(run_dir, config, iters, seed, opts, label, teacher=None, **kwargs):
        caches[os.path.basename(run_dir).split('_seed')[0]] = kwargs['teacher_cache']
        os.makedirs(run_dir)
        return 1.0

    monkeypatch.setattr(compare, 'train', fake_train)
    monkeypatch.setattr(compare, 'best_score', lambda *a: 0.5)
    monkeypatch.setattr(compare, 'val_curve', lambda run, task: [])
    keys = []
    for cache in (False, True):
        setup = Setup(
            recipe='r',
            teacher_config=os.path.join(TEST_CONFIGS, 'tiny_teacher.yml'),
            student_config=os.path.join(TEST_CONFIGS, 'tiny_student.yml'),
            data='data/a',
            teacher_data='data/t',
            teacher_cache=cache,
        )
        alone = compare.student_run(setup, str(tmp_path / str(cache)), 0, 10)
        distilled = compare.student_run(setup, str(tmp_path / str(cache)), 0, 10, str(weights))
        keys.append((alone['run_dir'][-12:], distilled['run_dir'][-12:]))
        assert caches['student'] is None
        assert caches['distilled_r'] == (
            os.path.join(distilled['run_dir'], 'teacher_cache') if cache else None
        )
    # Cached teacher outputs are float16: a cached run is not an online run's twin.
    assert keys[0][0] == keys[1][0] and keys[0][1] != keys[1][1]


def test_student_runs_train_side_by_side_on_a_share_of_the_cores(tmp_path, monkeypatch):
    import threading

    from slim.benchmark import compare
    from slim.benchmark.recipes import Setup

    setup = Setup(
        recipe='r',
        teacher_config=os.path.join(TEST_CONFIGS, 'tiny_teacher.yml'),
        student_config=os.path.join(TEST_CONFIGS, 'tiny_student.yml'),
        data='data/a',
        teacher_data='data/t',
        jobs=2,
    )
    weights = tmp_path / 'teacher.pdparams'
    weights.write_bytes(b'weights')
    # Each run waits for a second one to start: runs one after the other would time out.
    both_running = threading.Barrier(2, timeout=10)
    threads, events = [], []

    def fake_train(run_dir, config, iters, seed, opts, label, teacher=None, **kwargs):
        threads.append(kwargs['cpu_threads'])
        both_running.wait()
        os.makedirs(run_dir, exist_ok=True)
        events.append('run done')
        return 1.0

    monkeypatch.setattr(os, 'cpu_count', lambda: 4)
    monkeypatch.setattr(compare, 'train', fake_train)
    monkeypatch.setattr(
        compare,
        'best_score',
        lambda run_dir, *a: (
            (0.6 if 'distilled' in run_dir else 0.5) + int(run_dir.split('_seed')[1][0])
        ),
    )
    monkeypatch.setattr(compare, 'val_curve', lambda run, task: [])
    pairs = compare.train_students(
        setup, str(tmp_path), [0, 1], 10, str(weights), then=lambda: events.append('then')
    )
    assert threads == [2, 2, 2, 2]
    # The queued task runs once, on a worker a finished run has freed.
    assert events.count('then') == 1 and events.index('then') >= 1
    assert [(alone['score'], distilled['score']) for alone, distilled in pairs] == [
        (0.5, 0.6),
        (1.5, 1.6),
    ]


@pytest.mark.parametrize(
    'flags, message',
    [
        (['--jobs', '0'], '--jobs 0: the number of runs side by side must be 1 or more'),
        (['--recipe', 'nope'], '--recipe nope: the segmentation recipes are '),
        (
            ['--test_data', 'no/test_set'],
            '--test_data no/test_set: no no/test_set/val_list.txt (the test list); make a test '
            'set with python tools/prepare_data.py --synthetic 500 --seed 3 --val_fraction 0.9 '
            '--out no/test_set',
        ),
    ],
)
def test_benchmark_quality_refuses_bad_flags_in_one_line(tmp_path, flags, message):
    result = run_cli('tools/benchmark_quality.py', *flags, '--out', str(tmp_path / 'out'))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr[-2000:]
    assert not (tmp_path / 'out').exists()


def test_benchmark_quality_refuses_its_val_set_as_the_test_set(tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'val_list.txt').write_text('a.png b.png\n')
    result = run_cli(
        'tools/benchmark_quality.py',
        '--data',
        str(data),
        '--test_data',
        str(data) + '/',
        '--out',
        str(tmp_path / 'out'),
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f'--test_data {data}/: this is the --data folder, whose val set chooses each '
        'best_model; give a test set of other images'
    )
    assert not (tmp_path / 'out').exists()


def test_an_interrupted_student_run_resumes(tmp_path, monkeypatch):
    from slim.benchmark import compare
    from slim.benchmark.recipes import Setup

    setup = Setup(
        recipe='r',
        teacher_config=os.path.join(TEST_CONFIGS, 'tiny_teacher.yml'),
        student_config=os.path.join(TEST_CONFIGS, 'tiny_student.yml'),
        data='data/a',
        teacher_data='data/t',
    )
    run_dir = tmp_path / f'student_seed0_{compare.run_key(setup, 0, 10)}'
    (run_dir / 'iter_5').mkdir(parents=True)
    calls = []
    monkeypatch.setattr(compare, 'train', lambda *a, **k: calls.append(k['resume']) or 1.0)
    monkeypatch.setattr(compare, 'best_score', lambda *a: 0.5)
    monkeypatch.setattr(compare, 'val_curve', lambda run, task: [])
    record = compare.student_run(setup, str(tmp_path), 0, 10)
    assert calls == [True] and (run_dir / 'iter_5').is_dir()
    assert json.loads((run_dir / 'record.json').read_text()) == record


def test_model_card_quotes_the_int8_step_that_failed(tmp_path, monkeypatch):
    """On paddle 3 the demo's MobileSeg student does not export in paddle 2's program format
    (tests/test_deploy.py runs that export): the card's int8 row quotes that error line, not
    a guess such as a missing PaddleSlim."""
    from types import SimpleNamespace

    from slim.benchmark import model_card
    from slim.benchmark.report import _card_lines
    from slim.benchmark.runs import check_exit

    cause = (
        "error: --program_format pdmodel: paddle 3.3.1 cannot trace this model into paddle 2's "
        'program format (one of its operations exists for PIR only)'
    )

    def run_logged(args, log_path, label):
        save_dir = args[args.index('--save_dir') + 1]
        if save_dir.endswith('student_pdmodel'):
            with open(log_path, 'w') as log:
                log.write(f'loading\n{cause}\n')
            check_exit(1, log_path, label)
        os.makedirs(save_dir)  # a paddle 3 export: model.json, no model.pdmodel

    monkeypatch.setattr(model_card, 'run_logged', run_logged)
    monkeypatch.setattr(model_card, 'card_latencies_ms', lambda dirs, size: [90.0, 10.0])
    os.makedirs(tmp_path / 'deploy')
    setup = SimpleNamespace(data='data', student_config='s.yml', card_size=64)
    result = {'run_dirs': {'distilled': str(tmp_path / 'distilled')}, 'distilled': 0.75}
    card = model_card.model_card(setup, str(tmp_path), {'score': 0.8}, result)

    assert set(card) == {'teacher', 'student_fp32', 'int8_error'}
    assert card['student_fp32']['speedup_vs_teacher'] == 9.0
    stats = {'teacher': (2e6, 0), 'student': (1e6, 0)}
    row = _card_lines(card, stats, {'teacher': 1e9, 'student': 1e8}, 64)[-1]
    assert row.startswith('| distilled student, int8 | not measured: export failed (exit 1): ')
    assert cause in row and 'export_student_pdmodel.log' in row
    assert 'PaddleSlim missing' not in row
