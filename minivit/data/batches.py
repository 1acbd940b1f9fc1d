"""The training images on the backend, drawn in batches in a seeded order per epoch."""

from __future__ import annotations

import numpy as np  # host side: the order of the images

from minivit import backend
from minivit.data.dataset import DataError


class Batches:
    """The training images on the backend, drawn in a seeded order per epoch.

    Only the batch's images are gathered each step; the data set is copied to the
    device once.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
        if len(labels) < batch_size:
            raise DataError(f"Only {len(labels)} training images for a batch size of {batch_size}: "
                            "lower --batch-size or use more data.")
        self.images = backend.asarray(images)
        self.labels = backend.asarray(labels)
        self.batch_size = batch_size
        self.seed = seed
        self.steps_per_epoch = len(labels) // batch_size  # the last, incomplete batch is dropped
        self._order_epoch, self._order = None, None

    def get(self, step: int):
        epoch, index = divmod(step, self.steps_per_epoch)
        if self._order_epoch != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.labels))
            self._order, self._order_epoch = backend.asarray(order), epoch
        chosen = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        return self.images[chosen], self.labels[chosen]
