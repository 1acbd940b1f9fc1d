"""A training run's randomness: functions of (seed, epoch, image) and (seed, step), not of the rank.

    per image   crop, flip, RandAugment      SampleStream(key(seed, 2, epoch), the images' indices)
                dropout masks                SampleStream(key(seed, 1, epoch), the images' indices)
    per batch   whether and how to mix       numpy.random.default_rng([seed, 3, step])
    per epoch   the order of the images      Batches: a permutation of (seed, epoch)

An image appears once per epoch, so (epoch, image) names one sample of the run. What a sample
gets is therefore the same whichever rank holds it, however many ranks there are, and whatever
was drawn before it: 1, 2 or 4 ranks with the same global batch train the same model (up to the
order of the gradient sums), and a run stopped on N ranks continues on M exactly. There is no
generator state to save in a checkpoint; the step is enough.

Mixup and cutmix pair image i of the global batch with image B-1-i. In one process the partner
is in the batch; a rank's shard (positions [rB/N, (r+1)B/N)) pairs with the shard of rank N-1-r,
reversed, which this rank augments itself: the partner's draws are a function of the partner
image, so the copy is pixel for pixel what its own rank makes. That costs the rank a second
augmentation of its shard on the steps that mix, and no communication.

Dropout draws per sample too: row r of every mask is drawn from sample r's key (the k-th mask of
the step from its k-th draw), so the masks of a rank's rows are those one process draws for
them. The counter-based draw costs less on the CPU than NumPy's generator
(benchmarks/sample_random_cost.py).
"""

from __future__ import annotations

import numpy as np  # host side: the per-step mixing generator

from minivit.augment import AugmentConfig, augment_batch
from minivit.sample_random import SampleStream, install_dropout_stream, stream_key
from minivit.training.data import Batches

DROPOUT, AUGMENT, MIXING, PROBE = 1, 2, 3, 4  # what a stream is for: a part of its key


class RunRandomness:
    """The random draws of a training run on this rank; ``batches`` says which images a step holds.

    ``model``'s dropouts draw from this run's per-sample stream from now on; ``augment_step``
    points it at each step's images.
    """

    def __init__(self, seed: int, batches: Batches, model):
        self.seed = seed
        self.batches = batches
        self.dropout = SampleStream()
        self.augment_stream = SampleStream()
        self.partner_stream = SampleStream()
        self.probe_stream = SampleStream()
        install_dropout_stream(model, self.dropout)

    def mixing_rng(self, step: int) -> np.random.Generator:
        """The per-batch draws of ``step`` (whether to mix, lambda, the box): the same on every rank."""
        return np.random.default_rng([self.seed, MIXING, step])

    def augment_step(self, step: int, images, labels, config: AugmentConfig, mean, std, num_classes: int,
                     mix: bool = True):
        """(pixel_values, targets) of this rank's share of the batch of ``step`` (``images``, ``labels``:
        ``batches.get(step)``), augmented and mixed as one process does it (``mix=False``: not mixed);
        the dropout masks of the step's forward are then drawn for the same images."""
        batches = self.batches
        epoch = step // batches.steps_per_epoch
        samples = batches.samples(step)
        self.dropout.restart(stream_key(self.seed, DROPOUT, epoch), samples)
        augment_key = stream_key(self.seed, AUGMENT, epoch)

        def partners():  # this shard's partners: the shard of rank N-1-r, reversed
            partner_samples = batches.samples(step, rank=batches.num_ranks - 1 - batches.rank)[::-1]
            return (batches.images[partner_samples], batches.labels[partner_samples],
                    self.partner_stream.restart(augment_key, partner_samples))

        return augment_batch(images, labels, config, mean, std, num_classes,
                             self.augment_stream.restart(augment_key, samples), self.mixing_rng(step),
                             partners if batches.num_ranks > 1 else None, mix=mix)

    def probe_augment(self, step: int, images, labels, config: AugmentConfig, mean, std, num_classes: int,
                      draw: int):
        """The batch of ``step`` augmented (and mixed) with ``config`` from draws of its own (``draw``: which),
        for timing only (the budget recipe's ``Costs``): the run's streams and masks are untouched."""
        samples = self.batches.samples(step)
        return augment_batch(images, labels, config, mean, std, num_classes,
                             self.probe_stream.restart(stream_key(self.seed, PROBE, draw), samples),
                             np.random.default_rng([self.seed, PROBE, draw]))
