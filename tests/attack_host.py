"""The process the attack tests attack: ``python -m tests.attack_host '<json settings>'``.

It lowers its own descriptor limit (``nofile``), serves ``/metrics`` on a free loopback port
(``server``: keyword arguments of ``start_metrics_server``), prints ``{"port": ...}``, and then
does what a host application does: every 20 ms it opens a file and runs a tracked job,
counting the ``open()`` calls that fail. Commands, one per line on stdin, each answered with
one JSON line on stdout:

- ``stats``: the counters;
- ``hog``: open files until the descriptor limit is reached, and keep them;
- ``release``: close them again;
- ``shutdown``: ``server.shutdown()`` and ``server.server_close()``, timed;
- ``exit``: return from main, so the interpreter exits with the server still running.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from typing import Any


def main() -> int:
    settings = json.loads(sys.argv[1])
    nofile = settings.get("nofile")
    if nofile:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

    from otel_jobtrack import start_metrics_server, track_run

    for tenant in ("acme", "globex"):
        with track_run("host.sync", kind="resource", tenant=tenant) as run:
            run.add_resources(3)
    server, thread = start_metrics_server(port=0, addr="127.0.0.1", **settings.get("server", {}))
    counters = {"open_ok": 0, "open_failed": 0, "runs": 0}
    hogged: list[int] = []
    lock = threading.Lock()

    def host_work() -> None:
        while True:
            try:
                with open(os.devnull, "rb"):
                    pass
                counters["open_ok"] += 1
            except OSError:
                with lock:
                    if not hogged:
                        counters["open_failed"] += 1
            with track_run("host.job", kind="batch"):
                counters["runs"] += 1
            time.sleep(0.02)

    threading.Thread(target=host_work, name="host-work", daemon=True).start()
    print(json.dumps({"port": server.server_address[1]}), flush=True)

    for line in sys.stdin:
        command = line.strip()
        out: dict[str, Any] = {}
        if command == "stats":
            out = dict(counters, python_threads=threading.active_count())
        elif command == "hog":
            with lock:
                while True:
                    try:
                        hogged.append(os.open(os.devnull, os.O_RDONLY))
                    except OSError:
                        break
            out = {"hogged": len(hogged)}
        elif command == "release":
            with lock:
                for fd in hogged:
                    os.close(fd)
                hogged.clear()
        elif command == "shutdown":
            started = time.monotonic()
            server.shutdown()
            server.server_close()
            thread.join(10)
            out = {"seconds": time.monotonic() - started, "thread_alive": thread.is_alive()}
        elif command == "exit":
            return 0
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
