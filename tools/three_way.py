"""Teacher vs student alone vs distilled student, through the product's own CLIs.

Shared by tools/demo.py (one seed, a report) and tools/benchmark_quality.py (K seeds).
Every run is a subprocess of train.py / distill_train.py / val.py, exactly as a user
would type it; its output goes to a log file, and a progress line reaches the console
at least every 30 seconds.
"""
import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

CPU_CONFIGS = os.path.join('configs', 'cpu')
TEACHER_CONFIG = os.path.join(
    CPU_CONFIGS, 'deeplabv3p_resnet18_os16_optic_disc_64x64_teacher_moredata.yml')
STUDENT_PREFIX = os.path.join(CPU_CONFIGS, 'deeplabv3p_resnet18_os16_optic_disc_64x64_student')

# Distillation recipes: name -> student config (its distill_loss / distill_features).
RECIPES = {
    'kl': STUDENT_PREFIX + '.yml',                              # PaddleSeg's: KLLoss coef 3
    'cwd_logits': STUDENT_PREFIX + '_cwd_logits.yml',           # MMRazor's CWD on logits
    'cwd_logits_features': STUDENT_PREFIX + '_cwd_logits_features.yml',  # + CWD on a stage
}
DEFAULT_RECIPE = 'cwd_logits'
STUDENT_DATA = 'data/optic_disc_seg'
TEACHER_DATA = 'data/optic_disc_seg_teacher'
TEACHER_ITERS = 600
STUDENT_ITERS = 150
PROGRESS_SECONDS = 30


@dataclass
class Setup:
    """Which configs and data are compared. The student alone runs the recipe's student
    config with train.py (which ignores its distill terms): same model, data and schedule.
    The teacher trains on teacher_data and is scored on data's val set like the students."""
    recipe: str
    teacher_config: str
    student_config: str
    data: str
    teacher_data: str
    input_size: int = 64

    @classmethod
    def from_args(cls, args):
        return cls(recipe=args.recipe if not args.student_config else 'custom',
                   teacher_config=args.teacher_config or TEACHER_CONFIG,
                   student_config=args.student_config or RECIPES[args.recipe],
                   data=args.data, teacher_data=args.teacher_data,
                   input_size=getattr(args, 'input_size', 64))


def add_setup_arguments(parser):
    """The flags demo.py and benchmark_quality.py share."""
    add = parser.add_argument
    add('--recipe', default=DEFAULT_RECIPE, choices=sorted(RECIPES),
        help='Distillation recipe (a student config in configs/cpu).')
    add('--data', default=STUDENT_DATA, help="The students' data (and everyone's val set).")
    add('--teacher_data', default=TEACHER_DATA, help="The teacher's training data.")
    add('--teacher_iters', type=int, default=TEACHER_ITERS)
    add('--student_iters', type=int, default=STUDENT_ITERS)
    add('--teacher_config', default=None, help='Override the CPU teacher config.')
    add('--student_config', default=None,
        help='Override the student config (its distill terms are the recipe).')
    add('--input_size', type=int, default=64, help='Input size for the FLOPs column.')
    return parser


def run_logged(args, log_path, label):
    """Runs `python args...` from the repo root, output to log_path; progress on stdout.

    Prints the newest [TRAIN]/[EVAL] line at most every PROGRESS_SECONDS, and a heartbeat
    when the run is quiet for that long. Raises RuntimeError naming the log on failure.
    """
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    start = time.time()
    latest = {'line': '', 'shown': ''}
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)

        def pump():
            for line in proc.stdout:
                log.write(line)
                if '[TRAIN]' in line or '[EVAL] #Images' in line:
                    latest['line'] = line.split('[INFO]')[-1].strip()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        while reader.is_alive():
            reader.join(PROGRESS_SECONDS)
            if reader.is_alive():
                line = latest['line'] if latest['line'] != latest['shown'] else 'running'
                latest['shown'] = latest['line']
                print(f'  [{label} {time.time() - start:5.0f}s] {line[:150]}', flush=True)
        proc.wait()
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read().strip().splitlines()[-1:] or ['']
        raise RuntimeError(f'{label} failed (exit {proc.returncode}): {tail[0]} '
                           f'-- full log: {log_path}')
    return time.time() - start


def data_opts(train_root, val_root):
    return ['--opts', f'train_dataset.dataset_root={train_root}',
            f'val_dataset.dataset_root={val_root}']


def train(run_dir, config, iters, seed, opts, label, teacher=None):
    """train.py (teacher=None) or distill_train.py (teacher=(config, weights)); seconds.

    Evaluates 6 times per run (for the curves); best_model is the best of those."""
    common = ['--iters', str(iters), '--seed', str(seed), '--do_eval', '--save_interval',
              str(max(iters // 6, 1)), '--log_iters', '10', '--keep_checkpoint_max', '1',
              '--save_dir', run_dir, *opts]
    if teacher is None:
        args = ['train.py', '--config', config, *common]
    else:
        args = ['distill_train.py', '--teather_config', teacher[0], '--teacher_model_path',
                teacher[1], '--student_config', config, *common]
    return run_logged(args, os.path.join(run_dir, 'run.log'), label)


def val_miou(config, weights, out_json, data_root):
    """val.py --json on the weights, as a user reads them; the mIoU."""
    run_logged(['val.py', '--config', config, '--model_path', weights, '--json', out_json,
                *data_opts(data_root, data_root)], out_json + '.log', 'val')
    with open(out_json) as f:
        return json.load(f)['miou']


def best_miou(run_dir, config, data_root):
    """val.py on run_dir/best_model."""
    best = os.path.join(run_dir, 'best_model')
    return val_miou(config, os.path.join(best, 'model.pdparams'),
                    os.path.join(best, 'metrics.json'), data_root)


def val_curve(run_dir):
    """[(iter, mIoU)] of the evaluations during training (train_log.jsonl)."""
    curve = []
    with open(os.path.join(run_dir, 'train_log.jsonl')) as f:
        for line in f:
            record = json.loads(line)
            if record['tag'] == 'Evaluate':
                curve.append((record['iter'], record['mIoU']))
    return curve


def gap_closed(teacher, student, distilled):
    gap = teacher - student
    return (distilled - student) / gap if gap > 0 else float('nan')


def ensure_data(setup):
    """Synthetic data where the folders are missing: 200 images for the students (160
    train, 40 val) and, from another seed, 1,000 training images for the teacher."""
    sys.path.insert(0, os.path.join(REPO_ROOT, 'tools'))
    from prepare_data import make_synthetic
    for root, n_images, seed, val_fraction in ((setup.data, 200, 0, 0.2),
                                               (setup.teacher_data, 1000, 7, 0.01)):
        if not os.path.isfile(os.path.join(root, 'train_list.txt')):
            print(f'Preparing {n_images} synthetic optic disc images in {root}', flush=True)
            make_synthetic(root, n=n_images, seed=seed, val_fraction=val_fraction)


def model_stats(config, input_size=64):
    """(parameters, FLOPs at 1x3xSxS) of a config's model."""
    import paddleseg_ext  # noqa: F401  (before paddle)
    import paddle
    from paddleseg_ext.config import build_model_without_weights
    from paddleseg_ext.config import load_config
    model, _ = build_model_without_weights(load_config(config, required=('model',)))
    params = sum(int(p.numel()) for p in model.parameters())
    with contextlib.redirect_stdout(io.StringIO()):  # paddle.flops prints a line per layer
        flops = paddle.flops(model, [1, 3, input_size, input_size], print_detail=False)
    return params, int(flops)


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


def write_report(setup, out_dir, teacher, results, card):
    """report.md, report.json and report.png in out_dir; returns the markdown."""
    import numpy as np
    os.makedirs(out_dir, exist_ok=True)
    recipe, size = setup.recipe, setup.input_size
    stats = {name: model_stats(config, size) for name, config in
             (('teacher', setup.teacher_config), ('student', setup.student_config))}
    mean = {key: float(np.mean([r[key] for r in results]))
            for key in ('student', 'distilled', 'gain')}
    std = {key: float(np.std([r[key] for r in results])) for key in ('student', 'distilled',
                                                                      'gain')}
    summary = {'teacher': teacher['miou'], 'student': mean['student'],
               'distilled': mean['distilled'], 'gain': mean['gain'],
               'gap_closed': gap_closed(teacher['miou'], mean['student'], mean['distilled']),
               'recipe': recipe, 'student_config': setup.student_config,
               'teacher_config': setup.teacher_config, 'std': std,
               'params': {k: v[0] for k, v in stats.items()},
               'flops': {k: v[1] for k, v in stats.items()},
               'per_seed': [{k: r[k] for k in ('seed', 'student', 'distilled', 'gain',
                                               'gap_closed', 'seconds')} for r in results],
               'teacher_seconds': teacher['seconds'], 'model_card': card}
    pm = lambda key: (f"{100 * mean[key]:.2f} ± {100 * std[key]:.2f}" if len(results) > 1
                      else f"{100 * mean[key]:.2f}")
    lines = [
        f"# Distillation, recipe `{recipe}`, {len(results)} seed(s)", '',
        f"Teacher `{setup.teacher_config}`, student `{setup.student_config}`.", '',
        f'| model | params | FLOPs (1x3x{size}x{size}) | val mIoU (%) |', '|---|---|---|---|',
        f"| teacher | {stats['teacher'][0] / 1e6:.1f} M | "
        f"{stats['teacher'][1] / 1e9:.2f} G | {100 * teacher['miou']:.2f} |",
        f"| student alone | {stats['student'][0] / 1e6:.1f} M | "
        f"{stats['student'][1] / 1e9:.2f} G | {pm('student')} |",
        f"| distilled student | {stats['student'][0] / 1e6:.1f} M | "
        f"{stats['student'][1] / 1e9:.2f} G | {pm('distilled')} |", '',
        f"Gain: {pm('gain')} mIoU points; gap closed: {100 * summary['gap_closed']:.0f}% "
        f"(= (distilled - student) / (teacher - student)).", '',
        'Per seed: ' + ', '.join(f"seed {r['seed']}: {100 * r['student']:.2f} -> "
                                 f"{100 * r['distilled']:.2f} ({100 * r['gain']:+.2f})"
                                 for r in results), '']
    lines += ['## Model card (CPU, one thread, one 1x3x{0}x{0} image)'.format(size), '',
              '| model | params | FLOPs | val mIoU (%) | latency (ms) |', '|---|---|---|---|---|']
    for name, label, stat in (('teacher', 'teacher', 'teacher'),
                              ('student_fp32', 'distilled student, fp32', 'student'),
                              ('student_int8', 'distilled student, int8', 'student')):
        if name in card:
            lines.append(f"| {label} | {stats[stat][0] / 1e6:.1f} M | "
                         f"{stats[stat][1] / 1e9:.2f} G | {100 * card[name]['miou']:.2f} | "
                         f"{card[name]['latency_ms']:.2f} |")
    if 'student_int8' not in card:
        lines.append('| distilled student, int8 | not measured: PaddleSlim missing '
                     '(`pip install --no-deps -r requirements-slim.txt`) | | | |')
    run_dirs = [os.path.join(out_dir, 'teacher')] * bool(teacher['curve']) + [
        os.path.join(out_dir, f"{prefix}_seed{r['seed']}") for r in results
        for prefix in ('student', f'distilled_{recipe}')]
    plot_runs(run_dirs, os.path.join(out_dir, 'runs.png'))
    markdown = '\n'.join(lines)
    with open(os.path.join(out_dir, 'report.md'), 'w') as f:
        f.write(markdown + '\n\n![mIoU and validation curves](report.png)\n\n'
                '![loss terms and val mIoU per run (tools/plot_run.py)](runs.png)\n')
    with open(os.path.join(out_dir, 'report.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    plot_report(os.path.join(out_dir, 'report.png'), teacher, results, mean)
    return markdown


def plot_runs(run_dirs, path):
    """tools/plot_run.py's figure: each run's loss terms and val mIoU."""
    run_logged(['tools/plot_run.py', *run_dirs, '--out', path], path + '.log', 'plot')


def plot_report(path, teacher, results, mean):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(11, 4))
    names = ['teacher', 'student alone', 'distilled']
    values = [100 * teacher['miou'], 100 * mean['student'], 100 * mean['distilled']]
    bars.bar(names, values, color=['#555555', '#d9822b', '#2b7bd9'])
    for x, v in enumerate(values):
        bars.text(x, v + 0.5, f'{v:.1f}', ha='center')
    bars.set_ylabel('val mIoU (%)')
    bars.set_ylim(min(values) - 10, 100)
    bars.set_title('best_model mIoU (val.py)')
    if teacher['curve']:  # absent for a teacher given by --teacher_weights
        t_iters, t_miou = zip(*teacher['curve'])
        curves.plot(t_iters, [100 * m for m in t_miou], color='#555555', label='teacher')
    for result in results:
        for name, color in (('student', '#d9822b'), ('distilled', '#2b7bd9')):
            iters, miou = zip(*result['curves'][name])
            curves.plot(iters, [100 * m for m in miou], color=color, alpha=0.8,
                        label=f"{name} (seed {result['seed']})")
    curves.set_xlabel('iteration')
    curves.set_ylabel('val mIoU (%)')
    curves.set_title('validation mIoU during training')
    curves.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def latency_ms(inference_dir, input_size, runs=20):
    """Median CPU latency (ms, one thread) of an exported model on one image."""
    import paddleseg_ext  # noqa: F401  (before paddle)
    import numpy as np
    from paddleseg_ext.deploy.inference import InferenceModel, median_latency
    model = InferenceModel(inference_dir, cpu_threads=1, use_mkldnn=True)
    image = np.zeros((1, 3, input_size, input_size), dtype='float32')
    return 1000 * median_latency(model, image, runs=runs)


def model_card(setup, out_dir, teacher, result):
    """Exports the teacher and the distilled student, quantizes the student to int8
    (PaddleSlim), and measures CPU latency: {'teacher', 'student_fp32', 'student_int8'}."""
    deploy_dir = os.path.join(out_dir, 'deploy')
    student_run = os.path.join(out_dir, f"distilled_{setup.recipe}_seed{result['seed']}")
    val_opts = data_opts(setup.data, setup.data)
    card = {}
    for name, config, weights in (
            ('teacher', setup.teacher_config, teacher['weights']),
            ('student', setup.student_config,
             os.path.join(student_run, 'best_model', 'model.pdparams'))):
        print(f'Exporting the {name} for Paddle Inference', flush=True)
        # paddle 2's program format, on either paddle: PaddleSlim quantizes only that
        run_logged(['tools/export.py', '--config', config, '--model_path', weights,
                    '--save_dir', os.path.join(deploy_dir, name), '--output_op', 'none',
                    '--program_format', 'pdmodel', *val_opts],
                   os.path.join(deploy_dir, f'export_{name}.log'), 'export')
    card['teacher'] = {'miou': teacher['miou'], 'latency_ms': latency_ms(
        os.path.join(deploy_dir, 'teacher'), setup.input_size)}
    print('Quantizing the distilled student to int8 (PaddleSlim)', flush=True)
    comparison = os.path.join(deploy_dir, 'int8_comparison.json')
    try:
        run_logged(['tools/quantize.py', '--config', setup.student_config, '--inference_dir',
                    os.path.join(deploy_dir, 'student'), '--save_dir',
                    os.path.join(deploy_dir, 'student_int8'), '--json', comparison,
                    *val_opts], os.path.join(deploy_dir, 'quantize.log'), 'quantize')
    except RuntimeError as exc:  # e.g. PaddleSlim not installed: the card says so
        print(f'  int8 skipped: {exc}', flush=True)
        return card
    with open(comparison) as f:
        measured = json.load(f)
    card['student_fp32'] = {k: measured['float'][k] for k in ('miou', 'latency_ms')}
    card['student_int8'] = {k: measured['int8'][k] for k in ('miou', 'latency_ms')}
    return card


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
