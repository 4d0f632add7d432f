"""What the benchmarks say about the machine they ran on: the ratios depend on the processor."""

from __future__ import annotations

import platform


def cpu_model() -> str:
    """The processor, as /proc/cpuinfo names it (or what the platform module says)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
