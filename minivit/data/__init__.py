"""Data sets for training and evaluation (host side: files, decoding, caching).

``load_split(data_dir, split)`` returns a ``Dataset`` from either layout:
  * CIFAR-10's official python format (``cifar-10-batches-py``, or the folder holding it);
  * an image folder, ``root/<split>/<class>/*.png|jpg`` (torchvision's ImageFolder layout).
"""

from minivit.data.cifar10 import CIFAR10_CLASSES, download_cifar10, load_cifar10
from minivit.data.dataset import DataError, Dataset
from minivit.data.imagefolder import load_image_folder
from minivit.data.layout import SPLITS, find_data, load_split
from minivit.data.split import stratified_split

__all__ = [
    "CIFAR10_CLASSES",
    "DataError",
    "Dataset",
    "download_cifar10",
    "find_data",
    "load_cifar10",
    "load_image_folder",
    "load_split",
    "SPLITS",
    "stratified_split",
]
