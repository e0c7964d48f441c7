"""Deployment: export to Paddle Inference, prediction on images, run plots, int8 quantization.

The submodules are imported on demand: `plot` must stay importable without paddle
(tools/plot_run.py loads it by path), the others import paddle.

- export: `export_model` writes model.pdmodel / model.pdiparams / deploy.yaml (PaddleSeg's).
- inference: `InferenceModel` (a Paddle Inference predictor on an exported folder),
  `evaluate_inference` (val mIoU through it), `median_latency`.
- predict: `predict` (images, a folder or a list file → pseudo colour masks and overlays).
- plot: `plot_runs` (loss terms and val mIoU from save_dir/train_log.jsonl files).
- quantize: `quantize` (PaddleSlim post-training int8 quantization of an exported model).
"""
