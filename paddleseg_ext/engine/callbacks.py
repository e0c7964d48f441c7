"""The training loop's extension points: each callback is told when training starts, after
every iteration and when training ends, and does one job there. The engine's own are the
train log, stopping on a signal, evaluation (best_model) and checkpoints, in that order;
tests and benchmarks add theirs through `Trainer(..., callbacks=[...])`."""

import os
import signal
from dataclasses import dataclass, field

import paddle
from paddleseg.utils import logger

from paddleseg_ext.engine import checkpoint


class Callback:
    """Does nothing; a callback overrides the moments it needs."""

    def before_train(self, trainer, loop):
        pass

    def after_iter(self, trainer, loop):
        pass

    def after_train(self, trainer, loop):
        pass


def at_save_point(trainer, loop):
    """Every save_interval iterations, at the last one, and when the run is stopping."""
    iteration = loop.progress.iter
    return (
        iteration % trainer.options.save_interval == 0
        or iteration == trainer.iters
        or loop.stopping
    )


@dataclass
class LogWindow:
    """What the next [TRAIN] line averages: loss sums and costs since the last one."""

    sums: dict = field(default_factory=dict)
    count: int = 0
    batch_cost: float = 0.0
    reader_cost: float = 0.0
    cpu_cost: float = 0.0
    # The ETA leaves out a process's first step: it holds one-off set-up (a compiled
    # teacher, a first cache fill) that the remaining steps do not repeat.
    steady_cost: float = 0.0
    steady_count: int = 0

    def add(self, values, batch_cost, reader_cost, cpu_cost, first_step):
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1
        self.batch_cost += batch_cost
        self.reader_cost += reader_cost
        self.cpu_cost += cpu_cost
        if not first_step:
            self.steady_cost += batch_cost
            self.steady_count += 1


class TrainLog(Callback):
    """Every log_iters iterations: the averaged losses, costs and ETA on the console and
    in the run log (RunLog)."""

    def before_train(self, trainer, loop):
        self.window = LogWindow()
        self.first_iter = loop.progress.iter

    def after_iter(self, trainer, loop):
        iteration = loop.progress.iter
        self.window.add(
            loop.values,
            loop.batch_cost,
            loop.reader_cost,
            loop.cpu_cost,
            first_step=iteration == self.first_iter + 1,
        )
        if iteration % trainer.options.log_iters == 0 or iteration == trainer.iters:
            self._log(trainer, loop)
            self.window = LogWindow()

    def _log(self, trainer, loop):
        window, iteration = self.window, loop.progress.iter
        means = {name: value / window.count for name, value in window.sums.items()}
        batch_cost = window.batch_cost / window.count
        reader_cost = window.reader_cost / window.count
        cpu_util = window.cpu_cost / window.batch_cost  # cores busy in this process
        ips = trainer.config.batch_size * trainer.world_size / batch_cost
        if window.steady_count:
            eta = int((trainer.iters - iteration) * window.steady_cost / window.steady_count)
            eta_text = f'{eta // 3600:02d}:{eta % 3600 // 60:02d}:{eta % 60:02d}'
        else:
            eta_text = (
                '--:--:-- (after the first step)' if iteration < trainer.iters else '00:00:00'
            )
        epoch = (iteration - 1) * trainer.config.batch_size * trainer.world_size // len(
            trainer.builder.train_dataset
        ) + 1
        parts = ', '.join(f'{name}: {value:.4f}' for name, value in means.items() if name != 'loss')
        logger.info(
            f'[TRAIN] epoch: {epoch}, iter: {iteration}/{trainer.iters}, '
            f'loss: {means["loss"]:.4f} ({parts}), lr: {loop.lr:.6f}, batch_cost: {batch_cost:.4f}, '
            f'reader_cost: {reader_cost:.5f}, ips: {ips:.4f} samples/sec | '
            f'ETA {eta_text}'
        )
        loop.run_log.record(
            iteration,
            'Train',
            {
                **means,
                'lr': loop.lr,
                'batch_cost': batch_cost,
                'reader_cost': reader_cost,
                'ips': ips,
                'cpu_util': cpu_util,
            },
        )


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


class StopOnSignal(Callback):
    """SIGINT/SIGTERM: the loop stops after this iteration, once its checkpoint is saved."""

    def before_train(self, trainer, loop):
        self.request = StopRequest()

    def after_iter(self, trainer, loop):
        loop.stopping = self.request.requested(trainer.world_size)
        loop.stop_reason = self.request.signal_name


class EvaluateBest(Callback):
    """At each save point (not when stopping): val metrics in the log, and best_model
    replaced only by a better model (by the task's primary metric)."""

    def after_iter(self, trainer, loop):
        if loop.stopping or not at_save_point(trainer, loop):
            return
        progress = loop.progress
        metrics = trainer.task.evaluate(
            trainer.model,
            trainer.builder.val_dataset,
            num_workers=trainer.options.num_workers,
            precision=trainer.options.precision,
        )
        trainer.model.train()
        loop.run_log.record(progress.iter, 'Evaluate', trainer.task.log_record(metrics))
        score = metrics[trainer.task.primary]
        if score > progress.best_score:
            progress.best_score, progress.best_iter = score, progress.iter
            if trainer.is_writer:
                checkpoint.save_atomic(
                    os.path.join(trainer.options.save_dir, 'best_model'),
                    {'model.pdparams': trainer.model.deployable.state_dict()},
                )
        logger.info(
            f'[EVAL] The model with the best validation {trainer.task.primary_label} '
            f'({progress.best_score:.4f}) was saved at iter {progress.best_iter}.'
        )


class SaveCheckpoint(Callback):
    """At each save point, on the writing rank: iter_N with the weights, the optimizer and
    the train state (progress, auxiliary layers, loss scaler); the oldest pruned."""

    def after_iter(self, trainer, loop):
        if not (trainer.is_writer and at_save_point(trainer, loop)):
            return
        progress = loop.progress
        state = {
            'iter': progress.iter,
            'iters': trainer.iters,
            'seed': progress.seed,
            'best_score': progress.best_score,
            'best_iter': progress.best_iter,
            'auxiliary': trainer.model.auxiliary.state_dict(),
        }
        if loop.scaler is not None:
            state['scaler'] = loop.scaler.state_dict()
        checkpoint.save_atomic(
            os.path.join(trainer.options.save_dir, f'iter_{progress.iter}'),
            {
                'model.pdparams': trainer.model.deployable.state_dict(),
                'model.pdopt': loop.optimizer.state_dict(),
                'train_state.pdstates': state,
            },
        )
        checkpoint.prune_checkpoints(trainer.options.save_dir, trainer.options.keep_checkpoint_max)
