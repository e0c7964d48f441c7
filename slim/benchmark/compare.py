"""Teacher vs student alone vs distilled student: train, score, compare, report.

Shared by tools/demo.py (one seed, a report) and tools/benchmark_quality.py (K seeds).
"""

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

from paddleseg_ext.config import load_config
from paddleseg_ext.datasets.digits import write_digits
from paddleseg_ext.datasets.layout import list_file
from paddleseg_ext.datasets.synthetic import make_synthetic
from paddleseg_ext.evaluation.task import TASKS
from slim.benchmark.model_card import export_for_card, model_card
from slim.benchmark.report import gap_closed, write_report
from slim.benchmark.runs import best_score, data_opts, say, train, val_curve, val_score


def ensure_data(setup):
    """The data where the folders are missing. Segmentation: synthetic, 200 images for the
    students (160 train, 40 val) and, from another seed, 1,000 training images for the
    teacher. Classification: scikit-learn's digits."""
    if setup.task == 'classification':
        for root in sorted({setup.data, setup.teacher_data}):
            if not os.path.isfile(list_file(root, 'train')):
                print(f"Writing scikit-learn's digits to {root}", flush=True)
                write_digits(root)
        return
    for root, n_images, seed, val_fraction in (
        (setup.data, 200, 0, 0.2),
        (setup.teacher_data, 1000, 7, 0.01),
    ):
        if not os.path.isfile(list_file(root, 'train')):
            print(f'Preparing {n_images} synthetic optic disc images in {root}', flush=True)
            make_synthetic(
                root, n=n_images, seed=seed, val_fraction=val_fraction, workers=os.cpu_count() or 1
            )


def train_teacher(setup, out_dir, iters, seed):
    """Trains the teacher once; {'weights', 'run_dir', 'curve', 'seconds'}."""
    task = TASKS[setup.task]
    run_dir = os.path.join(out_dir, 'teacher')
    print(f'Training the teacher ({setup.teacher_config}, {iters} iters)', flush=True)
    seconds = train(
        run_dir,
        setup.teacher_config,
        iters,
        seed,
        data_opts(setup.teacher_data, setup.data, setup.task),
        'teacher',
        evaluations=setup.evaluations,
        cpu_threads=setup.cpu_threads,
    )
    return {
        'weights': os.path.join(run_dir, 'best_model', 'model.pdparams'),
        'run_dir': run_dir,
        'curve': val_curve(run_dir, task),
        'seconds': seconds,
    }


def given_teacher(weights):
    """A teacher trained earlier: no run of its own, no curve, no training time."""
    return {'weights': weights, 'run_dir': None, 'curve': [], 'seconds': 0.0}


def score_teacher(setup, teacher):
    """The teacher's val score: its best_model as the students' are scored, or the given
    weights by val.py."""
    task = TASKS[setup.task]
    if teacher['run_dir']:
        return best_score(
            teacher['run_dir'], setup.teacher_config, setup.data, task, setup.score_with_val_py
        )
    weights = teacher['weights']
    out = os.path.join(os.path.dirname(os.path.abspath(weights)), 'teacher_metrics.json')
    return val_score(setup.teacher_config, weights, out, setup.data, task)


def score_on_test(setup, config, weights, json_name='test_metrics.json'):
    """val.py's score of the weights on the test set (setup.test_data's val list); its json,
    json_name, goes next to the weights, apart from the val set's."""
    out = os.path.join(os.path.dirname(os.path.abspath(weights)), json_name)
    return val_score(config, weights, out, setup.test_data, TASKS[setup.task])


def abs_test_data(setup):
    """The test set's absolute path: a record keys its test scores by it, so runs shared
    between benchmarks keep one score per test set."""
    return os.path.abspath(setup.test_data)


def with_test_score(setup, record, run_dir):
    """The record, with its best_model's score on setup.test_data added (and written to its
    record.json) where it lacks one."""
    if not setup.test_data or abs_test_data(setup) in record.get('test', {}):
        return record
    weights = os.path.join(run_dir, 'best_model', 'model.pdparams')
    record.setdefault('test', {})[abs_test_data(setup)] = score_on_test(
        setup, setup.student_config, weights
    )
    with open(os.path.join(run_dir, 'record.json'), 'w') as f:
        json.dump(record, f, indent=2)
    return record


def run_key(setup, seed, iters, teacher_weights=None):
    """A digest of what a student run depends on: the student config, the seed, the
    iterations, the data and, distilled, the teacher (config and weights file) and whether
    its outputs come from a cache. The student alone leaves out the distill terms (train.py
    ignores them), so the recipes of one student share their student-alone runs."""

    config = load_config(setup.student_config).dic
    payload = {'seed': seed, 'iters': iters, 'data': os.path.abspath(setup.data)}
    if teacher_weights is None:
        payload['config'] = {
            key: value
            for key, value in config.items()
            if key not in ('distill_loss', 'distill_features')
        }
    else:
        weights = os.path.abspath(teacher_weights)
        payload.update(
            config=config,
            teacher=load_config(setup.teacher_config).dic['model'],
            teacher_weights=[weights, os.path.getsize(weights), os.path.getmtime(weights)],
        )
        if setup.teacher_cache:  # float16 teacher outputs: not the online run's digits
            payload['teacher_cache'] = True
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def student_run(setup, runs_dir, seed, iters, teacher_weights=None):
    """The student alone (teacher_weights None) or distilled: {'score', 'curve', 'seconds',
    'run_dir'}, and with setup.test_data 'test': {abs_test_data: score}. A finished run
    with the same run_key in runs_dir is reused (its record.json holds the figures; a test
    score it lacks is added); an interrupted one resumes from its newest checkpoint (with
    the same weights as an uninterrupted run). The record is written before the test
    score is computed, so a failure there does not cost the training."""
    kind = 'student' if teacher_weights is None else f'distilled_{setup.recipe}'
    run_dir = os.path.join(
        runs_dir, f'{kind}_seed{seed}_{run_key(setup, seed, iters, teacher_weights)}'
    )
    record_path = os.path.join(run_dir, 'record.json')
    title = 'student alone' if teacher_weights is None else 'distilled student'
    if os.path.isfile(record_path):
        say(f'Reusing the {title} (seed {seed}, {iters} iters): {run_dir}')
        with open(record_path) as f:
            record = json.load(f)
        return with_test_score(setup, record, run_dir)
    resume = os.path.isdir(run_dir) and any(
        name.startswith('iter_') for name in os.listdir(run_dir)
    )
    if os.path.isdir(run_dir) and not resume:
        shutil.rmtree(run_dir)
    say(
        f'{"Resuming" if resume else "Training"} the {title} (seed {seed}, {iters} iters, '
        f'{setup.recipe})'
    )
    teacher = None if teacher_weights is None else (setup.teacher_config, teacher_weights)
    cache = os.path.join(run_dir, 'teacher_cache') if teacher and setup.teacher_cache else None
    opts = data_opts(setup.data, setup.data, setup.task)
    seconds = train(
        run_dir,
        setup.student_config,
        iters,
        seed,
        opts,
        f'{kind.split("_")[0]} s{seed}',
        teacher=teacher,
        evaluations=setup.evaluations,
        cpu_threads=setup.run_threads(),
        resume=resume,
        teacher_cache=cache,
        allow_weak_teacher=setup.allow_weak_teacher,
    )
    task = TASKS[setup.task]
    record = {
        'score': best_score(
            run_dir, setup.student_config, setup.data, task, setup.score_with_val_py
        ),
        'curve': val_curve(run_dir, task),
        'seconds': seconds,
        'run_dir': run_dir,
    }
    with open(record_path, 'w') as f:
        json.dump(record, f, indent=2)
    return with_test_score(setup, record, run_dir)


def train_students(setup, out_dir, seeds, iters, teacher_weights, student_runs=None, then=None):
    """Each seed's student alone and distilled student, same seed and iteration budget:
    [(alone, distilled)] records. The student alone is looked up in (or trained into)
    student_runs, out_dir by default; the distilled student in out_dir.

    The runs are independent, so setup.jobs of them train side by side, each on its share
    of the CPU cores: a small model keeps a second thread of its own poorly busy, so two
    single-thread runs finish well before the same two runs one after the other. then: a
    callable queued behind the runs, so it takes the first worker a run leaves free."""
    runs = [(seed, weights) for seed in seeds for weights in (None, teacher_weights)]

    def train_one(run):
        seed, weights = run
        where = out_dir if weights else (student_runs or out_dir)
        return student_run(setup, where, seed, iters, weights)

    with ThreadPoolExecutor(max_workers=setup.jobs) as pool:
        pending = [pool.submit(train_one, run) for run in runs]
        after = pool.submit(then) if then else None
        records = [future.result() for future in pending]
        if after:
            after.result()
    return list(zip(records[0::2], records[1::2]))


def gains(teacher, student, distilled):
    """The three scores, the gain and the gap closed."""
    return {
        'teacher': teacher,
        'student': student,
        'distilled': distilled,
        'gain': distilled - student,
        'gap_closed': gap_closed(teacher, student, distilled),
    }


def compare(teacher, seed, alone, distilled, test_data=None):
    """One seed's figures: scores, gain, gap closed, curves, seconds, run folders; with
    test_data (abs_test_data), 'test': the scores, gain and gap closed on the test set."""
    result = {
        'seed': seed,
        **gains(teacher['score'], alone['score'], distilled['score']),
        'curves': {'student': alone['curve'], 'distilled': distilled['curve']},
        'seconds': {'student': alone['seconds'], 'distilled': distilled['seconds']},
        'run_dirs': {'student': alone['run_dir'], 'distilled': distilled['run_dir']},
    }
    if test_data:
        result['test'] = gains(
            teacher['test'], alone['test'][test_data], distilled['test'][test_data]
        )
    return result


def run(
    setup, out_dir, seeds, teacher_iters, student_iters, teacher_weights=None, student_runs=None
):
    """Data if missing, the teacher (trained once, or given), the students per seed, the
    report; prints the table. student_runs: where student-alone runs are kept and reused
    (out_dir by default). The model card (export, int8, latency) is for segmentation: the
    deploy tools take segmentation models."""
    start = time.time()
    ensure_data(setup)
    if teacher_weights:
        teacher = given_teacher(teacher_weights)
    else:
        teacher = train_teacher(setup, out_dir, teacher_iters, seeds[0])
    with_card = setup.task == 'segmentation'

    def teacher_for_report():
        # Needs only the teacher: it runs on the first core the student runs leave free.
        teacher['score'] = score_teacher(setup, teacher)
        if setup.test_data:  # a given teacher's folder may hold another run's test_metrics
            json_name = 'test_metrics.json' if teacher['run_dir'] else 'teacher_test_metrics.json'
            teacher['test'] = score_on_test(
                setup, setup.teacher_config, teacher['weights'], json_name
            )
        if with_card:
            export_for_card(setup, out_dir, 'teacher', setup.teacher_config, teacher['weights'])

    pairs = train_students(
        setup,
        out_dir,
        seeds,
        student_iters,
        teacher['weights'],
        student_runs,
        then=teacher_for_report,
    )
    test_data = abs_test_data(setup) if setup.test_data else None
    results = [
        compare(teacher, seed, alone, distilled, test_data)
        for seed, (alone, distilled) in zip(seeds, pairs)
    ]
    card = model_card(setup, out_dir, teacher, results[0]) if with_card else {}
    print(write_report(setup, out_dir, teacher, results, card))
    print(
        f'Finished in {time.time() - start:.0f} s; report: {out_dir}/report.md, '
        f'report.json, report.png',
        flush=True,
    )
