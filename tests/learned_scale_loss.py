"""A distillation loss with a learnable parameter, registered like a user's own loss: the
tests check that such a parameter trains, is saved and comes back on resume."""

import paddle
from paddleseg.cvlibs import manager


@manager.LOSSES.add_component
class LearnedScaleL2(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.scale = self.create_parameter(
            [1], default_initializer=paddle.nn.initializer.Constant(1.0)
        )

    def forward(self, student, teacher):
        return paddle.mean(paddle.square(self.scale * student - teacher))
