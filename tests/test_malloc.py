"""Every stage's setup tunes glibc's malloc for CPU jobs (safealign.cli.tune_malloc): freed heap
up to 1 GiB stays with the process instead of being faulted in again at the next training step."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from safealign import cli

# Allocate 20 x 8 MiB through malloc, touch them, free them; print how many MiB the process's RSS
# fell by. Untuned glibc serves 8 MiB with mmap (its threshold starts at 128 KiB) and unmaps it on
# free; tuned, the blocks come from the heap and stay there.
PROBE = r"""
import argparse, ctypes, sys
from safealign import cli
if sys.argv[1] == "setup":
    cli.setup(argparse.Namespace(params="{}"))
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
blocks = []
for _ in range(20):
    p = libc.malloc(8 << 20)
    ctypes.memset(p, 1, 8 << 20)
    blocks.append(p)
held = rss()
for p in blocks:
    libc.free(p)
print((held - rss()) >> 20)
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")


def released_mib(how: str, **env: str) -> int:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", PROBE, how], env={**clean, **env}, capture_output=True,
                         text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(cli.gpu_present(), reason="not applied on GPU hosts (tested below)")
def test_setup_keeps_freed_heap_in_the_process():
    assert released_mib("plain") >= 120  # glibc's own behaviour: the probe can see the difference
    assert released_mib("setup") <= 16


@pytest.mark.skipif(cli.gpu_present(), reason="not applied on GPU hosts (tested below)")
def test_the_users_own_malloc_settings_win():
    # glibc reads MALLOC_TRIM_THRESHOLD_ at start; setup must not override it with its own values.
    assert released_mib("setup", MALLOC_TRIM_THRESHOLD_="0", MALLOC_MMAP_THRESHOLD_="131072") >= 120


def test_not_on_gpu_hosts(monkeypatch):
    monkeypatch.setattr(cli, "gpu_present", lambda: True)
    assert cli.tune_malloc() is False


def test_user_settings_are_detected(monkeypatch):
    for key in ("MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.setenv(key, "glibc.malloc.trim_threshold=0" if key == "GLIBC_TUNABLES" else "0")
        assert cli.tune_malloc() is False
        monkeypatch.delenv(key)
