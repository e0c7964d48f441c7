"""Export of trained weights to a Paddle Inference model, as PaddleSeg's tools/export.py.

save_dir/model.json (paddle 3's PIR program; model.pdmodel on paddle 2, or on paddle 3 with
program_format 'pdmodel', which PaddleSlim's int8 needs), save_dir/model.pdiparams
(`paddle.jit.save`) and save_dir/deploy.yaml:

    Deploy:
      model: model.json           # model.pdmodel on paddle 2
      params: model.pdiparams
      transforms: [the config's val_dataset transforms]
      input_shape: [null, C, null, null]   # C: val_dataset.img_channels (3 if unset)
      output_op: argmax
      output_dtype: int32
"""

import contextlib
import os

import paddle
import yaml

from paddleseg_ext.compat import PADDLE_3, PROGRAM_SUFFIX, legacy_static_ir
from paddleseg_ext.components import build_model_without_weights, image_channels
from paddleseg_ext.config import load_config
from paddleseg_ext.errors import UserInputError
from paddleseg_ext.pretrained import load_weights

OUTPUT_OPS = ('argmax', 'softmax', 'none')
MODEL_PREFIX = 'model'
MODEL_FILENAME = MODEL_PREFIX + PROGRAM_SUFFIX  # what this paddle's jit.save writes
# 'json': paddle 3's PIR program; 'pdmodel': the ProgramDesc of paddle 2 (paddle 3 writes it too)
PROGRAM_FORMATS = ('json', 'pdmodel') if PADDLE_3 else ('pdmodel',)
PARAMS_FILENAME = 'model.pdiparams'
DEPLOY_FILENAME = 'deploy.yaml'


class NetWithOutputOp(paddle.nn.Layer):
    """The model with its output op applied over the class axis (1) of every output:
    PaddleSeg's export wrapper, which serves [N, C] logits as it serves [N, C, H, W]."""

    def __init__(self, model, output_op):
        super().__init__()
        if output_op not in OUTPUT_OPS:
            raise ValueError(f'output_op must be one of {OUTPUT_OPS}, got {output_op!r}')
        self.model = model
        self.output_op = output_op

    def forward(self, x):
        outs = []
        for out in self.model(x):
            if self.output_op == 'argmax':
                out = paddle.argmax(out, axis=1, dtype='int32')
            elif self.output_op == 'softmax':
                out = paddle.nn.functional.softmax(out, axis=1)
            outs.append(out)
        return outs


def check_input_shape(input_shape, channels=3):
    """[N, C, H, W] with None for dynamic sizes; -1 or 0 given on the command line mean None.
    None: any batch and size of `channels` channels."""
    if input_shape is None:
        return [None, channels, None, None]
    shape = list(input_shape)
    if len(shape) != 4:
        raise UserInputError(
            f'--input_shape takes 4 numbers (N C H W, e.g. 1 3 512 512), got {len(shape)}: {shape}'
        )
    if any(dim is not None and dim < -1 for dim in shape):
        raise UserInputError(f'--input_shape {shape}: sizes must be positive, or -1 for any')
    shape = [None if dim in (None, -1, 0) else int(dim) for dim in shape]
    if shape[1] is not None and shape[1] != channels:
        raise UserInputError(
            f"--input_shape {shape}: C is {shape[1]}, but the config's val "
            f'images have {channels} (val_dataset.img_channels): use '
            f'{channels}'
        )
    return shape


@contextlib.contextmanager
def export_stage():
    # Some PaddleSeg models (e.g. with custom ops) check this while being traced.
    previous = os.environ.get('PADDLESEG_EXPORT_STAGE')
    os.environ['PADDLESEG_EXPORT_STAGE'] = 'True'
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop('PADDLESEG_EXPORT_STAGE', None)
        else:
            os.environ['PADDLESEG_EXPORT_STAGE'] = previous


def make_save_dir(save_dir):
    try:
        os.makedirs(save_dir, exist_ok=True)
    except OSError as exc:
        raise UserInputError(
            f"--save_dir '{save_dir}' cannot be created ({exc.strerror}): choose another folder"
        ) from None
    if not os.access(save_dir, os.W_OK):
        raise UserInputError(f"--save_dir '{save_dir}' is not writable: choose another folder")


def deploy_info(config, input_shape, output_op, model_filename=MODEL_FILENAME):
    return {
        'Deploy': {
            'model': model_filename,
            'params': PARAMS_FILENAME,
            'transforms': config.dic['val_dataset'].get('transforms', []),
            'input_shape': input_shape,
            'output_op': output_op,
            'output_dtype': 'int32' if output_op == 'argmax' else 'float32',
        }
    }


def write_deploy_yaml(save_dir, info):
    with open(os.path.join(save_dir, DEPLOY_FILENAME), 'w') as f:
        yaml.dump(info, f)


def export_model(
    config_path,
    model_path,
    save_dir,
    input_shape=None,
    output_op='argmax',
    opts=None,
    program_format=None,
):
    """Builds the config's model, loads model_path strictly and saves it for Paddle Inference,
    as program_format (None: this paddle's own, PROGRAM_SUFFIX).

    Returns the deploy.yaml contents (a dict).
    """
    if output_op not in OUTPUT_OPS:
        raise UserInputError(
            f'--output_op {output_op!r} is invalid: use one of {", ".join(OUTPUT_OPS)}'
        )
    program_format = program_format or PROGRAM_SUFFIX[1:]
    if program_format not in PROGRAM_FORMATS:
        raise UserInputError(
            f'--program_format {program_format!r} is not written by paddle '
            f'{paddle.__version__}: use one of {", ".join(PROGRAM_FORMATS)}'
        )
    config = load_config(config_path, opts=opts, required=('model', 'val_dataset'))
    shape = check_input_shape(input_shape, image_channels(config.dic['val_dataset']))
    model, _ = build_model_without_weights(config)  # model_path is the weights exported
    load_weights(model, model_path)
    make_save_dir(save_dir)

    return save_for_inference(model, config, save_dir, shape, output_op, program_format)


def save_for_inference(model, config, save_dir, shape, output_op, program_format=None):
    """The program (program_format, None: this paddle's own), model.pdiparams and
    deploy.yaml of a built model in save_dir (which exists); shape as check_input_shape
    returns it. Returns the deploy.yaml contents."""
    program_format = program_format or PROGRAM_SUFFIX[1:]
    model.eval()
    net = NetWithOutputOp(model, output_op) if output_op != 'none' else model
    net.eval()
    input_spec = [paddle.static.InputSpec(shape=list(shape), dtype='float32', name='x')]
    legacy = program_format == 'pdmodel' and PADDLE_3
    with export_stage(), legacy_static_ir() if legacy else contextlib.nullcontext():
        # With input_spec, jit.save converts the whole forward to one static graph.
        try:
            paddle.jit.save(net, os.path.join(save_dir, MODEL_PREFIX), input_spec=input_spec)
        except TypeError as exc:
            # paddle 3.3 binds paddle.multiply, logical_and and others to PIR-only kernels
            if not (legacy and 'must be Value, but got Variable' in str(exc)):
                raise
            raise UserInputError(
                f'--program_format pdmodel: paddle {paddle.__version__} cannot trace this '
                f"model into paddle 2's program format (one of its operations exists for "
                f'PIR only): export it as json (no int8), or export and quantize it on '
                f'the paddle 2.6 stack (`make setup STACK=paddle2`)'
            ) from None
    # deploy.yaml writes dynamic sizes as -1, as PaddleSeg's export does.
    info = deploy_info(
        config,
        [-1 if dim is None else dim for dim in shape],
        output_op,
        f'{MODEL_PREFIX}.{program_format}',
    )
    write_deploy_yaml(save_dir, info)
    return info
