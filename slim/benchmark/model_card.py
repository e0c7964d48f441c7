"""The model card: parameters, FLOPs, exported fp32 and int8 latency on the CPU."""

import json
import os
import statistics

from paddleseg_ext.deploy.measure import latencies_ms
from slim.benchmark.runs import data_opts, run_logged, say


def card_latencies_ms(inference_dirs, size, rounds=2, runs=5):
    """Median CPU latency (ms, one thread) of each exported model on one 1x3xSxS image,
    the models timed back to back round after round (paddleseg_ext.deploy.measure)."""

    return [statistics.median(times) for times in latencies_ms(inference_dirs, size, rounds, runs)]


def export_for_card(setup, out_dir, save_name, config, weights, *format_args):
    """tools/export.py of one model into out_dir/deploy/save_name (what the card times)."""
    deploy_dir = os.path.join(out_dir, 'deploy')
    say(f'Exporting the {save_name} for Paddle Inference')
    run_logged(
        [
            'tools/export.py',
            '--config',
            config,
            '--model_path',
            weights,
            '--save_dir',
            os.path.join(deploy_dir, save_name),
            '--output_op',
            'none',
            *format_args,
            *data_opts(setup.data, setup.data),
        ],
        os.path.join(deploy_dir, f'export_{save_name}.log'),
        'export',
    )


def model_card(setup, out_dir, teacher, result):
    """With the teacher exported already (export_for_card, 'teacher'): exports the
    distilled student, quantizes it to int8 (PaddleSlim; val mIoU of each through Paddle
    Inference), and times the three at setup.card_size: {'teacher', 'student_fp32',
    'student_int8'}, each {'miou', 'latency_ms', 'input_size'}, the students with
    'speedup_vs_teacher'; where the int8 step failed, 'int8_error' (its error line) in
    place of 'student_int8'."""
    deploy_dir = os.path.join(out_dir, 'deploy')
    val_opts = data_opts(setup.data, setup.data)
    student_weights = os.path.join(result['run_dirs']['distilled'], 'best_model', 'model.pdparams')
    export_for_card(setup, out_dir, 'student', setup.student_config, student_weights)
    print('Quantizing the distilled student to int8 (PaddleSlim)', flush=True)
    comparison = os.path.join(deploy_dir, 'int8_comparison.json')
    try:
        # PaddleSlim quantizes paddle 2's program format only: paddle 2 exported the
        # student so already; paddle 3 exports it apart (in its old IR, which some models
        # do not trace into: the card then goes on).
        float_dir = os.path.join(deploy_dir, 'student')
        if not os.path.isfile(os.path.join(float_dir, 'model.pdmodel')):
            float_dir = os.path.join(deploy_dir, 'student_pdmodel')
            export_for_card(
                setup,
                out_dir,
                'student_pdmodel',
                setup.student_config,
                student_weights,
                '--program_format',
                'pdmodel',
            )
        run_logged(
            [
                'tools/quantize.py',
                '--config',
                setup.student_config,
                '--inference_dir',
                float_dir,
                '--save_dir',
                os.path.join(deploy_dir, 'student_int8'),
                '--json',
                comparison,
                '--runs',
                '1',
                *val_opts,
            ],
            os.path.join(deploy_dir, 'quantize.log'),
            'quantize',
        )
        with open(comparison) as f:
            measured = json.load(f)
    except RuntimeError as exc:  # the failing step's own error line: the card quotes it
        print(f'  int8 skipped: {exc}', flush=True)
        measured, int8_error = None, str(exc)
    size = setup.card_size
    # Without an int8 model the fp32 student is still timed; its mIoU is then val.py's.
    models = {
        'teacher': ('teacher', teacher['score']),
        'student_fp32': ('student', measured['float']['miou'] if measured else result['distilled']),
    }
    if measured:
        models['student_int8'] = ('student_int8', measured['int8']['miou'])
    print(
        f'Timing {", ".join(models)} at {size}x{size} (CPU, one thread, back to back)', flush=True
    )
    times = card_latencies_ms([os.path.join(deploy_dir, models[name][0]) for name in models], size)
    card = {
        name: {'miou': miou, 'latency_ms': ms, 'input_size': size}
        for (name, (_, miou)), ms in zip(models.items(), times)
    }
    for name in ('student_fp32', 'student_int8'):
        if name in card:
            card[name]['speedup_vs_teacher'] = (
                card['teacher']['latency_ms'] / card[name]['latency_ms']
            )
    if not measured:
        card['int8_error'] = int8_error
    return card
