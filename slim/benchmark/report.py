"""report.md, report.json and the figures of a teacher / student / distilled comparison."""

import json
import os

import numpy as np
from paddleseg.cvlibs import SegBuilder

from paddleseg_ext.components import build
from paddleseg_ext.config import load_config
from paddleseg_ext.deploy.measure import params_and_flops
from paddleseg_ext.evaluation.evaluate import constant_prediction_metrics
from paddleseg_ext.evaluation.task import TASKS
from slim.benchmark.runs import run_logged

PER_SEED_SCORES = ('student', 'distilled', 'gain', 'gap_closed')


def gap_closed(teacher, student, distilled):
    gap = teacher - student
    return (distilled - student) / gap if gap > 0 else float('nan')


def mean_and_std(per_seed):
    """Mean and std over the seeds of the students' scores and the gain."""
    keys = ('student', 'distilled', 'gain')
    return (
        {key: float(np.mean([r[key] for r in per_seed])) for key in keys},
        {key: float(np.std([r[key] for r in per_seed])) for key in keys},
    )


def sign_flip_p(gains, exact_up_to=16, draws=65536):
    """One-sided p-value of a mean gain above 0 by the paired sign-flip (permutation) test:
    the share of the 2^n ways to flip the gains' signs whose mean is at least the observed
    one. Exact up to `exact_up_to` seeds, else from `draws` seeded random flips. It needs no
    normality, and says plainly what few seeds can show: n seeds never give less than 1/2^n."""
    gains = np.asarray(gains, dtype=np.float64)
    n = len(gains)
    exact = n <= exact_up_to
    if exact:
        patterns = np.arange(2**n)[:, None] >> np.arange(n) & 1
    else:
        patterns = np.random.default_rng(0).integers(0, 2, size=(draws, n))
    at_least = int(np.sum(((1 - 2 * patterns) * gains).mean(axis=1) >= gains.mean() - 1e-12))
    # Drawn, the observed signs count once more: a p-value of 0 would claim too much.
    return at_least / len(patterns) if exact else (at_least + 1) / (len(patterns) + 1)


def verdict(per_seed):
    """How many seeds the distilled student is ahead in, and the sign-flip p of the gain."""
    gains = [r['gain'] for r in per_seed]
    return {'seeds_ahead': int(sum(g > 0 for g in gains)), 'p_gain': sign_flip_p(gains)}


def verdict_line(figures, seeds):
    """The report's line on how often distillation is ahead, and what that is worth."""
    if seeds == 1:
        return (
            f'{"Ahead of" if figures["seeds_ahead"] else "Not ahead of"} the student alone in '
            'this seed; how often it is needs more seeds: '
            'tools/benchmark_quality.py --seeds 0 1 2 3 4 5.'
        )
    return (
        f'Ahead of the student alone in {figures["seeds_ahead"]} of {seeds} seeds; the '
        f'sign-flip test of the mean gain gives p = {figures["p_gain"]:.3g} (one-sided; '
        f'{seeds} seeds cannot give less than {0.5**seeds:.3g}).'
    )


def per_seed_line(per_seed):
    """'seed S: student -> distilled (gain), ...' in points."""
    return ', '.join(
        f'seed {r["seed"]}: {100 * r["student"]:.2f} -> '
        f'{100 * r["distilled"]:.2f} ({100 * r["gain"]:+.2f})'
        for r in per_seed
    )


def test_set_summary(test_data, teacher, results):
    """report.json's 'test': the test set's figures, laid out as the val set's."""
    mean, std = mean_and_std([r['test'] for r in results])
    return {
        'data': test_data,
        'teacher': teacher['test'],
        **mean,
        'gap_closed': gap_closed(teacher['test'], mean['student'], mean['distilled']),
        **verdict([r['test'] for r in results]),
        'std': std,
        'per_seed': [
            {'seed': r['seed'], **{k: r['test'][k] for k in PER_SEED_SCORES}} for r in results
        ],
    }


def background_only_miou(setup):
    """val mIoU of predicting class 0 (background) at every pixel: the floor."""

    config = load_config(
        setup.student_config,
        opts=[f'val_dataset.dataset_root={setup.data}'],
        required=('val_dataset',),
    )
    return constant_prediction_metrics(build(SegBuilder(config), 'val_dataset'), 0)['miou']


def write_report(setup, out_dir, teacher, results, card):
    """report.md, report.json and report.png in out_dir; returns the markdown."""

    os.makedirs(out_dir, exist_ok=True)
    recipe, size, card_size = setup.recipe, setup.input_size, setup.card_size
    metric = TASKS[setup.task].primary_label
    configs = (('teacher', setup.teacher_config), ('student', setup.student_config))
    stats = {name: params_and_flops(config, size) for name, config in configs}
    card_flops = {name: params_and_flops(config, card_size)[1] for name, config in configs}
    for name, model in (
        ('teacher', 'teacher'),
        ('student_fp32', 'student'),
        ('student_int8', 'student'),
    ):
        if name in card:
            card[name].update(params=stats[model][0], flops=card_flops[model])
    floor = background_only_miou(setup) if setup.task == 'segmentation' else None
    mean, std = mean_and_std(results)
    summary = {
        'teacher': teacher['score'],
        'student': mean['student'],
        'distilled': mean['distilled'],
        'gain': mean['gain'],
        'gap_closed': gap_closed(teacher['score'], mean['student'], mean['distilled']),
        **verdict(results),
        'task': setup.task,
        'metric': TASKS[setup.task].primary,
        'recipe': recipe,
        'student_config': setup.student_config,
        'teacher_config': setup.teacher_config,
        'std': std,
        'params': {k: v[0] for k, v in stats.items()},
        'flops': {k: v[1] for k, v in stats.items()},
        'per_seed': [{k: r[k] for k in ('seed', *PER_SEED_SCORES, 'seconds')} for r in results],
        'teacher_seconds': teacher['seconds'],
        'background_only': floor,
        'model_card': card,
    }
    test = test_set_summary(setup.test_data, teacher, results) if setup.test_data else None
    if test:
        summary['test'] = test

    def pm(key, figures=summary):
        value, spread = figures[key], figures['std'][key]
        return (
            f'{100 * value:.2f} ± {100 * spread:.2f}' if len(results) > 1 else f'{100 * value:.2f}'
        )

    # A column of scores per set: teacher, student alone, distilled student.
    columns = {
        f'val {metric} (%)': (f'{100 * teacher["score"]:.2f}', pm('student'), pm('distilled'))
    }
    if test:
        columns[f'test {metric} (%)'] = (
            f'{100 * test["teacher"]:.2f}',
            pm('student', test),
            pm('distilled', test),
        )
    table = [
        f'| model | params | FLOPs ({size}x{size} input) | {" | ".join(columns)} |',
        '|---|---|---' + '|---' * len(columns) + '|',
    ]
    for row, (label, model) in enumerate(
        (('teacher', 'teacher'), ('student alone', 'student'), ('distilled student', 'student'))
    ):
        table.append(
            f'| {label} | {stats[model][0] / 1e6:.1f} M | {stats[model][1] / 1e9:.2f} G | '
            + ' | '.join(scores[row] for scores in columns.values())
            + ' |'
        )
    lines = [
        f'# Distillation, recipe `{recipe}`, {len(results)} seed(s)',
        '',
        f'Teacher `{setup.teacher_config}`, student `{setup.student_config}`.',
        '',
        *table,
        '',
        f'Gain: {pm("gain")} {metric} points; gap closed: {100 * summary["gap_closed"]:.0f}% '
        f'(= (distilled - student) / (teacher - student)).'
        + (
            f' Predicting background everywhere scores {100 * floor:.2f} on this val set.'
            if floor is not None
            else ''
        ),
        '',
        'Per seed: ' + per_seed_line(results),
        '',
        verdict_line(summary, len(results)),
        '',
    ]
    if test:
        lines += [
            f'On the test set `{setup.test_data}`: gain {pm("gain", test)} {metric} points; '
            f'gap closed: {100 * test["gap_closed"]:.0f}%. best_model is chosen on the val '
            'set, so the test figures are the unbiased ones.',
            '',
            'Per seed on test: ' + per_seed_line(test['per_seed']),
            '',
            verdict_line(test, len(results)),
            '',
        ]
    if not card:
        lines.append('Model card (export, int8, latency): segmentation configs only.')
    else:
        lines += _card_lines(card, stats, card_flops, card_size)
    pictures = ['\n![scores and validation curves](report.png)\n']
    if setup.task == 'segmentation':  # tools/plot_run.py plots mIoU
        run_dirs = [os.path.join(out_dir, 'teacher')] * bool(teacher['curve']) + [
            r['run_dirs'][name] for r in results for name in ('student', 'distilled')
        ]
        plot_runs(run_dirs, os.path.join(out_dir, 'runs.png'))
        pictures.append('![loss terms and val mIoU per run (tools/plot_run.py)](runs.png)\n')
    markdown = '\n'.join(lines)
    with open(os.path.join(out_dir, 'report.md'), 'w') as f:
        f.write(markdown + '\n' + '\n'.join(pictures))
    with open(os.path.join(out_dir, 'report.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    plot_report(os.path.join(out_dir, 'report.png'), teacher, results, mean, metric)
    return markdown


def _card_lines(card, stats, card_flops, card_size):
    lines = [
        f'## Model card (CPU, one thread, one 1x3x{card_size}x{card_size} image)',
        '',
        'Latencies measured back to back in one run (Paddle Inference, oneDNN); the '
        "speed-up is the teacher's latency over the model's.",
        '',
        f'| model | params | FLOPs ({card_size}x{card_size}) | val mIoU (%) | '
        f'latency (ms) | speed-up |',
        '|---|---|---|---|---|---|',
    ]
    for name, label, stat in (
        ('teacher', 'teacher', 'teacher'),
        ('student_fp32', 'distilled student, fp32', 'student'),
        ('student_int8', 'distilled student, int8', 'student'),
    ):
        if name in card:
            speedup = card[name].get('speedup_vs_teacher')
            lines.append(
                f'| {label} | {stats[stat][0] / 1e6:.2f} M | '
                f'{card_flops[stat] / 1e9:.2f} G | {100 * card[name]["miou"]:.2f} | '
                f'{card[name]["latency_ms"]:.1f} | '
                f'{f"x{speedup:.2f}" if speedup else "1"} |'
            )
    if 'int8_error' in card:
        reason = card['int8_error'].replace('|', '\\|')  # a table cell
        lines.append(f'| distilled student, int8 | not measured: {reason} | | | | |')
    return lines


def plot_runs(run_dirs, path):
    """tools/plot_run.py's figure: each run's loss terms and val mIoU."""
    run_logged(['tools/plot_run.py', *run_dirs, '--out', path], path + '.log', 'plot')


def plot_report(path, teacher, results, mean, metric='mIoU'):
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (bars, curves) = plt.subplots(1, 2, figsize=(11, 4))
    names = ['teacher', 'student alone', 'distilled']
    values = [100 * teacher['score'], 100 * mean['student'], 100 * mean['distilled']]
    bars.bar(names, values, color=['#555555', '#d9822b', '#2b7bd9'])
    for x, v in enumerate(values):
        bars.text(x, v + 0.5, f'{v:.1f}', ha='center')
    bars.set_ylabel(f'val {metric} (%)')
    bars.set_ylim(min(values) - 10, 100)
    bars.set_title(f'best_model {metric}')
    if teacher['curve']:  # absent for a teacher given by --teacher_weights
        t_iters, t_scores = zip(*teacher['curve'])
        curves.plot(t_iters, [100 * m for m in t_scores], color='#555555', label='teacher')
    for result in results:
        for name, color in (('student', '#d9822b'), ('distilled', '#2b7bd9')):
            iters, scores = zip(*result['curves'][name])
            curves.plot(
                iters,
                [100 * m for m in scores],
                color=color,
                alpha=0.8,
                label=f'{name} (seed {result["seed"]})',
            )
    curves.set_xlabel('iteration')
    curves.set_ylabel(f'val {metric} (%)')
    curves.set_title(f'validation {metric} during training')
    curves.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
