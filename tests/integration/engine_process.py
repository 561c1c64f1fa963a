"""`esm serve` as a real subprocess, for tests that kill it: start on a free port, wait, stop."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import wait_for

ROOT = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(tmp: Path, port: int, *endpoints: str) -> subprocess.Popen[bytes]:
    """``esm serve`` with tmp/esm.yaml and tmp/data; ``endpoints`` as SERVICE=URL."""
    log = (tmp / f"engine-{time.monotonic_ns()}.log").open("wb")
    args = [
        sys.executable,
        "-m",
        "engine.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(tmp / "data"),
        "--config",
        str(tmp / "esm.yaml"),
    ]
    for endpoint in endpoints:
        args += ["--endpoint", endpoint]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"engine did not start: {Path(log.name).read_text()}")
            time.sleep(0.05)


def serve_demo(tmp: Path, api: int, aws: int) -> tuple[subprocess.Popen[bytes], Path]:
    """`esm serve --embedded-aws` with the demo config, as the README runs it; its log file."""
    log_path = tmp / f"engine-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine.cli",
                "serve",
                "--embedded-aws",
                "--embedded-aws-port",
                str(aws),
                "--port",
                str(api),
                "--data-dir",
                str(tmp / "data"),
                "--config",
                "examples/demo/esm.yaml",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    wait_for(lambda: b"engine_started" in log_path.read_bytes() or proc.poll() is not None)
    assert proc.poll() is None, log_path.read_text()
    return proc, log_path


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM and the exit code; an engine that does not stop within 20 s fails the test."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise AssertionError("the engine did not stop on SIGTERM within 20 s") from None
