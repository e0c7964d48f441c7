"""The demo's pipeline end to end on tiny configs: tools/benchmark_quality.py (which
tools/demo.py runs with one seed) trains, scores, exports, quantizes and reports."""
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
