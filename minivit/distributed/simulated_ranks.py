"""Ranks as threads of one process, passing messages as MPI's ranks do: for a notebook.

    def program(comm):                      # runs once per rank, as under mpiexec
        if comm.rank == 0:
            comm.send(numpy.ones(3), dest=1)
        elif comm.rank == 1:
            return comm.recv(source=0)

    results = run_ranks(2, program)         # [None, array([1., 1., 1.])]

``mpiexec`` starts N processes; a notebook's kernel is one process, and cannot be started
N times. Here each rank runs ``program(comm)`` in a thread of its own, and the ranks share
nothing but the messages they send, with MPI's semantics where they matter:
  * a message is copied when it is sent: the receiver never sees the sender's memory, and
    the sender may change its array as soon as ``send`` returns;
  * messages from one rank to another arrive in the order they were sent;
  * ``recv`` waits until a message arrives. Sends never wait (MPI's buffered mode; a large
    standard-mode MPI send may wait for its receive, which is why real code pairs them
    in ``sendrecv``).
A program in which every rank waits to receive would wait forever under MPI; here the wait
ends after ``timeout`` seconds with an error that names the rank and what it waited for.
Each rank counts what it sent (``comm.bytes_sent``, ``comm.messages_sent``): the quantity a
cost model of communication is about.
"""

from __future__ import annotations

import queue
import threading

import numpy as np  # host side: messages are host arrays


class Deadlock(RuntimeError):
    """A rank waited longer than the timeout for a message that no rank was going to send."""


class SimulatedRank:
    """What ``program(comm)`` gets: ``rank``, ``size``, ``send``, ``recv``, ``sendrecv``, ``barrier``."""

    def __init__(self, rank: int, size: int, mailboxes: dict, barrier: threading.Barrier, timeout: float):
        self.rank, self.size = rank, size
        self._mailboxes, self._barrier, self._timeout = mailboxes, barrier, timeout
        self.bytes_sent = 0
        self.messages_sent = 0

    def send(self, array, dest: int) -> None:
        """Send a copy of ``array`` to rank ``dest``; returns at once."""
        self._check_rank(dest, "dest")
        message = np.array(array, copy=True)
        self.bytes_sent += message.nbytes
        self.messages_sent += 1
        self._mailboxes[self.rank, dest].put(message)

    def recv(self, source: int) -> np.ndarray:
        """The next message from rank ``source`` (waits for it)."""
        self._check_rank(source, "source")
        try:
            return self._mailboxes[source, self.rank].get(timeout=self._timeout)
        except queue.Empty:
            raise Deadlock(f"rank {self.rank} waited {self._timeout:g} s for a message from rank {source} that never "
                           "came: every rank may be waiting to receive before it sends (under MPI this would hang "
                           "forever). Send first, or use sendrecv.") from None

    def sendrecv(self, array, dest: int, source: int) -> np.ndarray:
        """Send ``array`` to ``dest`` and receive the next message from ``source`` (MPI's Sendrecv)."""
        self.send(array, dest)
        return self.recv(source)

    def barrier(self) -> None:
        """Wait until every rank has reached its barrier."""
        self._barrier.wait(timeout=self._timeout)

    def _check_rank(self, other: int, name: str) -> None:
        if not (isinstance(other, (int, np.integer)) and 0 <= other < self.size) or other == self.rank:
            raise ValueError(f"{name}={other!r}: rank {self.rank} of {self.size} talks to the ranks 0 .. "
                             f"{self.size - 1} other than itself")


def run_ranks(size: int, program, timeout: float = 10.0) -> list:
    """Run ``program(comm)`` on ``size`` simulated ranks at once; returns each rank's result, in rank order.

    An exception in any rank is raised here (the lowest rank's), after every rank has ended.
    (To see what a rank sent, let the program return ``comm.bytes_sent`` with its result.)
    """
    if size < 1:
        raise ValueError(f"size must be at least 1; got {size}")
    mailboxes = {(source, dest): queue.Queue() for source in range(size) for dest in range(size) if source != dest}
    barrier = threading.Barrier(size)
    ranks = [SimulatedRank(rank, size, mailboxes, barrier, timeout) for rank in range(size)]
    results, errors = [None] * size, [None] * size

    def run(rank: int) -> None:
        try:
            results[rank] = program(ranks[rank])
        except BaseException as error:  # handed to the caller below
            errors[rank] = error

    threads = [threading.Thread(target=run, args=(rank,), name=f"rank {rank}") for rank in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for error in errors:
        if error is not None:
            raise error
    return results
