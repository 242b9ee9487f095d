"""Connecting to a Ray cluster, or starting a local one, and sizing the workers to it.

``connect("host:port")`` joins a running cluster (``ray start --head`` on one machine, ``ray start
--address=...`` on the others, KubeRay, Ray on SLURM); ``connect("auto")`` joins the one ``ray
start`` made on this machine (or ``$RAY_ADDRESS``); ``connect(None)`` starts a Ray for this process
alone, which ends with it.

A local Ray listens on 127.0.0.1 only and keeps its authentication token in this process's
environment (nothing is written to ``~/.ray``).
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import ray
from ray._private import ray_constants

from graft_vqa.core.errors import DistributedError

log = logging.getLogger(__name__)

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray binds and advertises 127.0.0.1 only
LOCAL = ("local", "")  # --ray values that start a local Ray
PROBE_TIMEOUT_S = 5.0  # a host:port that takes no TCP connection within this is no cluster (Ray would retry for minutes)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")  # a cluster here is joined over loopback only


@dataclass
class Cluster:
    """The Ray this process is connected to."""

    address: str | None  # what was asked for (None: a local Ray started here)
    started_here: bool  # True when this process started it (it ends with the process)
    connect_s: float  # seconds connecting (and starting, for a local Ray) took
    nodes: list[dict[str, Any]] = field(default_factory=list)  # alive nodes: node id, address, CPUs, GPUs
    cpus: float = 0.0  # CPUs in the cluster
    gpus: float = 0.0  # GPUs in the cluster

    def describe(self) -> dict[str, Any]:
        """Plain JSON facts for run metadata."""
        return {"address": self.address or "local", "started_here": self.started_here,
                "connect_s": round(self.connect_s, 3), "nodes": len(self.nodes), "cpus": self.cpus, "gpus": self.gpus}


def _loopback_only() -> None:
    """Make the Ray this process starts bind and advertise 127.0.0.1 only.

    Ray replaces 127.0.0.1 by the machine's interface address (ray issue #59110) unless
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which Ray's Python side reads once, on import; so set it for
    the processes Ray starts (environment) and for this one (the constant it was read into).
    """
    os.environ[LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def _private_token() -> None:
    """Token authentication with a token of this process's own: Ray turns token authentication on for
    a local Ray and would write a new token to ~/.ray/auth_token; a token in the environment (which the
    processes Ray starts inherit) is used instead. Ray's own variables, when set, are respected."""
    if not any(k in os.environ for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def connect(address: str | None = None, *, num_cpus: int | None = None, verbose: bool = False) -> Cluster:
    """Join the cluster at ``address`` (``host:port``, ``ray://host:port``, ``auto``), or start a local Ray
    with ``num_cpus`` CPUs (default: this machine's) when it is ``None`` or "local". Raises
    :class:`DistributedError` when there is no cluster there."""
    address = None if address in LOCAL else address
    start = time.perf_counter()
    already = ray.is_initialized()
    if already:
        log.info("already connected to Ray")
    elif address is None:
        _loopback_only()
        _private_token()
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=verbose, configure_logging=verbose)
    else:
        _probe(address)
        try:
            ray.init(address=address, log_to_driver=verbose, configure_logging=verbose)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise DistributedError(f"no Ray cluster at {address} ({exc}); start one with 'ray start --head' "
                                   f"(see docs/distributed.md) or pass --ray without an address for a local Ray") from None
    cluster = Cluster(address, address is None and not already, time.perf_counter() - start)
    refresh(cluster)
    log.info("Ray: %d node(s), %g CPU(s), %g GPU(s) (%.1f s to %s)", len(cluster.nodes), cluster.cpus, cluster.gpus,
             cluster.connect_s, "start" if cluster.started_here else "connect")
    return cluster


def _probe(address: str) -> None:
    """Fail at once when nothing takes a TCP connection at ``address`` (``host:port`` or ``ray://host:port``;
    ``auto`` is left to Ray): Ray itself retries an address without a cluster for minutes. A loopback
    address is joined as a loopback-only driver (see :func:`_loopback_only`)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not (host and port.isdigit()):
        return
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise DistributedError(f"no Ray cluster at {address} ({exc.strerror or exc}); start one with 'ray start "
                               f"--head' (see docs/distributed.md) or pass --ray without an address for a local "
                               f"Ray") from None
    if host in LOOPBACK_HOSTS:
        _loopback_only()


def refresh(cluster: Cluster) -> None:
    """Read the cluster's alive nodes and resources again."""
    cluster.nodes = [{"node": n["NodeID"], "address": n.get("NodeManagerAddress"),
                      "host": n.get("NodeManagerHostname"), "cpus": n.get("Resources", {}).get("CPU", 0.0),
                      "gpus": n.get("Resources", {}).get("GPU", 0.0)} for n in ray.nodes() if n.get("Alive")]
    resources = ray.cluster_resources()
    cluster.cpus = float(resources.get("CPU", 0.0))
    cluster.gpus = float(resources.get("GPU", 0.0))


def disconnect(cluster: Cluster | None) -> None:
    """Leave the cluster (a local Ray started here stops). Callers leave only what they joined."""
    if cluster is not None and ray.is_initialized():
        ray.shutdown()


def worker_info() -> dict[str, Any]:
    """Where the calling process runs: Ray node id, host name and process id."""
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    return {"node": (node or "local")[:16], "host": socket.gethostname(), "pid": os.getpid()}
