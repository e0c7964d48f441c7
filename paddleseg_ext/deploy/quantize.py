"""Post-training int8 quantization of an exported model with PaddleSlim, and a comparison of
the float and int8 models: val mIoU through Paddle Inference and CPU latency per image.

PaddleSlim 2.6 (and paddle's static quantization under it) reads and writes paddle 2's
program format only: the float model must be a model.pdmodel (on paddle 3, export it with
`tools/export.py --program_format pdmodel`), and the int8 model is a model.pdmodel, which
Paddle Inference runs on both paddle versions.

PaddleSlim is an extra (requirements-slim.txt): `pip install -r requirements-slim.txt`.
Calibration images come from the config's train set, preprocessed with the val transforms
(the ones deploy.yaml records), so calibration sees what inference will see.
"""

import contextlib
import copy
import os

import numpy as np
import paddle
from paddleseg.cvlibs import SegBuilder
from paddleseg.utils import logger

from paddleseg_ext.compat import legacy_static_ir
from paddleseg_ext.components import build
from paddleseg_ext.config import load_config
from paddleseg_ext.deploy.export import (
    MODEL_PREFIX,
    PARAMS_FILENAME,
    make_save_dir,
    write_deploy_yaml,
)
from paddleseg_ext.deploy.inference import (
    InferenceModel,
    evaluate_inference,
    median_latency,
    model_files,
    read_deploy_yaml,
)
from paddleseg_ext.errors import UserInputError

ALGOS = ('hist', 'KL', 'avg', 'mse', 'abs_max')
INT8_MODEL_FILENAME = MODEL_PREFIX + '.pdmodel'  # what PaddleSlim writes, on either paddle


def import_paddleslim():
    try:
        from paddleslim.quant import quant_post_static
    except ImportError as exc:
        raise UserInputError(
            f'PaddleSlim is not installed or incomplete ({exc}): run '
            f'`pip install --no-deps -r requirements-slim.txt`'
        ) from None
    return quant_post_static


def calibration_dataset(config):
    """The config's train set with the val transforms (no random augmentation)."""
    dic = config.dic
    if 'train_dataset' not in dic:
        raise UserInputError(
            'the config has no train_dataset: calibration images come from '
            'it; add train_dataset (or use the training config)'
        )
    calib = copy.deepcopy(config)
    calib.dic['train_dataset']['transforms'] = copy.deepcopy(
        dic['val_dataset'].get('transforms', [])
    )
    return build(SegBuilder(calib), 'train_dataset')


class _CalibrationImages(paddle.io.Dataset):
    """The first `count` images of a dataset, CHW float32 (labels dropped)."""

    def __init__(self, dataset, count):
        super().__init__()
        self.dataset = dataset
        self.count = count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return self.dataset[index]['img'].astype('float32')


def calibration_loader(dataset, feed_name, batch_size, batch_nums):
    """(paddle.io.DataLoader feeding `feed_name`, number of batches), in static mode.

    paddle 2.6's PostTrainingQuantization accepts only a paddle.io.DataLoader.
    """
    count = min(len(dataset), batch_size * batch_nums)
    if count < batch_size:
        raise UserInputError(
            f'the train set has {len(dataset)} images, fewer than '
            f'--batch_size {batch_size}: lower --batch_size'
        )
    shapes = {tuple(dataset[i]['img'].shape) for i in range(count)} if batch_size > 1 else ()
    if len(shapes) > 1:
        raise UserInputError(
            'calibration images differ in size after the val transforms: use --batch_size 1'
        )
    channels = dataset[0]['img'].shape[0]
    feed = paddle.static.data(name=feed_name, shape=[None, channels, None, None], dtype='float32')
    loader = paddle.io.DataLoader(
        _CalibrationImages(dataset, count),
        feed_list=[feed],
        places=paddle.CPUPlace(),
        return_list=False,
        batch_size=batch_size,
        shuffle=False,
        drop_last=True,
    )
    return loader, count // batch_size


@contextlib.contextmanager
def static_mode():
    """Static graph mode with fresh programs (the calibration feed variable lives there)."""
    paddle.enable_static()
    try:
        with (
            legacy_static_ir(),
            paddle.static.program_guard(paddle.static.Program(), paddle.static.Program()),
        ):
            yield
    finally:
        paddle.disable_static()


def quantize_model(
    config, inference_dir, save_dir, batch_size=1, batch_nums=10, algo='hist', onnx_format=True
):
    """Runs PaddleSlim's quant_post_static on inference_dir; writes the int8 model (and a copy
    of deploy.yaml) into save_dir. Returns the number of calibration batches."""
    quant_post_static = import_paddleslim()
    if algo not in ALGOS:
        raise UserInputError(f'--algo {algo!r} is invalid: use one of {", ".join(ALGOS)}')
    model_file, params_file = model_files(inference_dir)
    if not model_file.endswith('.pdmodel'):
        raise UserInputError(
            f"{model_file}: PaddleSlim's int8 reads paddle 2's program format "
            f'only: export the float model with tools/export.py '
            f'--program_format pdmodel'
        )
    if os.path.abspath(inference_dir) == os.path.abspath(save_dir):
        raise UserInputError(
            '--save_dir must differ from --inference_dir: the float model would be overwritten'
        )
    make_save_dir(save_dir)
    feed_name = InferenceModel(inference_dir).predictor.get_input_names()[0]
    dataset = calibration_dataset(config)
    with static_mode():
        loader, num_batches = calibration_loader(dataset, feed_name, batch_size, batch_nums)
        logger.info(f'Calibrating on {num_batches} batch(es) of {batch_size} train image(s)')
        executor = paddle.static.Executor(paddle.CPUPlace())
        quant_post_static(
            executor=executor,
            model_dir=inference_dir,
            quantize_model_path=save_dir,
            data_loader=loader,
            model_filename=os.path.basename(model_file),
            params_filename=os.path.basename(params_file),
            save_model_filename=INT8_MODEL_FILENAME,
            save_params_filename=PARAMS_FILENAME,
            batch_size=batch_size,
            batch_nums=num_batches,
            algo=algo,
            onnx_format=onnx_format,
        )
    deploy = read_deploy_yaml(inference_dir)
    if deploy:
        write_deploy_yaml(save_dir, {'Deploy': {**deploy, 'model': INT8_MODEL_FILENAME}})
    return num_batches


def compare(config, float_dir, int8_dir, runs=20, cpu_threads=1):
    """{'float': {...}, 'int8': {...}} with val mIoU/acc and the median CPU latency (ms) of
    one val-sized image, each model through Paddle Inference on CPU with oneDNN (MKLDNN;
    the int8 model with its int8 kernels: without them the quantize/dequantize ops run in
    float and the int8 model is slower than the float one)."""
    val_dataset = build(SegBuilder(config), 'val_dataset')
    image = val_dataset[0]['img'][np.newaxis]
    results = {}
    for name, folder in (('float', float_dir), ('int8', int8_dir)):
        model = InferenceModel(folder, cpu_threads=cpu_threads, use_mkldnn=True)
        metrics = evaluate_inference(model, val_dataset, print_detail=False)
        results[name] = {
            'miou': metrics['miou'],
            'acc': metrics['acc'],
            'latency_ms': 1000 * median_latency(model, image, runs=runs),
            'input_shape': list(image.shape),
            'params_mb': os.path.getsize(model.params_file) / 2**20,
        }
    return results


def quantize(
    config_path,
    inference_dir,
    save_dir,
    batch_size=1,
    batch_nums=10,
    algo='hist',
    runs=20,
    cpu_threads=1,
    opts=None,
):
    """quantize_model then compare; returns compare's dict."""
    config = load_config(config_path, opts=opts, required=('model', 'val_dataset'))
    if batch_size <= 0 or batch_nums <= 0 or runs <= 0:
        raise UserInputError('--batch_size, --batch_nums and --runs must be positive')
    quantize_model(config, inference_dir, save_dir, batch_size, batch_nums, algo)
    return compare(config, inference_dir, save_dir, runs=runs, cpu_threads=cpu_threads)
