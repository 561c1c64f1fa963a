"""The embedded AWS-API emulator: moto's server in a thread, for a demo with nothing else installed.

Two patches make it as trustworthy as a real endpoint: SQS message operations are serialized (moto's
are not: a message can reach two concurrent receives, getmoto/moto#519, and a deleted one can come
back), and the state of the services a mapping reads survives a restart (pickled to the data
directory on stop and every few seconds while it changes). Both lean on moto's internals: moto is
pinned in pyproject.toml.
"""

from __future__ import annotations

import contextlib
import copyreg
import functools
import inspect
import io
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("engine.embedded")

STATE_FILE = "embedded-aws.pickle"
# the services an event source mapping reads or writes; IAM, EC2 and the rest start afresh
PERSISTED_SERVICES = ("sqs", "sns", "kinesis", "dynamodb", "s3")
# a long poll rechecks at least this often, in case a change reached a queue without a notify
_RECHECK_S = 1.0
# the SQS operations after which a waiting long poll may find a message (batch forms call these)
_RELEASING = frozenset({"send_message", "delete_message", "change_message_visibility"})


class EmbeddedAws:
    """moto's server on ``host:port`` (0: a free port, known after ``start``); with ``data_dir``, the
    state of PERSISTED_SERVICES is restored from it at start and saved to it."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: Path | None = None,
        save_interval_s: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.state_path = data_dir / STATE_FILE if data_dir is not None else None
        self.save_interval_s = save_interval_s
        self._server: Any = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._changes = 0  # requests served; the state is saved when this moved since the last save
        self._saved_at_change = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        try:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )
            from werkzeug.serving import make_server
        except ImportError as e:  # moto is an optional extra
            raise SystemExit("--embedded-aws needs moto: pip install 'esm-engine[embedded]'") from e
        patch_sqs()
        self._stopping.clear()
        if self.state_path is not None:
            self._restore(self.state_path)
        app = DomainDispatcherApplication(create_backend_app)

        def counted(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            try:
                return app(environ, start_response)  # type: ignore[no-any-return]
            finally:  # counted once the request's work is done, so a save after it includes it
                self._changes += 1

        self._server = make_server(
            self.host, self.port, counted, threaded=True, request_handler=MotoRequestHandler
        )
        self.port = int(self._server.server_port)
        self._spawn("embedded-aws-server", self._server.serve_forever)
        if self.state_path is not None:
            self._spawn("embedded-aws-saver", self._save_periodically)
        log.info("embedded_aws_started", endpoint_url=self.endpoint_url, state_path=str(self.state_path))

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        if self.state_path is not None:
            self._save(self.state_path)
        self._server = None
        log.info("embedded_aws_stopped")

    def _spawn(self, name: str, target: Callable[[], object]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _save_periodically(self) -> None:
        assert self.state_path is not None
        while not self._stopping.wait(self.save_interval_s):
            if self._changes != self._saved_at_change:
                self._save(self.state_path)

    def _save(self, path: Path) -> None:
        changes = self._changes
        started = time.monotonic()
        try:
            data = _dump_state()
        except Exception as e:  # the last good file stays; the next tick retries
            log.error("embedded_aws_state_save_failed", path=str(path), error=repr(e))
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # a crash mid-write leaves the previous state whole
        self._saved_at_change = changes
        log.debug(
            "embedded_aws_state_saved",
            path=str(path),
            bytes=len(data),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )

    @staticmethod
    def _restore(path: Path) -> None:
        if not path.exists():
            return
        try:
            _load_state(path.read_bytes())
        except Exception as e:  # kept aside, not overwritten: the user may still want it
            aside = path.with_name(path.name + ".unreadable")
            os.replace(path, aside)
            log.warning("embedded_aws_state_unreadable", path=str(path), moved_to=str(aside), error=repr(e))
            return
        log.info("embedded_aws_state_restored", path=str(path))


# ---- state: moto's backends, pickled --------------------------------------------------------------


def _fresh(factory: Callable[[], object]) -> Callable[[object], tuple[Callable[[], object], tuple[()]]]:
    return lambda _: (factory, ())


# locks and conditions (moto's queues hold one; patch_sqs adds one per backend) pickle as new ones
_DISPATCH = copyreg.dispatch_table.copy()
_DISPATCH.update(
    {
        type(threading.Lock()): _fresh(threading.Lock),
        type(threading.RLock()): _fresh(threading.RLock),
        threading.Condition: _fresh(threading.Condition),
    }
)


def _dump_state() -> bytes:
    import moto
    from moto.backends import get_backend

    services = {
        name: {account: dict(regions) for account, regions in get_backend(name).items()}  # type: ignore[call-overload]
        for name in PERSISTED_SERVICES
    }
    # SQS held still; a change elsewhere mid-pickle ("changed size during iteration") is retried
    for attempt in range(3):
        with _all_sqs_locked():
            try:
                return _pickle({"moto": moto.__version__, "services": services})
            except RuntimeError:
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")


def _pickle(state: object) -> bytes:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(state)
    return buffer.getvalue()


def _load_state(data: bytes) -> None:
    import moto
    from moto.backends import get_backend

    state = pickle.loads(data)  # the engine's own data directory, written by _dump_state
    if state["moto"] != moto.__version__:
        raise ValueError(f"saved by moto {state['moto']}, this is moto {moto.__version__}")
    for name, accounts in state["services"].items():
        backends = get_backend(name)
        for account, regions in accounts.items():
            for region, backend in regions.items():
                backends[account][region] = backend


@contextlib.contextmanager
def _all_sqs_locked() -> Iterator[None]:
    from moto.sqs.models import sqs_backends

    with contextlib.ExitStack() as stack:
        # request threads hold one backend's lock at a time, so taking all in any order cannot deadlock
        for _, _, backend in list(sqs_backends.iter_backends()):
            stack.enter_context(_lock(backend))
        yield


# ---- SQS: one lock per backend around every message operation ---------------------------------------

_LOCK_CREATION = threading.Lock()


def _lock(backend: Any) -> threading.Condition:
    lock: threading.Condition | None = backend.__dict__.get("_esm_lock")
    if lock is None:
        with _LOCK_CREATION:
            lock = backend.__dict__.setdefault("_esm_lock", threading.Condition(threading.RLock()))
    return lock


def patch_sqs() -> None:
    """Patches moto's SQS (once per process): every public SQSBackend method runs under its backend's
    lock; a long poll waits with the lock released, woken by a send, delete or visibility change; and
    two costs that made receiving O(queue depth) per message are cut."""
    from moto.core import utils
    from moto.sqs import models as sqs_models

    models: Any = sqs_models  # patched beyond its declared types
    if getattr(models, "_esm_patched", False):
        return
    backend = models.SQSBackend
    for name, method in list(vars(backend).items()):
        if inspect.isfunction(method) and not name.startswith("_"):
            wrapped = _long_poll(method) if name == "receive_message" else _locked(method, name in _RELEASING)
            setattr(backend, name, wrapped)
    # moto checks every message's visibility through datetime arithmetic: 6 µs a call, 60 ns this way
    models.unix_time = lambda dt=None: time.time() if dt is None else utils.unix_time(dt)
    models.unix_time_millis = lambda dt=None: time.time() * 1000 if dt is None else utils.unix_time_millis(dt)
    backend.is_message_valid_based_on_retention_period = _retained
    models._esm_patched = True


def _retained(self: Any, queue_name: str, message: Any) -> bool:
    """moto's version computes every queue attribute (three scans of the queue) for each message."""
    retention_s: int = self.get_queue(queue_name).message_retention_period
    return bool(retention_s + message.sent_timestamp / 1000 > time.time())


def _locked(method: Callable[..., Any], releasing: bool) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        lock = _lock(self)
        with lock:
            try:
                return method(self, *args, **kwargs)
            finally:
                if releasing:
                    lock.notify_all()

    return locked


def _long_poll(receive: Callable[..., Any]) -> Callable[..., Any]:
    """moto's receive_message spins while a FIFO queue's visible messages all belong to groups in flight;
    this one runs moto's non-waiting receive under the lock and sleeps between tries."""

    @functools.wraps(receive)
    def receive_message(
        self: Any,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> Any:
        deadline = time.monotonic() + wait_seconds_timeout
        lock = _lock(self)
        with lock:
            while True:
                got = receive(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
                left = deadline - time.monotonic()
                if got or left <= 0:
                    return got
                lock.wait(min(left, _RECHECK_S, _until_visible(self.get_queue(queue_name))))

    return receive_message


def _until_visible(queue: Any) -> float:
    """Seconds until the first hidden or delayed message of ``queue`` shows (a timeout expiring wakes
    no one)."""
    now = time.time()
    later = [shows for m in queue._messages if (shows := max(m.visible_at, m.delayed_until) / 1000) > now]
    return min(later, default=now + _RECHECK_S) - now + 0.001
