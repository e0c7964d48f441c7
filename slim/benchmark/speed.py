"""Distillation speed: student alone vs anchor-style vs ours online vs ours cached.

One run measures, on the same config, data and batch size:
  student  - the student trained alone (train.py's loop, no teacher)
  anchor   - PaddleSlim-`Distill`-style: the teacher's forward builds its autograd graph,
             outputs detached afterwards (what PaddleSeg's distillation does)
  online_dygraph - ours with --teacher_engine dygraph: the teacher under no_grad
  online   - ours as it runs by default: on CPU the teacher compiled for Paddle Inference
  cached   - ours with a warm teacher cache (offline distillation)
Each mode runs in its own process (so peak RSS is its own) through the real training loop,
--rounds times in alternating order; the median ms/iter over the timed iterations after
warm-up of all rounds is reported, with ips, peak RSS,
CPU utilisation (cores busy in the training process), the teacher's compile time and the
cache's build time.

tools/benchmark_speed.py is its command line.
"""
import copy
import json
import os
import resource
import tempfile
import time

import numpy as np

from slim.benchmark.runs import run_logged

MODES = ('student', 'anchor', 'online_dygraph', 'online', 'cached')


class AnchorStyleTeacher:
    """The anchor's teacher: a forward that records autograd history, detached afterwards
    (PaddleSlim's `Distill` runs the teacher without no_grad)."""

    def __init__(self, frozen_teacher):
        self.frozen = frozen_teacher
        for param in frozen_teacher.model.parameters():
            param.stop_gradient = False  # as a plain nn.Layer is: its ops record a graph

    def __call__(self, images):
        logits, records = self.frozen.recorder.record(self.frozen.model, images)
        return logits[0].detach(), {ref: t.detach() for ref, t in records.items()}

    def info(self):
        return self.frozen.info()


def fill_cache(cache, dataset, batch_size):
    """Computes every input the train set can give (each image, flipped and not): the
    explicit build of a warm cache."""
    import paddle
    dataset = copy.deepcopy(dataset)
    flips = [t for t in dataset.transforms.transforms
             if type(t).__name__ == 'RandomHorizontalFlip']
    for prob in (0.0, 1.0) if flips else (0.0,):
        for flip in flips:
            flip.prob = prob
        for start in range(0, len(dataset), batch_size):
            indices = range(start, min(start + batch_size, len(dataset)))
            cache(paddle.to_tensor(np.stack([dataset[i]['img'] for i in indices])))


def run_mode(args):
    """Worker: one mode through the real training loop; writes its measurements as JSON."""
    import paddleseg_ext  # noqa: F401  (before paddle)
    import paddle
    from paddleseg.cvlibs import SegBuilder
    from paddleseg_ext.config import build, load_config
    from paddleseg_ext.process import setup_process
    from paddleseg_ext.engine.trainer import Trainer, TrainOptions
    from slim.distill import distill_model_factory, plain_model
    from slim.distill.teacher_cache import TeacherCache
    from paddleseg_ext.config import build_model_without_weights

    device = setup_process('auto', args.cpu_threads, seed=0)
    total_iters = args.warmup + args.iters
    opts = [f'train_dataset.dataset_root={args.data}', f'val_dataset.dataset_root={args.data}']
    config = load_config(args.student_config, batch_size=args.batch_size, iters=total_iters,
                         opts=opts)
    builder = SegBuilder(config)
    weights = args.teacher_weights
    if weights is None and args.mode != 'student':
        weights = os.path.join(args.work_dir, 'teacher_init.pdparams')
        if not os.path.exists(weights):
            model, _ = build_model_without_weights(load_config(args.teacher_config,
                                                               required=('model',)))
            paddle.save(model.state_dict(), weights)
    result = {'mode': args.mode, 'device': device}
    if args.mode == 'student':
        model = plain_model(config, builder)
    else:
        cache_dir = os.path.join(args.work_dir, 'cache') if args.mode == 'cached' else None
        engine = 'dygraph' if args.mode in ('anchor', 'online_dygraph') else 'auto'
        model = distill_model_factory(args.teacher_config, args.student_config, weights,
                                      cache_dir, teacher_engine=engine)(config, builder)
        if args.mode == 'anchor':
            model.teacher = AnchorStyleTeacher(model.teacher)
    def train_log(name, iters):
        save_dir = os.path.join(args.work_dir, name)
        Trainer(TrainOptions(save_dir=save_dir, iters=iters, save_interval=10**9,
                             num_workers=args.num_workers, seed=0, log_iters=1),
                config, builder, model).train()
        with open(os.path.join(save_dir, 'train_log.jsonl')) as f:
            return [r for r in map(json.loads, f) if r['tag'] == 'Train']

    epoch_iters = len(builder.train_dataset) // config.batch_size
    if args.mode == 'cached':
        if not isinstance(model.teacher, TeacherCache):
            raise SystemExit('the teacher cache does not apply to these train transforms')
        # The cache fills lazily: the first epoch runs the teacher on each image it meets.
        # Then the entries not met yet (the other flip) are filled explicitly.
        result['first_epoch_s'] = sum(r['batch_cost'] for r in train_log('cold', epoch_iters))
        start = time.time()
        fill_cache(model.teacher, build(builder, 'train_dataset'), config.batch_size)
        result['fill_rest_s'] = time.time() - start
        result['cache_entries'] = len(model.teacher.slots)
    # Online also runs a whole first epoch, the cold cache's yardstick (both pay the
    # teacher's compile in it).
    log = train_log(args.mode, max(total_iters, epoch_iters) if args.mode == 'online'
                    else total_iters)
    if args.mode == 'online':
        result['first_epoch_s'] = sum(r['batch_cost'] for r in log if r['iter'] <= epoch_iters)
    timed = [r for r in log if args.warmup < r['iter'] <= total_iters]
    result.update(timed_costs=[r['batch_cost'] for r in timed],
                  cpu_utils=[r['cpu_util'] for r in timed],
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  batch_size=config.batch_size,
                  train_images=len(builder.train_dataset))
    frozen = getattr(model.teacher, 'teacher', model.teacher)  # behind a cache or not
    predictor = getattr(frozen, 'predictor', None)
    if predictor is not None:
        result['teacher_compile_s'] = predictor.build_s
        result['teacher_backend'] = predictor.backend
    if device == 'gpu':
        result['peak_gpu_mb'] = paddle.device.cuda.max_memory_allocated() / 2**20
    with open(os.path.join(args.work_dir, f'{args.mode}.json'), 'w') as f:
        json.dump(result, f)


def measure(args, script):
    """Runs every mode --rounds times, each in its own process (`script --mode M`);
    prints the table and writes --json."""
    if not os.path.isfile(os.path.join(args.data, 'train_list.txt')):
        raise SystemExit(f"no data in {args.data}: run `make demo` or tools/prepare_data.py first")
    work_dir = tempfile.mkdtemp(prefix='benchmark_speed_')
    per_round = {mode: [] for mode in MODES}
    for round_index in range(args.rounds):
        # Alternating the order spreads a drifting machine's speed over all modes.
        order = MODES if round_index % 2 == 0 else MODES[::-1]
        round_dir = os.path.join(work_dir, f'round_{round_index}')
        for mode in order:
            print(f'Measuring {mode} (round {round_index + 1}/{args.rounds}) ...', flush=True)
            run_logged([script, *worker_args(args), '--mode', mode,
                        '--work_dir', round_dir],
                       os.path.join(round_dir, f'{mode}.log'), mode)
            with open(os.path.join(round_dir, f'{mode}.json')) as f:
                per_round[mode].append(json.load(f))
    results = {mode: merge_rounds(rounds) for mode, rounds in per_round.items()}
    print(report(results))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump({'ips': {m: results[m]['ips'] for m in MODES}, 'modes': results,
                       'ratios': ratios(results)}, f, indent=2)


def merge_rounds(rounds):
    """One mode's measurements: the median over every timed iteration of every round;
    one-off costs as their median over rounds."""
    merged = {key: value for key, value in rounds[0].items()
              if key not in ('timed_costs', 'cpu_utils')}
    ms = float(np.median([c for r in rounds for c in r['timed_costs']])) * 1000
    merged.update(ms_per_iter=ms, ips=merged['batch_size'] / ms * 1000, rounds=len(rounds),
                  timed_iters=sum(len(r['timed_costs']) for r in rounds),
                  cpu_util=float(np.median([u for r in rounds for u in r['cpu_utils']])),
                  peak_rss_mb=max(r['peak_rss_mb'] for r in rounds))
    for key in ('first_epoch_s', 'fill_rest_s', 'teacher_compile_s'):
        if key in merged:
            merged[key] = float(np.median([r[key] for r in rounds]))
    return merged


def worker_args(args):
    flags = ['--student_config', args.student_config, '--teacher_config', args.teacher_config,
             '--data', args.data, '--warmup', str(args.warmup), '--iters', str(args.iters),
             '--num_workers', str(args.num_workers)]
    if args.cpu_threads:
        flags += ['--cpu_threads', str(args.cpu_threads)]
    if args.teacher_weights:
        flags += ['--teacher_weights', args.teacher_weights]
    if args.batch_size:
        flags += ['--batch_size', str(args.batch_size)]
    return flags


def ratios(results):
    """The done-criteria ratios, and the cache's cost against what it saves."""
    ips = {m: results[m]['ips'] for m in MODES}
    cached = results['cached']
    epoch_images = cached['train_images'] // cached['batch_size'] * cached['batch_size']
    fill_rest_s = cached['fill_rest_s']
    online_epoch_s = epoch_images / ips['online']
    saving_per_epoch = online_epoch_s - epoch_images / ips['cached']
    # The cache is built lazily while training: its build cost is what the first epoch with
    # an empty cache costs beyond a first epoch online (writing the entries). Entries that
    # epoch did not meet (the other flip) are filled the same way when first met; the
    # benchmark fills them explicitly only to measure a fully warm cache (fill_rest_s).
    build_s = max(cached['first_epoch_s'] - results['online']['first_epoch_s'], 0.0)
    return {'online_vs_anchor': ips['online'] / ips['anchor'],
            'online_dygraph_vs_anchor': ips['online_dygraph'] / ips['anchor'],
            'cached_vs_student': ips['cached'] / ips['student'],
            'online_epoch_s': online_epoch_s,
            'online_first_epoch_s': results['online']['first_epoch_s'],
            'cold_cache_epoch_s': cached['first_epoch_s'],
            'cache_build_s': build_s, 'cache_fill_rest_s': fill_rest_s,
            'cache_saving_per_epoch_s': saving_per_epoch,
            'cache_payback_epochs': build_s / saving_per_epoch
            if saving_per_epoch > 0 else float('inf')}


def report(results):
    lines = ['| mode | ms/iter | ips (img/s) | peak RSS (MB) | CPU util (cores) |',
             '|---|---|---|---|---|']
    for mode in MODES:
        r = results[mode]
        lines.append(f"| {mode} | {r['ms_per_iter']:.0f} | {r['ips']:.2f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['cpu_util']:.2f} |")
    q = ratios(results)
    compiled = results['online'].get('teacher_backend')
    lines += ['', f"online / anchor ips: {q['online_vs_anchor']:.2f}x (online_dygraph "
                  f"{q['online_dygraph_vs_anchor']:.2f}x); cached / student ips: "
                  f"{q['cached_vs_student']:.2f}x",
              "online teacher: " + (f"compiled for Paddle Inference ({compiled}) in "
                                     f"{results['online']['teacher_compile_s']:.1f} s, once"
                                     if compiled else "dygraph under no_grad"),
              f"cache: first epoch {q['cold_cache_epoch_s']:.1f} s from empty vs "
              f"{q['online_first_epoch_s']:.1f} s online, filling the rest "
              f"{results['cached']['fill_rest_s']:.1f} s (explicit, benchmark only) -> lazy "
              f"build cost {q['cache_build_s']:.1f} s; {results['cached']['cache_entries']} "
              f"(image, flip) entries; saves {q['cache_saving_per_epoch_s']:.1f} s per epoch "
              f"-> paid back in {q['cache_payback_epochs']:.2f} epochs"]
    return '\n'.join(lines)
