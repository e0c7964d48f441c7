"""Deployment: export to Paddle Inference, prediction on images, int8 quantization.

The submodules are imported on demand.

- export: `export_model` writes model.pdmodel / model.pdiparams / deploy.yaml (PaddleSeg's).
- inference: `InferenceModel` (a Paddle Inference predictor on an exported folder),
  `evaluate_inference` (val mIoU through it), `median_latency`.
- predict: `predict` (images, a folder or a list file → pseudo colour masks and overlays).
- quantize: `quantize` (PaddleSlim post-training int8 quantization of an exported model).
"""
