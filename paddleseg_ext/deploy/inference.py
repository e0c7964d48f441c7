"""Running an exported model (model.json or model.pdmodel / model.pdiparams / deploy.yaml) with Paddle
Inference: per-image class ids at the original size, val mIoU, and CPU latency.

predict.py's --inference_dir and tools/quantize.py (float vs int8) both go through
`InferenceModel`, so a number printed by one is what the other predicts.
"""

import os
import re
import statistics
import time

import numpy as np
import paddle
from paddleseg.core.infer import reverse_transform

from paddleseg_ext.compat import PADDLE_3, repair_onednn_config, saved_program
from paddleseg_ext.config_yaml import read_yaml
from paddleseg_ext.deploy.export import DEPLOY_FILENAME, MODEL_PREFIX, OUTPUT_OPS, PARAMS_FILENAME
from paddleseg_ext.errors import UserInputError
from paddleseg_ext.evaluation.evaluate import evaluate_predictions


def read_deploy_yaml(inference_dir):
    """The `Deploy` mapping of inference_dir/deploy.yaml, or {} where there is none."""
    path = os.path.join(inference_dir, DEPLOY_FILENAME)
    if not os.path.isfile(path):
        return {}
    info = read_yaml(path) or {}
    deploy = info.get('Deploy') if isinstance(info, dict) else None
    if not isinstance(deploy, dict):
        raise UserInputError(
            f'{path}: no `Deploy:` mapping: re-export the model with tools/export.py'
        )
    return deploy


def model_files(inference_dir):
    """(model file, params file) of an exported folder, checked to exist."""
    if not os.path.isdir(inference_dir):
        raise UserInputError(
            f"inference dir '{inference_dir}' does not exist: pass the "
            f'--save_dir of tools/export.py'
        )
    deploy = read_deploy_yaml(inference_dir)
    # Without deploy.yaml: model.json or model.pdmodel, whichever paddle version wrote it.
    found = saved_program(os.path.join(inference_dir, MODEL_PREFIX))
    default_model = os.path.basename(found) if found else 'model.pdmodel'
    files = []
    for key, default in (('model', default_model), ('params', PARAMS_FILENAME)):
        path = os.path.join(inference_dir, deploy.get(key, default))
        if not os.path.isfile(path):
            raise UserInputError(
                f"inference dir '{inference_dir}' has no {os.path.basename(path)}"
                f': pass the --save_dir of tools/export.py'
            )
        files.append(path)
    if files[0].endswith('.json') and not PADDLE_3:
        raise UserInputError(
            f'{files[0]} is a paddle 3 program: paddle {paddle.__version__} '
            f'reads only .pdmodel; re-export with this paddle or use paddle 3'
        )
    return tuple(files)


def _is_quantize_op(op_type):
    return op_type in ('quantize_linear', 'dequantize_linear') or (
        op_type.startswith('fake_') and 'quantize' in op_type
    )


def is_quantized(model_file):
    """Whether the program runs quantization ops (an int8 model from tools/quantize.py)."""
    if model_file.endswith('.json'):
        # paddle 3's program (PIR, JSON): ops are named "1.<type>" (1: paddle's op dialect).
        with open(model_file) as f:
            op_types = re.findall(r'"1\.(\w+)"', f.read())
        return any(_is_quantize_op(op_type) for op_type in op_types)
    from paddle.base import core

    try:
        with open(model_file, 'rb') as f:
            desc = core.ProgramDesc(f.read())
    except Exception:  # not a program: creating the predictor reports it
        return False
    for block_index in range(desc.num_blocks()):
        block = desc.block(block_index)
        for op_index in range(block.op_size()):
            if _is_quantize_op(block.op(op_index).type()):
                return True
    return False


# oneDNN keeps compiled kernels per input shape; inputs of ever new sizes (random-scale
# transforms, images of any size) would grow that cache without end.
ONEDNN_SHAPES_KEPT = 16
# The operators oneDNN runs in int8: where the time goes. Left to its default list, it also
# quantizes pool2d, and adaptive pooling to more bins than the input has (MobileSeg's
# context module on a small image) then has no int8 kernel at all.
INT8_OPS = {'conv2d', 'depthwise_conv2d', 'fc', 'matmul', 'matmul_v2'}
_GPU_PRECISIONS = {'fp32': 'Float32', 'fp16': 'Half', 'bf16': 'Bfloat16'}


def inference_config(
    model_file, params_file, cpu_threads=None, use_mkldnn=None, int8=False, precision='fp32'
):
    """A Paddle Inference Config on paddle's current device, IR optimisations on.

    GPU: `precision` as the predictor's mixed precision. CPU: `cpu_threads` math threads;
    use_mkldnn None keeps Paddle Inference's default; int8 runs oneDNN's int8 kernels on a
    quantized model (what makes it faster)."""
    config = paddle.inference.Config(model_file, params_file)
    device = paddle.get_device()
    if paddle.is_compiled_with_cuda() and device.startswith('gpu'):
        device_id = int(device.split(':')[-1]) if ':' in device else 0
        config.enable_use_gpu(
            256, device_id, getattr(paddle.inference.PrecisionType, _GPU_PRECISIONS[precision])
        )
    else:
        config.disable_gpu()
        if cpu_threads:
            config.set_cpu_math_library_num_threads(cpu_threads)
        if use_mkldnn is False:
            config.disable_mkldnn()
        elif use_mkldnn or int8:
            config.enable_mkldnn()
            config.set_mkldnn_cache_capacity(ONEDNN_SHAPES_KEPT)
            if int8:
                config.enable_mkldnn_int8(INT8_OPS)
        if use_mkldnn is not False:  # paddle 3 uses oneDNN on CPU by default
            repair_onednn_config(config)
    config.disable_glog_info()
    config.switch_ir_optim(True)
    return config


class InferenceModel:
    """A Paddle Inference predictor on an exported folder.

    `output_op` (from deploy.yaml; 'argmax' where there is none, PaddleSeg's default) says
    what the model returns: class ids (N, H, W) for argmax, scores (N, C, H, W) otherwise.
    On CPU, use_mkldnn None keeps Paddle Inference's default; int8 None runs a quantized
    model (tools/quantize.py) with oneDNN's int8 kernels, which is what makes it faster.
    """

    def __init__(self, inference_dir, cpu_threads=None, use_mkldnn=None, int8=None):
        self.inference_dir = inference_dir
        self.model_file, self.params_file = model_files(inference_dir)
        if int8 is None:
            int8 = is_quantized(self.model_file)
        self.int8 = int8
        self.output_op = read_deploy_yaml(inference_dir).get('output_op', 'argmax')
        if self.output_op not in OUTPUT_OPS:
            raise UserInputError(
                f'{os.path.join(inference_dir, DEPLOY_FILENAME)}: output_op '
                f'{self.output_op!r} is not one of {", ".join(OUTPUT_OPS)}'
            )
        config = inference_config(
            self.model_file,
            self.params_file,
            cpu_threads=cpu_threads,
            use_mkldnn=use_mkldnn,
            int8=int8,
        )
        try:
            self.predictor = paddle.inference.create_predictor(config)
        except Exception as exc:
            message = ' '.join(str(exc).split())[:300]
            raise UserInputError(
                f"inference dir '{inference_dir}' cannot be loaded by Paddle "
                f'Inference ({message}): re-export it with tools/export.py '
                f'with this paddle version'
            ) from None
        self.input_handle = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output_handle = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    def run(self, image):
        """The main output for a float32 NCHW numpy batch."""
        image = np.ascontiguousarray(image, dtype=np.float32)
        self.input_handle.reshape(list(image.shape))
        self.input_handle.copy_from_cpu(image)
        self.predictor.run()
        return self.output_handle.copy_to_cpu()

    def predict_class(self, image):
        """A classifier's class id for one preprocessed image (1CHW)."""
        output = self.run(image)
        return int(output[0]) if self.output_op == 'argmax' else int(np.argmax(output[0]))

    def predict_ids(self, image, trans_info):
        """Class ids (HxW int numpy) at the original size for one preprocessed image (1CHW)."""
        output = paddle.to_tensor(self.run(image))
        if self.output_op == 'argmax':
            ids = reverse_transform(output.unsqueeze(1), trans_info, mode='nearest')
            return ids.numpy()[0, 0].astype(np.int64)
        scores = reverse_transform(output.astype('float32'), trans_info, mode='bilinear')
        return paddle.argmax(scores, axis=1).numpy()[0]


def evaluate_inference(model, dataset, print_detail=True):
    """mIoU etc. (evaluation.evaluate's keys) of an InferenceModel on a PaddleSeg val dataset."""
    return evaluate_predictions(
        lambda image, trans_info: model.predict_ids(image.numpy(), trans_info),
        dataset,
        print_detail=print_detail,
    )


def median_latency(model, image, runs=20, warmup=3):
    """Median seconds of `model.run(image)` over `runs` runs after `warmup` ones."""
    for _ in range(warmup):
        model.run(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.run(image)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
