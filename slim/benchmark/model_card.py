"""The model card: parameters, FLOPs, exported fp32 and int8 latency on the CPU."""
import contextlib
import io
import json
import os

from slim.benchmark.runs import data_opts, run_logged


def model_stats(config, input_size=64):
    """(parameters, FLOPs at 1x3xSxS) of a config's model."""
    import paddleseg_ext  # noqa: F401  (before paddle)
    import paddle
    from paddleseg_ext.config import build_model_without_weights
    from paddleseg_ext.config import load_config
    model, _ = build_model_without_weights(load_config(config, required=('model',)))
    params = sum(int(p.numel()) for p in model.parameters())
    with contextlib.redirect_stdout(io.StringIO()):  # paddle.flops prints a line per layer
        flops = paddle.flops(model, [1, 3, input_size, input_size], print_detail=False)
    return params, int(flops)


def latency_ms(inference_dir, input_size, runs=20):
    """Median CPU latency (ms, one thread) of an exported model on one image."""
    import paddleseg_ext  # noqa: F401  (before paddle)
    import numpy as np
    from paddleseg_ext.deploy.inference import InferenceModel, median_latency
    model = InferenceModel(inference_dir, cpu_threads=1, use_mkldnn=True)
    image = np.zeros((1, 3, input_size, input_size), dtype='float32')
    return 1000 * median_latency(model, image, runs=runs)


def model_card(setup, out_dir, teacher, result):
    """Exports the teacher and the distilled student, quantizes the student to int8
    (PaddleSlim), and measures CPU latency: {'teacher', 'student_fp32', 'student_int8'}."""
    deploy_dir = os.path.join(out_dir, 'deploy')
    student_run = os.path.join(out_dir, f"distilled_{setup.recipe}_seed{result['seed']}")
    val_opts = data_opts(setup.data, setup.data)
    card = {}
    for name, config, weights in (
            ('teacher', setup.teacher_config, teacher['weights']),
            ('student', setup.student_config,
             os.path.join(student_run, 'best_model', 'model.pdparams'))):
        print(f'Exporting the {name} for Paddle Inference', flush=True)
        run_logged(['tools/export.py', '--config', config, '--model_path', weights,
                    '--save_dir', os.path.join(deploy_dir, name), '--output_op', 'none',
                    *val_opts], os.path.join(deploy_dir, f'export_{name}.log'), 'export')
    card['teacher'] = {'miou': teacher['miou'], 'latency_ms': latency_ms(
        os.path.join(deploy_dir, 'teacher'), setup.input_size)}
    print('Quantizing the distilled student to int8 (PaddleSlim)', flush=True)
    comparison = os.path.join(deploy_dir, 'int8_comparison.json')
    try:
        run_logged(['tools/quantize.py', '--config', setup.student_config, '--inference_dir',
                    os.path.join(deploy_dir, 'student'), '--save_dir',
                    os.path.join(deploy_dir, 'student_int8'), '--json', comparison,
                    *val_opts], os.path.join(deploy_dir, 'quantize.log'), 'quantize')
    except RuntimeError as exc:  # e.g. PaddleSlim not installed: the card says so
        print(f'  int8 skipped: {exc}', flush=True)
        return card
    with open(comparison) as f:
        measured = json.load(f)
    card['student_fp32'] = {k: measured['float'][k] for k in ('miou', 'latency_ms')}
    card['student_int8'] = {k: measured['int8'][k] for k in ('miou', 'latency_ms')}
    return card
