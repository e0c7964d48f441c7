"""Benchmarks of distillation through the real CLIs: teacher, student alone, distilled
student (compare.py), their model card (model_card.py) and report (report.py)."""
