"""Teacher vs student alone vs distilled student: train, score, compare, report.

Shared by tools/demo.py (one seed, a report) and tools/benchmark_quality.py (K seeds).
"""
import hashlib
import json
import os
import shutil
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
                    data_opts(setup.teacher_data, setup.data), 'teacher',
                    cpu_threads=setup.cpu_threads)
    return {'weights': os.path.join(run_dir, 'best_model', 'model.pdparams'),
            'miou': best_miou(run_dir, setup.teacher_config, setup.data),
            'curve': val_curve(run_dir), 'seconds': seconds}


def score_teacher(setup, weights):
    """A teacher trained earlier: its val mIoU (no curve, no training time)."""
    out = os.path.join(os.path.dirname(os.path.abspath(weights)), 'teacher_metrics.json')
    return {'weights': weights, 'miou': val_miou(setup.teacher_config, weights, out, setup.data),
            'curve': [], 'seconds': 0.0}


def student_alone_key(setup, seed, iters):
    """A digest of what a student-alone run depends on: the student config without its
    distill terms (train.py ignores them), the seed, the iterations and the data. The
    recipes of one student share it, so their student-alone runs are one run."""
    import paddleseg_ext  # noqa: F401  (before paddle)
    from paddleseg_ext.config import load_config
    config = {key: value for key, value in load_config(setup.student_config).dic.items()
              if key not in ('distill_loss', 'distill_features')}
    payload = json.dumps({'config': config, 'seed': seed, 'iters': iters,
                          'data': os.path.abspath(setup.data)}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def student_alone(setup, runs_dir, seed, iters):
    """The student alone: {'miou', 'curve', 'seconds', 'run_dir'}; a finished run with the
    same key in runs_dir is reused (its alone.json holds the figures)."""
    run_dir = os.path.join(runs_dir, f'student_seed{seed}_{student_alone_key(setup, seed, iters)}')
    record_path = os.path.join(run_dir, 'alone.json')
    if os.path.isfile(record_path):
        print(f'Reusing the student alone (seed {seed}, {iters} iters): {run_dir}', flush=True)
        with open(record_path) as f:
            return json.load(f)
    if os.path.isdir(run_dir):  # an unfinished run: start it again
        shutil.rmtree(run_dir)
    print(f'Training the student alone (seed {seed}, {iters} iters)', flush=True)
    seconds = train(run_dir, setup.student_config, iters, seed,
                    data_opts(setup.data, setup.data), 'student', cpu_threads=setup.cpu_threads)
    record = {'miou': best_miou(run_dir, setup.student_config, setup.data),
              'curve': val_curve(run_dir), 'seconds': seconds, 'run_dir': run_dir}
    with open(record_path, 'w') as f:
        json.dump(record, f, indent=2)
    return record


def compare_students(setup, out_dir, seed, iters, teacher, student_runs=None):
    """Student alone and distilled student, same seed and iteration budget. The student
    alone is looked up in (or trained into) student_runs, out_dir by default."""
    alone = student_alone(setup, student_runs or out_dir, seed, iters)
    run_dir = os.path.join(out_dir, f'distilled_{setup.recipe}_seed{seed}')
    print(f'Training the distilled student (seed {seed}, {iters} iters, {setup.recipe})',
          flush=True)
    seconds = train(run_dir, setup.student_config, iters, seed, data_opts(setup.data, setup.data),
                    'distilled', teacher=(setup.teacher_config, teacher['weights']),
                    cpu_threads=setup.cpu_threads)
    result = {'seed': seed, 'teacher': teacher['miou'], 'student': alone['miou'],
              'distilled': best_miou(run_dir, setup.student_config, setup.data),
              'curves': {'student': alone['curve'], 'distilled': val_curve(run_dir)},
              'seconds': {'student': alone['seconds'], 'distilled': seconds},
              'run_dirs': {'student': alone['run_dir'], 'distilled': run_dir}}
    result['gain'] = result['distilled'] - result['student']
    result['gap_closed'] = gap_closed(result['teacher'], result['student'], result['distilled'])
    return result


def run(setup, out_dir, seeds, teacher_iters, student_iters, teacher_weights=None,
        student_runs=None):
    """Data if missing, the teacher (trained once, or given), the students per seed, the
    report; prints the table. student_runs: where student-alone runs are kept and reused
    (out_dir by default)."""
    start = time.time()
    ensure_data(setup)
    if teacher_weights:
        teacher = score_teacher(setup, teacher_weights)
    else:
        teacher = train_teacher(setup, out_dir, teacher_iters, seeds[0])
    results = [compare_students(setup, out_dir, seed, student_iters, teacher, student_runs)
               for seed in seeds]
    card = model_card(setup, out_dir, teacher, results[0])
    print(write_report(setup, out_dir, teacher, results, card))
    print(f'Finished in {time.time() - start:.0f} s; report: {out_dir}/report.md, '
          f'report.json, report.png', flush=True)
