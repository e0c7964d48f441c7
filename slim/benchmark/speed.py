"""Distillation speed: student alone vs anchor-style vs ours online vs ours cached.

One run measures, on the same config, data and batch size:
  student  - the student trained alone (train.py's loop, no teacher)
  anchor   - PaddleSlim-`Distill`-style: the teacher's forward builds its autograd graph,
             outputs detached afterwards (what PaddleSeg's distillation does)
  online_dygraph - ours with --teacher_engine dygraph: the teacher under no_grad
  online   - ours as it runs by default: on CPU the teacher compiled for Paddle Inference
  cached   - ours with a warm teacher cache (offline distillation): the cache of each
             input under deterministic transforms, the replay cache under --augment
--size S trains at SxS (the configs' Resize, or the crop under --augment); --augment
replaces the train transforms by PaddleSeg's usual random ones (AUGMENTATION).
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
import paddle
import yaml
from paddleseg.cvlibs import SegBuilder

from paddleseg_ext.components import build, build_model_without_weights
from paddleseg_ext.config import load_config
from paddleseg_ext.engine.trainer import Trainer, TrainOptions
from paddleseg_ext.process import setup_process
from slim.benchmark.runs import run_logged
from slim.distill import distill_model_factory, plain_model
from slim.distill.teacher_cache import TeacherCache
from slim.distill.teacher_replay import TeacherReplayCache

MODES = ('student', 'anchor', 'online_dygraph', 'online', 'cached')

# PaddleSeg's usual training augmentation (its Cityscapes and ADE20K configs): random
# scale, a crop padded where the scaled image is smaller, flip, colour jitter.
AUGMENTATION = [
    {
        'type': 'ResizeStepScaling',
        'min_scale_factor': 0.5,
        'max_scale_factor': 2.0,
        'scale_step_size': 0.25,
    },
    {'type': 'RandomPaddingCrop', 'crop_size': None},
    {'type': 'RandomHorizontalFlip'},
    {
        'type': 'RandomDistort',
        'brightness_range': 0.4,
        'contrast_range': 0.4,
        'saturation_range': 0.4,
    },
    {'type': 'Normalize'},
]


def sized_config(path, size, augment, work_dir):
    """`path` at SxS (and with AUGMENTATION's train transforms if augment), as a config of
    its own in work_dir that inherits the rest; `path` itself when neither is asked."""
    if not size and not augment:
        return path

    val_transforms = [{'type': 'Resize', 'target_size': [size, size]}, {'type': 'Normalize'}]
    if augment:
        train_transforms = [dict(t) for t in AUGMENTATION]
        train_transforms[1]['crop_size'] = [size, size]
    else:
        train_transforms = [
            {'type': 'Resize', 'target_size': [size, size]},
            {'type': 'RandomHorizontalFlip'},
            {'type': 'Normalize'},
        ]
    derived = {
        '_base_': os.path.abspath(path),
        'train_dataset': {'transforms': train_transforms},
        'val_dataset': {'transforms': val_transforms},
    }
    os.makedirs(work_dir, exist_ok=True)
    out = os.path.join(work_dir, os.path.basename(path))
    with open(out, 'w') as f:
        yaml.safe_dump(derived, f)
    return out


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
    """Computes every input the train set can give (each image, flipped and not; each image
    once for the replay cache): the explicit build of a warm cache."""

    if hasattr(cache, 'fill'):
        cache.fill(range(len(dataset)))
        return
    dataset = copy.deepcopy(dataset)
    flips = [t for t in dataset.transforms.transforms if type(t).__name__ == 'RandomHorizontalFlip']
    for prob in (0.0, 1.0) if flips else (0.0,):
        for flip in flips:
            flip.prob = prob
        for start in range(0, len(dataset), batch_size):
            indices = range(start, min(start + batch_size, len(dataset)))
            cache(paddle.to_tensor(np.stack([dataset[i]['img'] for i in indices])))


def run_mode(args):
    """Worker: one mode through the real training loop; writes its measurements as JSON."""

    device = setup_process('auto', args.cpu_threads, seed=0)
    total_iters = args.warmup + args.iters
    opts = [f'train_dataset.dataset_root={args.data}', f'val_dataset.dataset_root={args.data}']
    config = load_config(
        args.student_config, batch_size=args.batch_size, iters=total_iters, opts=opts
    )
    builder = SegBuilder(config)
    weights = args.teacher_weights
    if weights is None and args.mode != 'student':
        weights = os.path.join(args.work_dir, 'teacher_init.pdparams')
        if not os.path.exists(weights):
            model, _ = build_model_without_weights(
                load_config(args.teacher_config, required=('model',))
            )
            paddle.save(model.state_dict(), weights)
    result = {'mode': args.mode, 'device': device}
    if args.mode == 'student':
        model = plain_model(config, builder)
    else:
        cache_dir = os.path.join(args.work_dir, 'cache') if args.mode == 'cached' else None
        engine = 'dygraph' if args.mode in ('anchor', 'online_dygraph') else 'auto'
        # Speed does not depend on the teacher's weights: its initial ones pass unchecked.
        model = distill_model_factory(
            args.teacher_config,
            args.student_config,
            weights,
            cache_dir,
            teacher_engine=engine,
            allow_weak_teacher=True,
            wrap_teacher=AnchorStyleTeacher if args.mode == 'anchor' else None,
        )(config, builder)

    def train_log(name, iters):
        save_dir = os.path.join(args.work_dir, name)
        Trainer(
            TrainOptions(
                save_dir=save_dir,
                iters=iters,
                save_interval=10**9,
                num_workers=args.num_workers,
                seed=0,
                log_iters=1,
            ),
            config,
            builder,
            model,
        ).train()
        with open(os.path.join(save_dir, 'train_log.jsonl')) as f:
            return [r for r in map(json.loads, f) if r['tag'] == 'Train']

    epoch_iters = len(builder.train_dataset) // config.batch_size
    if args.mode == 'cached':
        if not isinstance(model.teacher, (TeacherCache, TeacherReplayCache)):
            raise SystemExit('the teacher cache does not apply to these train transforms')
        # The cache fills lazily: the first epoch runs the teacher on each image it meets.
        # Then the entries not met yet (the other flip) are filled explicitly.
        result['first_epoch_s'] = sum(r['batch_cost'] for r in train_log('cold', epoch_iters))
        start = time.time()
        fill_cache(model.teacher, build(builder, 'train_dataset'), config.batch_size)
        result['fill_rest_s'] = time.time() - start
        result['cache_entries'] = (
            len(model.teacher.slots)
            if hasattr(model.teacher, 'slots')
            else len(builder.train_dataset)
        )
        result['cache_bytes'] = sum(
            os.path.getsize(os.path.join(model.teacher.dir, name))
            for name in os.listdir(model.teacher.dir)
        )
    # Online also runs a whole first epoch, the cold cache's yardstick (both pay the
    # teacher's compile in it).
    log = train_log(
        args.mode, max(total_iters, epoch_iters) if args.mode == 'online' else total_iters
    )
    if args.mode == 'online':
        result['first_epoch_s'] = sum(r['batch_cost'] for r in log if r['iter'] <= epoch_iters)
    timed = [r for r in log if args.warmup < r['iter'] <= total_iters]
    result.update(
        timed_costs=[r['batch_cost'] for r in timed],
        cpu_utils=[r['cpu_util'] for r in timed],
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        batch_size=config.batch_size,
        train_images=len(builder.train_dataset),
    )
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
    """Runs every mode of --modes --rounds times, each in its own process
    (`script --mode M`); prints the table and writes --json."""
    if not os.path.isfile(os.path.join(args.data, 'train_list.txt')):
        raise SystemExit(f'no data in {args.data}: run `make demo` or tools/prepare_data.py first')
    work_dir = tempfile.mkdtemp(prefix='benchmark_speed_')
    args.student_config = sized_config(
        args.student_config, args.size, args.augment, os.path.join(work_dir, 'configs')
    )
    modes = [m for m in MODES if m in args.modes]
    per_round = {mode: [] for mode in modes}
    for round_index in range(args.rounds):
        # Alternating the order spreads a drifting machine's speed over all modes.
        order = modes if round_index % 2 == 0 else modes[::-1]
        round_dir = os.path.join(work_dir, f'round_{round_index}')
        for mode in order:
            print(f'Measuring {mode} (round {round_index + 1}/{args.rounds}) ...', flush=True)
            run_logged(
                [script, *worker_args(args), '--mode', mode, '--work_dir', round_dir],
                os.path.join(round_dir, f'{mode}.log'),
                mode,
            )
            with open(os.path.join(round_dir, f'{mode}.json')) as f:
                per_round[mode].append(json.load(f))
    results = {mode: merge_rounds(rounds) for mode, rounds in per_round.items()}
    print(report(results))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(
                {
                    'ips': {m: results[m]['ips'] for m in modes},
                    'modes': results,
                    'ratios': ratios(results),
                    'size': args.size,
                    'augment': args.augment,
                },
                f,
                indent=2,
            )


def merge_rounds(rounds):
    """One mode's measurements: the median over every timed iteration of every round;
    one-off costs as their median over rounds."""
    merged = {
        key: value for key, value in rounds[0].items() if key not in ('timed_costs', 'cpu_utils')
    }
    ms = float(np.median([c for r in rounds for c in r['timed_costs']])) * 1000
    merged.update(
        ms_per_iter=ms,
        ips=merged['batch_size'] / ms * 1000,
        rounds=len(rounds),
        timed_iters=sum(len(r['timed_costs']) for r in rounds),
        cpu_util=float(np.median([u for r in rounds for u in r['cpu_utils']])),
        peak_rss_mb=max(r['peak_rss_mb'] for r in rounds),
    )
    for key in ('first_epoch_s', 'fill_rest_s', 'teacher_compile_s'):
        if key in merged:
            merged[key] = float(np.median([r[key] for r in rounds]))
    return merged


def worker_args(args):
    flags = [
        '--student_config',
        args.student_config,
        '--teacher_config',
        args.teacher_config,
        '--data',
        args.data,
        '--warmup',
        str(args.warmup),
        '--iters',
        str(args.iters),
        '--num_workers',
        str(args.num_workers),
    ]
    if args.cpu_threads:
        flags += ['--cpu_threads', str(args.cpu_threads)]
    if args.teacher_weights:
        flags += ['--teacher_weights', args.teacher_weights]
    if args.batch_size:
        flags += ['--batch_size', str(args.batch_size)]
    return flags


def ratios(results):
    """Each mode's speed against the student alone's and online's against the anchor's;
    with a cache, its build cost against what it saves."""
    ips = {m: r['ips'] for m, r in results.items()}
    out = {
        f'{m}_vs_student': ips[m] / ips['student']
        for m in ips
        if m != 'student' and 'student' in ips
    }
    for mode in ('online', 'online_dygraph'):
        if mode in ips and 'anchor' in ips:
            out[f'{mode}_vs_anchor'] = ips[mode] / ips['anchor']
    if 'cached' in results and 'online' in results:
        cached = results['cached']
        epoch_images = cached['train_images'] // cached['batch_size'] * cached['batch_size']
        online_epoch_s = epoch_images / ips['online']
        saving_per_epoch = online_epoch_s - epoch_images / ips['cached']
        # The cache is built lazily while training: its build cost is what the first epoch
        # with an empty cache costs beyond a first epoch online. Entries that epoch did not
        # meet (the other flip) are filled when first met; the benchmark fills them
        # explicitly only to measure a fully warm cache (fill_rest_s).
        build_s = max(cached['first_epoch_s'] - results['online']['first_epoch_s'], 0.0)
        out.update(
            online_first_epoch_s=results['online']['first_epoch_s'],
            cold_cache_epoch_s=cached['first_epoch_s'],
            cache_build_s=build_s,
            cache_fill_rest_s=cached['fill_rest_s'],
            cache_saving_per_epoch_s=saving_per_epoch,
            cache_payback_epochs=build_s / saving_per_epoch
            if saving_per_epoch > 0
            else float('inf'),
            cache_mb_per_image=cached['cache_bytes'] / cached['cache_entries'] / 2**20,
        )
    return out


def report(results):
    lines = [
        '| mode | ms/iter | ips (img/s) | vs student | peak RSS (MB) | CPU util (cores) |',
        '|---|---|---|---|---|---|',
    ]
    q = ratios(results)
    for mode, r in results.items():
        versus = q.get(f'{mode}_vs_student', 1.0 if mode == 'student' else None)
        lines.append(
            f'| {mode} | {r["ms_per_iter"]:.0f} | {r["ips"]:.2f} | '
            + (f'{versus:.2f}x' if versus is not None else '-')
            + f' | {r["peak_rss_mb"]:.0f} | {r["cpu_util"]:.2f} |'
        )
    lines.append('')
    for mode in ('online', 'online_dygraph'):
        if f'{mode}_vs_anchor' in q:
            lines.append(f'{mode} / anchor ips: {q[f"{mode}_vs_anchor"]:.2f}x')
    if 'online' in results:
        compiled = results['online'].get('teacher_backend')
        lines.append(
            'online teacher: '
            + (
                f'compiled for Paddle Inference ({compiled}) in '
                f'{results["online"]["teacher_compile_s"]:.1f} s, once'
                if compiled
                else 'dygraph under no_grad'
            )
        )
    if 'cache_build_s' in q:
        cached = results['cached']
        lines.append(
            f'cache: first epoch {q["cold_cache_epoch_s"]:.1f} s from empty vs '
            f'{q["online_first_epoch_s"]:.1f} s online, filling the rest '
            f'{cached["fill_rest_s"]:.1f} s (explicit, benchmark only) -> lazy build cost '
            f'{q["cache_build_s"]:.1f} s; {cached["cache_entries"]} entries, '
            f'{q["cache_mb_per_image"]:.2f} MB each on disk; saves '
            f'{q["cache_saving_per_epoch_s"]:.1f} s per epoch -> paid back in '
            f'{q["cache_payback_epochs"]:.2f} epochs'
        )
    return '\n'.join(lines)
