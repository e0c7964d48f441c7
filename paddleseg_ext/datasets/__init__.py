from paddleseg_ext.datasets.classification import ClassificationDataset
from paddleseg_ext.datasets.dataset import Dataset
from paddleseg_ext.datasets.optic_disc import OpticDiscSeg

__all__ = ['ClassificationDataset', 'Dataset', 'OpticDiscSeg']
