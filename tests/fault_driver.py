"""``python -m utils ...`` with a pause at one phase, for tests/test_faults.py (not a test module).

``FAULT_PHASE`` says where the run stops: it prints ``FAULT-PAUSED <phase>`` to standard error and waits
until the file ``FAULT_GO`` exists (or forever), so the test can kill or interrupt it at that moment:

- ``read``: after the first record is read (the records' Arrow file is being written);
- ``encode``: at the first batch of the ``Dataset.map`` that encodes (its cache file is being written;
  with ``--num-proc 2``, in a worker process);
- ``save``: after ``save_to_disk`` wrote the dataset, before ``stats.json`` and the marker;
- ``commit``: ``--overwrite``, right after the new and old outputs were swapped, before the old is deleted;
- ``commit-fallback``: as if the file system could not swap: between moving the old output away and
  renaming the new one into place;
- ``commit-new``: no ``OUT`` yet: just before the final rename.

Usage: ``FAULT_PHASE=encode python tests/fault_driver.py prepare DATA --out OUT ...``. Only the hooks are
added; the command is the real one, run as ``python -m utils`` runs it.
"""

from __future__ import annotations

import os
import runpy
import sys
import time

PHASE = os.environ.get("FAULT_PHASE", "")
GO = os.environ.get("FAULT_GO", "")


def pause() -> None:
    print(f"FAULT-PAUSED {PHASE} pid={os.getpid()}", file=sys.stderr, flush=True)
    while not (GO and os.path.exists(GO)):
        time.sleep(0.02)


def install() -> None:
    if PHASE == "read":
        import utils.formats

        original = utils.formats.iter_records

        def iter_records(*args, **kwargs):
            for index, item in enumerate(original(*args, **kwargs)):
                yield item
                if index == 0:
                    pause()

        utils.formats.iter_records = iter_records
    elif PHASE == "encode":
        import utils.encode

        original = utils.encode._map_batch
        first = [True]

        def _map_batch(*args, **kwargs):
            if first[0]:
                first[0] = False
                pause()
            return original(*args, **kwargs)

        utils.encode._map_batch = _map_batch
    elif PHASE == "save":
        import datasets

        original = datasets.Dataset.save_to_disk

        def save_to_disk(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            pause()
            return result

        datasets.Dataset.save_to_disk = save_to_disk
    elif PHASE == "commit":
        import utils.output

        original = utils.output.exchange

        def exchange(a, b):
            done = original(a, b)
            pause()
            return done

        utils.output.exchange = exchange
    elif PHASE in ("commit-fallback", "commit-new"):
        import utils.output

        original = utils.output.rename_noreplace
        if PHASE == "commit-fallback":
            utils.output.exchange = lambda a, b: False

        def rename_noreplace(src, dst):
            pause()
            return original(src, dst)

        utils.output.rename_noreplace = rename_noreplace
    elif PHASE:
        raise SystemExit(f"unknown FAULT_PHASE {PHASE!r}")


if __name__ == "__main__":
    import signal

    # Ctrl-C as in a terminal, even when the test runner was started with SIGINT ignored (a background job
    # of a non-interactive shell is), which Python would otherwise inherit and keep
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    install()
    sys.argv = ["python -m utils", *sys.argv[1:]]
    runpy.run_module("utils", run_name="__main__", alter_sys=True)
