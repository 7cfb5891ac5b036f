"""Beam's DirectRunner without its Prism attempt: the runner every local Beam run uses.

Beam 2.77's DirectRunner (``SwitchingDirectRunner``) first tries its Prism runner, which
downloads a binary from the internet, and falls back to the FnApiRunner when that fails:
on a machine with network access a run would execute on a different runner than the
tests ran. Beam skips Prism for interactive pipelines (``_is_interactive``, which
``SwitchingDirectRunner`` uses for nothing else); setting it keeps the rest of the
choice as Beam makes it (the FnApiRunner, or the BundleBasedDirectRunner for what the
FnApiRunner lacks) and the pipeline options the FnApiRunner's workers get.
"""
from __future__ import annotations

from apache_beam.runners.direct.direct_runner import SwitchingDirectRunner


class PinnedDirectRunner(SwitchingDirectRunner):
    """``--runner=tfx_mtl.runners.direct_runner.PinnedDirectRunner``; tested on real
    pipelines in tests/runners/test_beam_runner.py (no Prism, the FnApiRunner runs)."""

    _is_interactive = True
