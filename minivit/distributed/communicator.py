"""What the ranks of a data-parallel run say to one another: the ``Communicator``.

A data-parallel run is N copies of one program (ranks 0 .. N-1). Each holds the whole
model and computes the gradient of its 1/N share of every batch; one all-reduce then
gives every rank the mean of the N gradients, which is the gradient of the whole batch
(the loss is a mean over the batch, and a mean of equal shares' means is the mean). The
ranks talk in two kinds of messages:

    arrays    on the backend, in place: the flat gradient buffer (every step), the
              parameters and optimizer state (once, at the start), a few sums (the
              steps' losses, the validation counts)
    control   small host objects, pickled: the rendezvous, whether every rank set up
              well, a resumed run's metadata

``SingleProcess`` is the communicator of an ordinary run: one rank, every message
returned as it is, so the trainer has one code path. ``MPICommunicator``
(minivit/distributed/mpi.py) carries both kinds between processes; ``NCCLCommunicator``
(minivit/distributed/nccl.py) carries the arrays between GPUs and leaves control to MPI.
"""

from __future__ import annotations

import sys


class PeerFailed(RuntimeError):
    """Another rank of the run failed: this one stops with it (the message is that rank's)."""


class Communicator:
    """The ranks of one run. ``rank`` in 0 .. ``size`` - 1; rank 0 (the root) writes the run's files.

    Array messages take contiguous backend arrays and work in place. Every method is a
    collective: every rank must call it, in the same order, or the ranks wait forever.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the rank among those on this machine (which GPU it takes)
    local_size: int = 1
    threads: int | None = None  # the CPU threads this rank was given (None: left as they were)
    description: str = "one process"

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    # --- arrays ---------------------------------------------------------------------------------
    def allreduce_sum(self, array) -> None:
        """Every rank's ``array`` becomes the elementwise sum of all ranks' arrays."""
        raise NotImplementedError

    def allreduce_mean(self, array) -> None:
        """Every rank's ``array`` becomes the elementwise mean of all ranks' arrays (one all-reduce)."""
        self.allreduce_sum(array)
        if self.size > 1:
            array /= self.size

    def broadcast(self, array, root: int = 0) -> None:
        """Every rank's ``array`` becomes rank ``root``'s."""
        raise NotImplementedError

    # --- control --------------------------------------------------------------------------------
    def broadcast_object(self, value, root: int = 0):
        """Rank ``root``'s ``value`` (a small, picklable host object), on every rank."""
        raise NotImplementedError

    def allgather_object(self, value) -> list:
        """[rank 0's value, rank 1's, ...] on every rank."""
        raise NotImplementedError

    def gather_object(self, value, root: int = 0) -> list | None:
        """[rank 0's value, rank 1's, ...] on rank ``root``; None on the others."""
        values = self.allgather_object(value)
        return values if self.rank == root else None

    def local_allgather_object(self, value) -> list:
        """Like ``allgather_object``, among the ranks on this machine only."""
        raise NotImplementedError

    def fail_together(self, error: BaseException | None) -> None:
        """If any rank failed, raise on every rank (a collective: each rank calls it, failed or not).

        A rank that failed raises its own error; the others raise ``PeerFailed`` with the
        first failed rank's message. Rank 0 alone reports it (the others' errors carry
        ``printed_elsewhere``, which the command lines honour), so a mistake in the
        options is said once, not once per rank, and no rank is left waiting for one
        that stopped.
        """
        from minivit.cli import describe

        reports = self.allgather_object(None if error is None else describe(error))
        failed = [(rank, text) for rank, text in enumerate(reports) if text is not None]
        if not failed:
            return
        if error is None:
            rank, text = failed[0]
            error = PeerFailed(f"rank {rank} of {self.size} failed: {text}")
        raise mark_raised_together(error, self)

    def abort(self, exit_code: int = 1) -> None:
        """End every rank of the run now (after an error that only this rank met)."""
        sys.exit(exit_code)


def mark_raised_together(error: BaseException, communicator: Communicator) -> BaseException:
    """Mark an error that every rank raises at the same point: rank 0 reports it, the others stay quiet."""
    error.on_every_rank = True
    error.printed_elsewhere = not communicator.is_root
    return error


class SingleProcess(Communicator):
    """The communicator of a run in one process: every message is already where it is going."""

    def allreduce_sum(self, array) -> None:
        pass

    def allreduce_mean(self, array) -> None:
        pass

    def broadcast(self, array, root: int = 0) -> None:
        pass

    def broadcast_object(self, value, root: int = 0):
        return value

    def allgather_object(self, value) -> list:
        return [value]

    def local_allgather_object(self, value) -> list:
        return [value]

    def fail_together(self, error: BaseException | None) -> None:
        if error is not None:
            raise error
