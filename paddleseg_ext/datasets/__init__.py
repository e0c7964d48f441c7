from paddleseg_ext.datasets.dataset import Dataset
from paddleseg_ext.datasets.optic_disc import OpticDiscSeg

__all__ = ['Dataset', 'OpticDiscSeg']
