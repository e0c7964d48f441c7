"""What a model costs to deploy: parameters, FLOPs and CPU latency at one input size.

Latency is relative on a shared machine: the models are exported (their weights do not
change the time) and timed back to back through Paddle Inference on one thread, round
after round, so each round gives every model the same load; each model's figure is the
median over rounds and its ratio to the first model the median of the per-round ratios.
"""

import contextlib
import io
import os
import statistics
import tempfile
from dataclasses import dataclass, field
from typing import List

import numpy as np
import paddle

from paddleseg_ext.components import build_model_without_weights
from paddleseg_ext.config import load_config
from paddleseg_ext.deploy.export import make_save_dir, save_for_inference
from paddleseg_ext.deploy.inference import InferenceModel, median_latency


@dataclass
class ModelCost:
    config: str
    params: int
    flops: int
    latency_ms: float = float('nan')
    latency_rounds_ms: List[float] = field(default_factory=list)
    latency_ratio: float = float('nan')  # this model's latency / the first model's


def params_and_flops(config_path, input_size):
    """(parameters, FLOPs of one 1xCxSxS forward) of a config's model; C its input channels
    (classifiers say theirs, paddleseg's models take 3)."""
    model, _ = build_model_without_weights(load_config(config_path, required=('model',)))
    model.eval()
    params = sum(int(p.numel()) for p in model.parameters())
    channels = getattr(model, 'in_channels', 3)
    with contextlib.redirect_stdout(io.StringIO()):  # paddle.flops prints a line per layer
        flops = paddle.flops(model, [1, channels, input_size, input_size], print_detail=False)
    return params, int(flops)


def export_untrained(config_path, save_dir):
    """The config's model with its initial weights, exported for Paddle Inference (logits)."""
    config = load_config(config_path, required=('model', 'val_dataset'))
    model, _ = build_model_without_weights(config)
    make_save_dir(save_dir)
    save_for_inference(model, config, save_dir, [1, 3, None, None], 'none')
    return save_dir


def latencies_ms(inference_dirs, input_size, rounds=5, runs=10, cpu_threads=1):
    """Per model, the median latency (ms) of each round; models timed back to back."""
    models = [InferenceModel(d, cpu_threads=cpu_threads, use_mkldnn=True) for d in inference_dirs]
    image = np.random.RandomState(0).rand(1, 3, input_size, input_size).astype('float32')
    per_round = [[] for _ in models]
    for _ in range(rounds):
        for times, model in zip(per_round, models):
            times.append(1000 * median_latency(model, image, runs=runs))
    return per_round


def measure(config_paths, input_size=512, rounds=5, runs=10, cpu_threads=1, work_dir=None):
    """ModelCost of each config; latency ratios are to the first config's model."""
    costs = [ModelCost(path, *params_and_flops(path, input_size)) for path in config_paths]
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        dirs = [
            export_untrained(path, os.path.join(tmp, str(i))) for i, path in enumerate(config_paths)
        ]
        per_round = latencies_ms(dirs, input_size, rounds, runs, cpu_threads)
    for cost, times in zip(costs, per_round):
        cost.latency_rounds_ms = times
        cost.latency_ms = statistics.median(times)
        cost.latency_ratio = statistics.median(t / r for t, r in zip(times, per_round[0]))
    return costs
