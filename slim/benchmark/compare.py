"""Teacher vs student alone vs distilled student: train, score, compare, report.

Shared by tools/demo.py (one seed, a report) and tools/benchmark_quality.py (K seeds).
"""
import os
import time

from paddleseg_ext.datasets.synthetic import make_synthetic
from slim.benchmark.model_card import model_card
from slim.benchmark.report import gap_closed, write_report
from slim.benchmark.runs import best_miou, data_opts, train, val_curve, val_miou


def ensure_data(setup):
    """Synthetic data where the folders are missing: 200 images for the students (160
    train, 40 val) and, from another seed, 1,000 training images for the teacher."""
    for root, n_images, seed, val_fraction in ((setup.data, 200, 0, 0.2),
                                               (setup.teacher_data, 1000, 7, 0.01)):
        if not os.path.isfile(os.path.join(root, 'train_list.txt')):
            print(f'Preparing {n_images} synthetic optic disc images in {root}', flush=True)
            make_synthetic(root, n=n_images, seed=seed, val_fraction=val_fraction)


def train_teacher(setup, out_dir, iters, seed):
    """Trains the teacher once; {'weights', 'miou', 'curve', 'seconds'}."""
    run_dir = os.path.join(out_dir, 'teacher')
    print(f'Training the teacher ({setup.teacher_config}, {iters} iters)', flush=True)
    seconds = train(run_dir, setup.teacher_config, iters, seed,
                    data_opts(setup.teacher_data, setup.data), 'teacher')
    return {'weights': os.path.join(run_dir, 'best_model', 'model.pdparams'),
            'miou': best_miou(run_dir, setup.teacher_config, setup.data),
            'curve': val_curve(run_dir), 'seconds': seconds}


def score_teacher(setup, weights):
    """A teacher trained earlier: its val mIoU (no curve, no training time)."""
    out = os.path.join(os.path.dirname(os.path.abspath(weights)), 'teacher_metrics.json')
    return {'weights': weights, 'miou': val_miou(setup.teacher_config, weights, out, setup.data),
            'curve': [], 'seconds': 0.0}


def compare_students(setup, out_dir, seed, iters, teacher):
    """Student alone and distilled student, same seed and iteration budget."""
    runs = {'student': (os.path.join(out_dir, f'student_seed{seed}'), None),
            'distilled': (os.path.join(out_dir, f'distilled_{setup.recipe}_seed{seed}'),
                          (setup.teacher_config, teacher['weights']))}
    result = {'seed': seed, 'teacher': teacher['miou'], 'curves': {}, 'seconds': {}}
    for name, (run_dir, teacher_arg) in runs.items():
        title = 'student alone' if name == 'student' else 'distilled student'
        print(f'Training the {title} (seed {seed}, {iters} iters, {setup.recipe})', flush=True)
        result['seconds'][name] = train(run_dir, setup.student_config, iters, seed,
                                        data_opts(setup.data, setup.data), name,
                                        teacher=teacher_arg)
        result[name] = best_miou(run_dir, setup.student_config, setup.data)
        result['curves'][name] = val_curve(run_dir)
    result['gain'] = result['distilled'] - result['student']
    result['gap_closed'] = gap_closed(result['teacher'], result['student'], result['distilled'])
    return result


def run(setup, out_dir, seeds, teacher_iters, student_iters, teacher_weights=None):
    """Data if missing, the teacher (trained once, or given), the students per seed, the
    report; prints the table."""
    start = time.time()
    ensure_data(setup)
    if teacher_weights:
        teacher = score_teacher(setup, teacher_weights)
    else:
        teacher = train_teacher(setup, out_dir, teacher_iters, seeds[0])
    results = [compare_students(setup, out_dir, seed, student_iters, teacher) for seed in seeds]
    card = model_card(setup, out_dir, teacher, results[0])
    print(write_report(setup, out_dir, teacher, results, card))
    print(f'Finished in {time.time() - start:.0f} s; report: {out_dir}/report.md, '
          f'report.json, report.png', flush=True)
