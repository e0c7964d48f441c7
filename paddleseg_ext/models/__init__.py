"""Classification models from paddle.vision, registered so YAML `type:` finds them."""

from paddleseg_ext.models.classifiers import MobileNetV1, ResNet18, ResNet50

__all__ = ['MobileNetV1', 'ResNet18', 'ResNet50']
