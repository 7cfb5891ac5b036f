"""A local ``dask.distributed`` cluster for one run on Beam's Dask runner.

Started before the pipeline and stopped after it, worker processes included, so a
run leaves nothing behind; or a given scheduler's address, used as it is (that
cluster is someone else's to stop).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

_LOG = logging.getLogger(__name__)


@contextlib.contextmanager
def local_cluster(workers: int) -> Iterator[str]:
    """Yields the scheduler address of a LocalCluster of ``workers`` worker processes
    (one thread each: Beam parallelises over partitions, TF/TFX code over processes),
    no dashboard (no port to collide with another run's)."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    _LOG.info("dask: started a local cluster of %d worker process(es) at %s",
              workers, cluster.scheduler_address)
    try:
        yield cluster.scheduler_address
    finally:
        _close_default_client(cluster.scheduler_address)
        cluster.close()
        _LOG.info("dask: stopped the local cluster at %s", cluster.scheduler_address)


def _close_default_client(address: str) -> None:
    """Closes the client Beam's DaskRunner opened on ``address`` (it never closes it;
    left open, it retries the stopped scheduler for 30 s, then logs an error)."""
    from distributed import default_client

    try:
        client = default_client()
    except ValueError:  # no client
        return
    if client.scheduler and client.scheduler.address == address:
        client.close()
