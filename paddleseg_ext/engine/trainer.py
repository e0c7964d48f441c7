"""The one training loop behind train.py and distill_train.py.

paddleseg 2.8.0's `core.train` fails on paddle 2.6 (0-D tensors), so the loop is ours.
It trains any `contract.TrainableModel`: each iteration it sums the model's named losses
and steps; logging, stopping, evaluation and checkpoints are callbacks (callbacks.py).
"""

import math
import os
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import paddle
from paddleseg.utils import logger

from paddleseg_ext import weights
from paddleseg_ext.amp import amp_enabled, autocast
from paddleseg_ext.engine import checkpoint
from paddleseg_ext.engine.callbacks import EvaluateBest, SaveCheckpoint, StopOnSignal, TrainLog
from paddleseg_ext.engine.contract import TrainableModel
from paddleseg_ext.engine.optimizer import build_optimizer
from paddleseg_ext.engine.run_log import RunLog
from paddleseg_ext.engine.sampling import (
    SAMPLE_FIELDS,
    ResumableBatchSampler,
    SeededSamples,
    batches,
    iteration_seed,
)
from paddleseg_ext.errors import DIVERGED_EXIT_CODE, UserInputError
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


class NonFiniteLossError(UserInputError):
    """A loss term became NaN or Inf; the run stops, saved checkpoints stay. Its exit code
    of its own tells tools (tools/tune.py) a diverged run from a broken one."""

    exit_code = DIVERGED_EXIT_CODE


@dataclass
class LoopState:
    """What the callbacks see of the loop: progress, this iteration's losses and costs, and
    whether the run is stopping (set by StopOnSignal)."""

    progress: Progress
    optimizer: object
    scaler: object
    run_log: RunLog
    values: dict = field(default_factory=dict)
    lr: float = 0.0
    batch_cost: float = 0.0
    reader_cost: float = 0.0
    cpu_cost: float = 0.0
    stopping: bool = False
    stop_reason: Optional[str] = None


class Trainer:
    """Trains `model` (a contract.TrainableModel) on the config's data, PaddleSeg's outputs
    in save_dir; `callbacks` run after the engine's own."""

    def __init__(self, options, config, builder, model, callbacks=()):
        if not isinstance(model, TrainableModel):
            raise TypeError(f'{type(model).__name__} lacks what contract.TrainableModel asks')
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
        engine_callbacks = [TrainLog(), StopOnSignal()]
        if options.do_eval:
            engine_callbacks.append(EvaluateBest())
        self.callbacks = [*engine_callbacks, SaveCheckpoint(), *callbacks]

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
        run_info = self.model.run_info()
        if run_info:
            logger.info('Run: ' + ', '.join(f'{k} {v}' for k, v in run_info.items()))
        loop = LoopState(
            progress,
            optimizer,
            self._grad_scaler(saved_state),
            RunLog(
                opts.save_dir,
                opts.use_vdl,
                self.is_writer,
                header=self.model.run_info,
                config=self.config.dic,
            ),
        )
        self.model.train()
        logger.info(
            f'Training {self.iters} iterations from iter {progress.iter}, '
            f'{self.world_size} process(es), seed {progress.seed}, '
            f'device {paddle.get_device()}; config as run: '
            f'{os.path.join(opts.save_dir, "config.yml")}'
        )
        for callback in self.callbacks:
            callback.before_train(self, loop)
        try:
            tic, cpu_tic = time.time(), time.process_time()
            for fields in batches(samples, sampler, opts.num_workers):
                loop.reader_cost = time.time() - tic
                progress.iter += 1
                batch = dict(zip(SAMPLE_FIELDS, fields))
                loop.values, loop.lr = self.step(model, optimizer, loop.scaler, progress, batch)
                loop.batch_cost = time.time() - tic
                loop.cpu_cost = time.process_time() - cpu_tic
                for callback in self.callbacks:
                    callback.after_iter(self, loop)
                if loop.stopping:
                    logger.info(
                        f'Stopped by {loop.stop_reason} after iter {progress.iter}; '
                        f'checkpoint saved. Resume with the same command plus '
                        f'--resume_model auto'
                    )
                    return
                tic, cpu_tic = time.time(), time.process_time()
        finally:
            for callback in self.callbacks:
                callback.after_train(self, loop)
            loop.run_log.close()
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

    def _shared_random_seed(self):
        """A fresh seed, the same on every rank (they must agree on the data order)."""
        seed = paddle.to_tensor([int(np.random.SeedSequence().generate_state(1)[0] % 2**31)])
        if self.world_size > 1:
            paddle.distributed.broadcast(seed, src=0)
        return int(seed.item())


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
