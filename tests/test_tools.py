"""The benchmarks end to end on tiny configs: tools/benchmark_quality.py (the demo's
pipeline; tools/demo.py runs it with one seed) trains, scores, exports, quantizes and
reports; tools/benchmark_speed.py times every mode through the real loop."""
import json
import os

from conftest import TEST_CONFIGS, run_cli


def test_benchmark_quality_writes_the_report(tmp_path, synthetic_root):
    out = tmp_path / 'benchmark'
    result = run_cli('tools/benchmark_quality.py',
                     '--teacher_config', os.path.join(TEST_CONFIGS, 'tiny_teacher.yml'),
                     '--student_config', os.path.join(TEST_CONFIGS, 'tiny_student.yml'),
                     '--data', synthetic_root, '--teacher_data', synthetic_root,
                     '--teacher_iters', '2', '--student_iters', '2', '--seeds', '0',
                     '--out', str(out), timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(out / 'report.json') as f:
        report = json.load(f)
    for key in ('teacher', 'student', 'distilled'):
        assert 0.0 <= report[key] <= 1.0
    assert abs(report['gain'] - (report['distilled'] - report['student'])) < 1e-9
    card = report['model_card']
    assert set(card) == {'teacher', 'student_fp32', 'student_int8'}
    assert all(card[name]['latency_ms'] > 0 for name in card)
    markdown = (out / 'report.md').read_text()
    assert '| distilled student, int8 |' in markdown and 'gap closed' in markdown
    for picture in ('report.png', 'runs.png'):
        assert (out / picture).stat().st_size > 1000


def test_benchmark_speed_measures_every_mode(tmp_path, synthetic_root):
    result = run_cli('tools/benchmark_speed.py',
                     '--teacher_config', os.path.join(TEST_CONFIGS, 'tiny_teacher.yml'),
                     '--student_config', os.path.join(TEST_CONFIGS, 'tiny_student_cwd.yml'),
                     '--data', synthetic_root, '--warmup', '1', '--iters', '2', '--rounds', '1',
                     '--json', str(tmp_path / 'speed.json'), timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(tmp_path / 'speed.json') as f:
        speed = json.load(f)
    modes = ('student', 'anchor', 'online_dygraph', 'online', 'cached')
    assert set(speed['ips']) == set(modes) and all(speed['ips'][m] > 0 for m in modes)
    assert all(speed['modes'][m]['timed_iters'] == 2 for m in modes)
    assert speed['modes']['online']['teacher_backend'].startswith('CPU oneDNN')
    assert 'teacher_backend' not in speed['modes']['online_dygraph']
    assert speed['modes']['cached']['cache_entries'] == 2 * speed['modes']['cached'][
        'train_images']
    ratios = speed['ratios']
    assert abs(ratios['online_vs_anchor'] - speed['ips']['online'] / speed['ips']['anchor']) \
        < 1e-9
    cached, online = speed['modes']['cached'], speed['modes']['online']
    assert ratios['cache_build_s'] == max(cached['first_epoch_s'] - online['first_epoch_s'], 0)
    assert cached['first_epoch_s'] > 0 and online['first_epoch_s'] > 0
    assert '| online |' in result.stdout and 'online / anchor ips' in result.stdout
