"""The one training loop behind train.py and distill_train.py.

paddleseg 2.8.0's `core.train` fails on paddle 2.6 (0-D tensors), so the loop is ours.
It trains any model that, in training mode, maps (batch, iteration) to its named losses
and, in eval mode, images to logits: it sums the losses, steps, logs, evaluates and saves.
The model also says which of its layers ship (`deployable`: best_model/model.pdparams),
which train beside them without shipping (`auxiliary`, kept in the checkpoint's train
state), whether data parallelism must allow unused parameters, and what the run log
records about it (`run_info()`).
"""

import json
import math
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import paddle
from paddleseg.utils import logger

from paddleseg_ext import weights
from paddleseg_ext.amp import amp_enabled, autocast
from paddleseg_ext.engine import checkpoint
from paddleseg_ext.engine.sampling import (
    SAMPLE_FIELDS,
    ResumableBatchSampler,
    SeededSamples,
    iteration_seed,
)
from paddleseg_ext.errors import UserInputError
from paddleseg_ext.evaluation import task_of


@dataclass
class TrainOptions:
    save_dir: str = 'output'
    iters: Optional[int] = None  # None: the config's
    save_interval: int = 1000
    do_eval: bool = False
    use_vdl: bool = False
    num_workers: int = 0
    seed: Optional[int] = None
    resume_model: Optional[str] = None
    log_iters: int = 10
    keep_checkpoint_max: int = 5
    precision: str = 'fp32'


@dataclass
class Progress:
    """Where a run stands; with the seed, all a checkpoint needs to continue it exactly."""

    seed: int
    iter: int = 0
    best_score: float = -1.0  # the task's primary metric (mIoU, top-1) of best_model
    best_iter: int = -1


@dataclass
class LogWindow:
    """What the next [TRAIN] line averages: loss sums and costs since the last one."""

    sums: dict = field(default_factory=dict)
    count: int = 0
    batch_cost: float = 0.0
    reader_cost: float = 0.0
    cpu_cost: float = 0.0

    def add(self, values, batch_cost, cpu_cost):
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1
        self.batch_cost += batch_cost
        self.cpu_cost += cpu_cost


class NonFiniteLossError(UserInputError):
    """A loss term became NaN or Inf; the run stops, saved checkpoints stay."""


def batches(samples, sampler, num_workers):
    """Training batches: worker processes, or with num_workers 0 the main thread itself.

    paddle's DataLoader reads in a background thread even with no workers, where a bad
    image's error is printed and the loop hangs; read here, it reaches the CLI as one line.
    """
    if num_workers > 0:
        return _worker_batches(samples, sampler, num_workers)
    collate = paddle.io.dataloader.collate.default_collate_fn
    return (
        [paddle.to_tensor(field) for field in collate([samples[key] for key in keys])]
        for keys in sampler
    )


def _worker_batches(samples, sampler, num_workers):
    """DataLoader batches; a bad sample in a worker becomes the worker's one-line error."""
    handle, samples.error_file = tempfile.mkstemp(prefix='sample_error_')
    os.close(handle)
    default_hook = threading.excepthook

    def quiet_when_reported(args):
        # paddle's reader thread re-raises the worker's error and prints its traceback;
        # the main thread reports a bad sample as one line instead.
        if os.path.getsize(samples.error_file) == 0:
            default_hook(args)

    threading.excepthook = quiet_when_reported
    try:
        yield from paddle.io.DataLoader(
            samples,
            batch_sampler=sampler,
            num_workers=num_workers,
            return_list=True,
            persistent_workers=True,
        )
    except Exception:
        with open(samples.error_file) as f:
            message = f.read()
        if message:
            raise UserInputError(message) from None
        raise
    finally:
        threading.excepthook = default_hook
        os.remove(samples.error_file)


def build_optimizer(builder, model):
    """The config's optimizer over `model`'s parameters, as SegBuilder builds it."""
    opt_cfg = builder.config.optimizer_cfg
    opt_cfg['type'] = {'sgd': 'SGD', 'adam': 'Adam'}.get(opt_cfg['type'], opt_cfg['type'])
    if opt_cfg['type'] == 'SGD' and 'momentum' in opt_cfg:
        opt_cfg['type'] = 'Momentum'
    return builder.build_component(opt_cfg)(model, builder.lr_scheduler)


class StopRequest:
    """SIGINT/SIGTERM: finish the current iteration, save, exit cleanly."""

    def __init__(self):
        self.signal_name = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name
        # A second signal stops at once (e.g. a run stuck in a collective).
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)

    def requested(self, world_size):
        """Whether to stop after this iteration; under data parallelism all ranks agree,
        so none waits for a gradient all-reduce that never comes."""
        if world_size == 1:
            return self.signal_name is not None
        flag = paddle.to_tensor([int(self.signal_name is not None)])
        paddle.distributed.all_reduce(flag, op=paddle.distributed.ReduceOp.MAX)
        if flag.item() and self.signal_name is None:
            self.signal_name = 'a signal to another process'
        return bool(flag.item())


class RunLog:
    """VisualDL scalars and a JSON-lines record, on rank 0 only.

    Files are opened at the first record, so a run that fails on its first batch leaves
    save_dir as it found it; `header()` (what the model says about itself) is written first,
    and again whenever it has changed at a later record (a model may settle values, such as
    measured coefficients, while it trains).
    """

    def __init__(self, save_dir, use_vdl, enabled, header=None):
        self.save_dir = save_dir
        self.use_vdl = use_vdl
        self.enabled = enabled
        self.header = header
        self.written_header = None
        self.vdl = None
        self.jsonl = None

    def record(self, iteration, tag, values):
        if not self.enabled:
            return
        if self.jsonl is None:
            os.makedirs(self.save_dir, exist_ok=True)
            self.jsonl = open(os.path.join(self.save_dir, 'train_log.jsonl'), 'a')
            if self.use_vdl:
                from visualdl import LogWriter

                self.vdl = LogWriter(self.save_dir)
        if self.header is not None:
            header = self.header()
            if header and header != self.written_header:
                self.jsonl.write(json.dumps({'iter': iteration, 'tag': 'Run', **header}) + '\n')
                self.written_header = header
        if self.vdl is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.vdl.add_scalar(f'{tag}/{key}', value, iteration)
        self.jsonl.write(json.dumps({'iter': iteration, 'tag': tag, **values}) + '\n')
        self.jsonl.flush()

    def close(self):
        if self.vdl is not None:
            self.vdl.close()
        if self.jsonl is not None:
            self.jsonl.close()


class Trainer:
    """Trains `model` on the config's data, PaddleSeg's outputs in save_dir."""

    def __init__(self, options, config, builder, model):
        self.options = options
        self.config = config
        self.builder = builder
        self.model = model
        self.iters = options.iters or config.iters
        self.rank = paddle.distributed.get_rank()
        self.world_size = paddle.distributed.get_world_size()
        self.is_writer = self.rank == 0
        if self.is_writer:
            _check_writable(options.save_dir)
        # Segmentation or classification: what evaluation scores and best_model follows.
        self.task = task_of(builder.train_dataset)

    def train(self):
        opts = self.options
        optimizer = build_optimizer(self.builder, self.model)
        progress, saved_state = self._restore(optimizer)

        model = self.model
        if self.world_size > 1:
            model = paddle.DataParallel(
                self.model, find_unused_parameters=self.model.find_unused_parameters
            )
        train_dataset = self.builder.train_dataset
        sampler = ResumableBatchSampler(
            len(train_dataset),
            self.config.batch_size,
            self.iters,
            progress.seed,
            progress.iter,
            self.rank,
            self.world_size,
        )
        samples = SeededSamples(train_dataset, progress.seed)
        scaler = self._grad_scaler(saved_state)
        run_info = self.model.run_info()
        if run_info:
            logger.info('Run: ' + ', '.join(f'{k} {v}' for k, v in run_info.items()))
        run_log = RunLog(opts.save_dir, opts.use_vdl, self.is_writer, header=self.model.run_info)
        stop = StopRequest()
        self.model.train()
        window = LogWindow()
        tic, cpu_tic = time.time(), time.process_time()
        logger.info(
            f'Training {self.iters} iterations from iter {progress.iter}, '
            f'{self.world_size} process(es), seed {progress.seed}, '
            f'device {paddle.get_device()}'
        )
        try:
            for fields in batches(samples, sampler, opts.num_workers):
                window.reader_cost += time.time() - tic
                progress.iter += 1
                batch = dict(zip(SAMPLE_FIELDS, fields))
                values, lr = self.step(model, optimizer, scaler, progress, batch)
                window.add(values, time.time() - tic, time.process_time() - cpu_tic)
                if progress.iter % opts.log_iters == 0 or progress.iter == self.iters:
                    self._log_train(progress.iter, window, lr, run_log)
                    window = LogWindow()

                stopping = stop.requested(self.world_size)
                if (
                    progress.iter % opts.save_interval == 0
                    or progress.iter == self.iters
                    or stopping
                ):
                    if opts.do_eval and not stopping:
                        self._evaluate(progress, run_log)
                        self.model.train()
                    if self.is_writer:
                        self._save_checkpoint(progress, optimizer, scaler)
                    if stopping:
                        logger.info(
                            f'Stopped by {stop.signal_name} after iter {progress.iter}; '
                            f'checkpoint saved. Resume with the same command plus '
                            f'--resume_model auto'
                        )
                        return
                tic, cpu_tic = time.time(), time.process_time()
        finally:
            run_log.close()
        logger.info(
            f'Training finished at iter {progress.iter}'
            + (
                f', best val {self.task.primary_label} {progress.best_score:.4f} at '
                f'iter {progress.best_iter}'
                if progress.best_iter > 0
                else ''
            )
        )

    def _restore(self, optimizer):
        """Progress from --resume_model (weights, optimizer, auxiliary layers loaded) or a
        fresh one; and the checkpoint's saved state ({} when fresh)."""
        opts = self.options
        resume_dir, saved = checkpoint.resume_checkpoint(opts.resume_model, opts.save_dir)
        if resume_dir is None:
            if opts.resume_model == 'auto':
                logger.info(
                    f'--resume_model auto: no checkpoint in {opts.save_dir}, starting fresh'
                )
            seed = opts.seed if opts.seed is not None else self._shared_random_seed()
            return Progress(seed=seed), {}
        checkpoint.check_contents(resume_dir, saved)
        state = saved['train_state.pdstates']
        weights.set_weights(
            self.model.deployable,
            saved['model.pdparams'],
            os.path.join(resume_dir, 'model.pdparams'),
        )
        try:
            optimizer.set_state_dict(saved['model.pdopt'])
            self.model.auxiliary.set_state_dict(state['auxiliary'])
        except Exception as exc:  # contents of the right types that do not fit this run
            detail = ' '.join(str(exc).split())[:200] or type(exc).__name__
            raise UserInputError(
                f'{resume_dir}: the optimizer or train state does not fit this config '
                f'({detail}): resume with the config the checkpoint was trained with'
            ) from None
        progress = Progress(
            seed=state['seed'],
            iter=state['iter'],
            # 'best_miou': checkpoints written before classification
            best_score=state.get('best_score', state.get('best_miou')),
            best_iter=state['best_iter'],
        )
        logger.info(
            f'Resumed from {resume_dir} at iter {progress.iter} '
            f'(best {self.task.primary_label} so far {progress.best_score:.4f})'
        )
        if state.get('iters') not in (None, self.iters):
            logger.warning(
                f"the checkpoint's run had --iters {state['iters']}, this one "
                f'{self.iters}: the learning-rate schedule differs from an '
                f'uninterrupted run'
            )
        return progress, state

    def _grad_scaler(self, saved_state):
        """fp16 on a GPU trains with a loss scaler; other precisions need none."""
        precision = self.options.precision
        if amp_enabled(precision) and precision == 'fp16':
            scaler = paddle.amp.GradScaler(init_loss_scaling=1024)
            if 'scaler' in saved_state:
                scaler.load_state_dict(saved_state['scaler'])
            return scaler
        if precision != 'fp32' and not amp_enabled(precision):
            logger.info(f'--precision {precision} is ignored on CPU: training in fp32')
        return None

    def step(self, model, optimizer, scaler, progress, batch):
        """One optimisation step; returns ({loss term: value, 'loss': total}, its lr)."""
        # Dropout and other model randomness depend on (seed, iteration) alone, like the
        # data: that is the whole RNG state a checkpoint needs for exact resume (paddle's
        # own generator state does not survive pickling).
        paddle.seed(iteration_seed(progress.seed, progress.iter))
        with autocast(self.options.precision):
            losses = model(batch, progress.iter)
        total = paddle.add_n(list(losses.values()))
        if scaler is not None:
            scaled = scaler.scale(total)
            scaled.backward()
            scaler.minimize(optimizer, scaled)
        else:
            total.backward()
            optimizer.step()
        lr = optimizer.get_lr()  # this iteration's, before the scheduler steps
        optimizer.clear_grad()
        if isinstance(optimizer._learning_rate, paddle.optimizer.lr.LRScheduler):
            optimizer._learning_rate.step()
        values = {name: float(value) for name, value in losses.items()}
        values['loss'] = float(total)
        for name, value in values.items():
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f'iter {progress.iter}: loss term {name} is {value}: lower the learning '
                    f"rate or that term's coef; checkpoints in {self.options.save_dir} are kept"
                )
        return values, lr

    def _evaluate(self, progress, run_log):
        """Val metrics of the model; best_model is replaced only by a better one (by the
        task's primary metric)."""
        metrics = self.task.evaluate(
            self.model,
            self.builder.val_dataset,
            num_workers=self.options.num_workers,
            precision=self.options.precision,
        )
        run_log.record(progress.iter, 'Evaluate', self.task.log_record(metrics))
        score = metrics[self.task.primary]
        if score > progress.best_score:
            progress.best_score, progress.best_iter = score, progress.iter
            if self.is_writer:
                checkpoint.save_atomic(
                    os.path.join(self.options.save_dir, 'best_model'),
                    {'model.pdparams': self.model.deployable.state_dict()},
                )
        logger.info(
            f'[EVAL] The model with the best validation {self.task.primary_label} '
            f'({progress.best_score:.4f}) was saved at iter {progress.best_iter}.'
        )

    def _shared_random_seed(self):
        """A fresh seed, the same on every rank (they must agree on the data order)."""
        seed = paddle.to_tensor([int(np.random.SeedSequence().generate_state(1)[0] % 2**31)])
        if self.world_size > 1:
            paddle.distributed.broadcast(seed, src=0)
        return int(seed.item())

    def _save_checkpoint(self, progress, optimizer, scaler):
        iteration = progress.iter
        state = {
            'iter': iteration,
            'iters': self.iters,
            'seed': progress.seed,
            'best_score': progress.best_score,
            'best_iter': progress.best_iter,
            'auxiliary': self.model.auxiliary.state_dict(),
        }
        if scaler is not None:
            state['scaler'] = scaler.state_dict()
        checkpoint.save_atomic(
            os.path.join(self.options.save_dir, f'iter_{iteration}'),
            {
                'model.pdparams': self.model.deployable.state_dict(),
                'model.pdopt': optimizer.state_dict(),
                'train_state.pdstates': state,
            },
        )
        checkpoint.prune_checkpoints(self.options.save_dir, self.options.keep_checkpoint_max)

    def _log_train(self, iteration, window, lr, run_log):
        means = {name: value / window.count for name, value in window.sums.items()}
        batch_cost = window.batch_cost / window.count
        reader_cost = window.reader_cost / window.count
        cpu_util = window.cpu_cost / window.batch_cost  # cores busy in this process
        ips = self.config.batch_size * self.world_size / batch_cost
        eta = int((self.iters - iteration) * batch_cost)
        epoch = (iteration - 1) * self.config.batch_size * self.world_size // len(
            self.builder.train_dataset
        ) + 1
        parts = ', '.join(f'{name}: {value:.4f}' for name, value in means.items() if name != 'loss')
        logger.info(
            f'[TRAIN] epoch: {epoch}, iter: {iteration}/{self.iters}, '
            f'loss: {means["loss"]:.4f} ({parts}), lr: {lr:.6f}, batch_cost: {batch_cost:.4f}, '
            f'reader_cost: {reader_cost:.5f}, ips: {ips:.4f} samples/sec | '
            f'ETA {eta // 3600:02d}:{eta % 3600 // 60:02d}:{eta % 60:02d}'
        )
        run_log.record(
            iteration,
            'Train',
            {
                **means,
                'lr': lr,
                'batch_cost': batch_cost,
                'reader_cost': reader_cost,
                'ips': ips,
                'cpu_util': cpu_util,
            },
        )


def _check_writable(save_dir):
    """Fails early on a save_dir that cannot be written; leaves no trace if it can."""
    created = not os.path.exists(save_dir)
    try:
        os.makedirs(save_dir, exist_ok=True)
        probe = os.path.join(save_dir, '.write_test')
        with open(probe, 'w'):
            pass
        os.remove(probe)
        if created:
            os.rmdir(save_dir)
    except OSError as exc:
        raise UserInputError(
            f"save_dir '{save_dir}' cannot be written ({exc.strerror}): choose another --save_dir"
        ) from None
