"""The engine's seams: the model contract it checks, and callbacks that see the loop."""

import os

import pytest
from conftest import TEST_CONFIGS, data_opts
from paddleseg.cvlibs import SegBuilder

from paddleseg_ext.config import load_config
from paddleseg_ext.engine.callbacks import Callback
from paddleseg_ext.engine.trainer import Trainer, TrainOptions
from slim.distill import plain_model


class Recording(Callback):
    def __init__(self):
        self.events = []

    def before_train(self, trainer, loop):
        self.events.append(('before', loop.progress.iter))

    def after_iter(self, trainer, loop):
        self.events.append(('iter', loop.progress.iter, sorted(loop.values)))

    def after_train(self, trainer, loop):
        self.events.append(('after', loop.progress.iter))


def tiny_plain(synthetic_root):
    config = load_config(
        os.path.join(TEST_CONFIGS, 'tiny_teacher.yml'), iters=3, opts=data_opts(synthetic_root)[1:]
    )
    builder = SegBuilder(config)
    return config, builder, plain_model(config, builder)


def test_a_callback_sees_every_iteration_after_the_engine_s_own(synthetic_root, tmp_path):
    config, builder, model = tiny_plain(synthetic_root)
    recording = Recording()
    options = TrainOptions(save_dir=str(tmp_path / 'run'), save_interval=2, seed=0)
    trainer = Trainer(options, config, builder, model, callbacks=[recording])
    trainer.train()
    losses = ['CrossEntropyLoss', 'loss']
    assert recording.events == [
        ('before', 0),
        ('iter', 1, losses),
        ('iter', 2, losses),
        ('iter', 3, losses),
        ('after', 3),
    ]
    # The engine's checkpoint callback ran at its save points before ours saw them.
    assert sorted(n for n in os.listdir(tmp_path / 'run') if n.startswith('iter_')) == [
        'iter_2',
        'iter_3',
    ]


def test_a_model_without_the_contract_is_refused(synthetic_root, tmp_path):
    config, builder, model = tiny_plain(synthetic_root)
    with pytest.raises(TypeError, match='contract.TrainableModel'):
        Trainer(TrainOptions(save_dir=str(tmp_path)), config, builder, model.student)
