"""Where the cells of a sweep run: in this process (the default) or as Ray tasks.

Level: ``runs`` (imports ``errors`` only; Ray is imported inside :class:`RayExecutor`, never at
module import, so the package works without it).

An executor maps one picklable, module-level function over a list of argument tuples and yields
``(index, outcome)`` as each call finishes, where ``outcome`` is the call's return value or the
:class:`Exception` it raised. The sweep (:mod:`induction_lens.runs.sweeps`) owns what a cell
does; the executors own only where it runs:

* :class:`InProcessExecutor`: one call after the other, in order, in this process. No new
  dependency; what every test and laptop uses by default.
* :class:`RayExecutor`: each call is a Ray Core task (``@ray.remote``), collected with
  ``ray.wait`` as tasks finish, never in submission order. Local by default
  (``ray.init(num_cpus=..., include_dashboard=False)``); ``address=`` joins an existing cluster
  (``ray start --head`` prints the address). Scheduling, retries of crashed workers and GPU
  placement are Ray's: there is no scheduler of our own.
"""

import logging
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, Protocol, get_args, runtime_checkable
from urllib.parse import urlsplit

from induction_lens.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["EXECUTORS", "Executor", "ExecutorName", "InProcessExecutor", "RayExecutor",
           "make_executor"]

ExecutorName = Literal["inprocess", "ray"]
EXECUTORS: tuple[str, ...] = get_args(ExecutorName)
"""The executors :func:`make_executor` knows by name."""

Outcome = tuple[int, Any]
"""``(index of the call, its return value or the Exception it raised)``."""

_CONNECT_TIMEOUT_S = 3.0
"""How long the reachability check of ``address=`` waits for a TCP connection (our choice: a
cluster on a network answers within milliseconds; an unreachable one should fail fast)."""


@runtime_checkable
class Executor(Protocol):
    """What the sweep needs of an executor."""

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]]
            ) -> Iterator[Outcome]:
        """Run ``fn(*args, **kwargs)`` for each call; yield ``(index, outcome)`` as each ends."""
        ...

    def close(self) -> None:
        """Release what the executor started."""
        ...


class InProcessExecutor:
    """Run each call in this process, one after the other (the default executor).

    A call that raises an :class:`Exception` is reported as its outcome and the next call runs;
    ``KeyboardInterrupt`` (and other ``BaseException``) stops at once.
    """

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]]
            ) -> Iterator[Outcome]:
        for i, (args, kwargs) in enumerate(calls):
            try:
                yield i, fn(*args, **kwargs)
            except Exception as err:  # reported to the caller, which decides
                yield i, err

    def close(self) -> None:
        pass


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("executor='ray' needs Ray, which is not installed; pip install -e "
                          "'.[ray]' (or pip install 'ray>=2.40'), or use executor='inprocess'"
                          ) from None
    return ray


def check_address(address: str) -> None:
    """Raise :class:`ConfigError` at once if ``address`` (``host:port`` or ``ray://host:port``)
    does not accept a TCP connection (``ray.init`` would otherwise retry for a long time).
    ``"auto"`` and ``"local"`` are left to Ray."""
    if address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise ConfigError(f"--address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379, what "
                          "`ray start --head` prints) or ray://HOST:10001")
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise ConfigError(f"cannot reach a Ray cluster at --address {address!r} ({err}); start "
                          "one with `ray start --head` and pass the address it prints, or omit "
                          "--address for a local Ray") from None


class RayExecutor:
    """Run each call as a Ray Core task; collect results with ``ray.wait`` as they finish.

    Args:
        address: an existing cluster (``HOST:PORT`` from ``ray start --head``, ``ray://...``
            or ``"auto"``); None starts a local Ray for the sweep and shuts it down after.
            Either way, a Ray this process already initialised is used as it is and left up.
        num_cpus: CPUs of the local Ray (default: every core); not with ``address``.
        num_gpus: GPUs (fractions allowed) each task reserves. None: when the cluster has GPUs,
            ``min(1, GPUs / CPUs)`` per task, so that one task per CPU can share them (our
            choice for small models); else 0. Ray sets ``CUDA_VISIBLE_DEVICES`` per task.
        cpus_per_task: CPUs each task reserves (the sweep passes its torch thread count).
        init_kwargs: further ``ray.init`` arguments for a local Ray (e.g. ``_temp_dir``).
 Tasks whose worker dies are retried by Ray (its default
    ``max_retries``); an exception raised by the function is not retried but reported.
    """

    def __init__(self, *, address: str | None = None, num_cpus: int | None = None,
                 num_gpus: float | None = None, cpus_per_task: int = 1,
                 init_kwargs: dict[str, Any] | None = None):
        if address is not None and num_cpus is not None:
            raise ConfigError("num_cpus (--num-cpus) sizes a local Ray; a cluster at --address "
                              "has its own CPUs: drop one of them")
        if num_cpus is not None and (not isinstance(num_cpus, int) or num_cpus < 1):
            raise ConfigError(f"num_cpus={num_cpus!r} must be a positive integer")
        if num_gpus is not None and not (isinstance(num_gpus, int | float) and num_gpus >= 0):
            raise ConfigError(f"num_gpus={num_gpus!r} must be a number >= 0 (GPUs per task)")
        if address is not None:
            check_address(address)  # before importing Ray: an unreachable cluster fails fast
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self.cpus_per_task = cpus_per_task
        self.init_kwargs = dict(init_kwargs or {})
        self._ray = _import_ray()
        self._started = False

    def _start(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            logger.info("using the Ray this process already initialised")
            return
        if self.address is not None:
            kwargs: dict[str, Any] = {"address": self.address}
        else:
            kwargs = {"num_cpus": self.num_cpus, "include_dashboard": False, **self.init_kwargs}
        try:
            ray.init(**kwargs)
        except ConnectionError as err:
            raise ConfigError(f"cannot connect to Ray at --address {self.address!r} "
                              f"({str(err).strip().splitlines()[0]}); start one with `ray "
                              "start --head` or omit --address") from None
        self._started = True

    def gpus_per_task(self) -> float:
        """The ``num_gpus`` each task asks for (see the class docstring)."""
        resources = self._ray.cluster_resources()
        gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 1.0)
        if self.num_gpus is not None:
            if self.num_gpus > 0 and gpus == 0:
                raise ConfigError(f"num_gpus={self.num_gpus} per task, but the Ray cluster has "
                                  "no GPU; pass num_gpus=0 (--num-gpus 0)")
            return float(self.num_gpus)
        return min(1.0, gpus / max(cpus, 1.0)) if gpus else 0.0

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]]
            ) -> Iterator[Outcome]:
        ray = self._ray
        self._start()
        task = ray.remote(fn).options(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task())
        index = {task.remote(*args, **kwargs): i for i, (args, kwargs) in enumerate(calls)}
        pending = list(index)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayTaskError as err:
                        outcome = err.as_instanceof_cause()  # the task's own exception type
                    except ray.exceptions.RayError as err:  # worker died beyond its retries
                        outcome = err
                    yield index[ref], outcome
        finally:
            for ref in pending:  # the caller stopped early (Ctrl-C, an error): stop the rest
                ray.cancel(ref)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def make_executor(executor: "ExecutorName | Executor", *, address: str | None = None,
                  num_cpus: int | None = None, num_gpus: float | None = None,
                  cpus_per_task: int = 1) -> Executor:
    """The executor named ``executor`` ("inprocess" or "ray"), or ``executor`` itself."""
    if not isinstance(executor, str):
        if address is not None or num_cpus is not None or num_gpus is not None:
            raise ConfigError("address/num_cpus/num_gpus configure executor='ray'; pass them to "
                              "RayExecutor(...) when passing an executor object")
        return executor
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r} is not one of {list(EXECUTORS)}")
    if executor == "inprocess":
        if address is not None or num_cpus is not None or num_gpus is not None:
            raise ConfigError("address/num_cpus/num_gpus (--address, --num-cpus, --num-gpus) "
                              "need executor='ray' (--executor ray)")
        return InProcessExecutor()
    return RayExecutor(address=address, num_cpus=num_cpus, num_gpus=num_gpus,
                       cpus_per_task=cpus_per_task)
