"""The course's tiny models behind an OpenAI-compatible server (``transformers serve``), on 127.0.0.1.

One ``transformers serve`` process serves both models; it loads a model by the name a request gives,
and a name that is a directory (relative to the server's working directory) is a local checkpoint.
:func:`prepare_checkpoints` writes the two checkpoints once into a cache folder and the server runs
there, so the names the learner passes to the ``openai`` client are short:

- ``tiny-base``: the base model (基座模型), which continues text;
- ``tiny-chat``: the chat model (对话模型): the base model with the shipped LoRA chat adapter merged in
  (``transformers serve`` does not load a peft adapter, so a merged copy is saved).

:func:`start` picks a free port on 127.0.0.1, starts the server offline on the CPU, waits for
``/health``, loads both models, and returns a :class:`Server`; the server stops on
:meth:`Server.stop`, at the end of a ``with`` block, when Python exits (a Jupyter kernel that shuts
down or restarts runs ``atexit``), and by itself within a second if its parent process dies without
cleaning up (a kernel killed hard). ``python -m utils.serve`` (``make serve``) runs it in a terminal.

Example (not run by the doctests: starting takes ~20 s)::

    from utils.serve import start
    with start() as server:                      # prints the base URL and the model names
        client = server.client()                 # openai.OpenAI(base_url=server.base_url, api_key=...)
        client.completions.create(model="tiny-base", prompt="How are you?", max_tokens=12, temperature=0)
        client.chat.completions.create(model="tiny-chat", max_tokens=20, temperature=0,
                                       messages=[{"role": "user", "content": "What is the capital of France?"}])

What the server does and does not do (transformers 5.24 and 5.25, measured; see ``tests/test_serve.py``):
``max_tokens`` defaults to 1024 new tokens when a request does not set it, so always pass it;
``logprobs`` is ignored; ``/v1/completions`` tokenizes the prompt *with* the tokenizer's special tokens,
so a prompt that already starts with ``<s>`` (a rendered chat template) gets a second BOS.

>>> BASE_MODEL, CHAT_MODEL
('tiny-base', 'tiny-chat')
>>> port = free_port()
>>> 1024 <= port <= 65535 and not port_in_use(port)
True
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
"""The only address the server binds: it is reachable from this machine (or this Colab VM) alone."""

BASE_MODEL = "tiny-base"
CHAT_MODEL = "tiny-chat"
MODELS = {BASE_MODEL: "base model: continues text",
          CHAT_MODEL: "chat model: the base model with the LoRA chat adapter merged in"}
"""The served model names (what ``/v1/models`` lists and the ``model=`` a request passes)."""

DEFAULT_PORT = 8000
"""The port ``python -m utils.serve`` uses unless told otherwise (:func:`start` picks a free one)."""

SERVE_PACKAGES = ("fastapi", "uvicorn", "openai", "pydantic", "starlette", "rich")
"""What ``transformers serve`` needs beyond the course's core dependencies (the ``serve`` extra)."""

INSTALL_HINT = ('pip install -e ".[serve]"  (in a clone of the repository; `make lab` and `make test` '
                'install it), or: pip install "transformers[serving]"')

API_KEY = "not-needed"
"""Any key works: the local server does not check it (the ``openai`` client insists on one)."""

_LOG_TAIL_LINES = 40
_PARENT_ENV = "UTILS_SERVE_PARENT_PID"
_VALIDATE_ENV = "UTILS_SERVE_VALIDATE"
RAW_HEADER = "x-utils-serve-raw"
"""A request with this header set to ``1`` skips :class:`RequestValidator` (to see what ``transformers serve`` does)."""

# The server process: a watchdog thread exits when the parent is gone (re-parented); the request
# validator (see RequestValidator) is put in front of the app; then the ordinary `transformers serve`
# command line runs (its typer app, without the hub's update check).
_WATCHDOG = """
import os, sys, threading, time
parent = int(os.environ.pop("%s"))
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
""" % _PARENT_ENV
_CHILD = _WATCHDOG + """
if os.environ.get("%s") == "1":
    from utils.serve import install_validator
    install_validator(os.getcwd())
from transformers.cli.transformers import app
sys.argv = ["transformers", *sys.argv[1:]]
app()
""" % _VALIDATE_ENV


class ServeError(RuntimeError):
    """The server could not be started (port busy, start-up failed or timed out, a model did not load)."""


# --------------------------------------------------------------------------- dependencies

def missing_packages() -> list[str]:
    """The packages of the ``serve`` extra that are not installed (empty when serving is possible).

    >>> missing_packages()
    []
    """
    return [name for name in SERVE_PACKAGES if importlib.util.find_spec(name) is None]


def require_serve_extra() -> None:
    """Raise ``ImportError`` naming the pip command when the ``serve`` extra is missing."""
    missing = missing_packages()
    if missing:
        raise ImportError(f"`transformers serve` needs {', '.join(missing)}, which "
                          f"{'is' if len(missing) == 1 else 'are'} not installed. Install the serve extra: "
                          + INSTALL_HINT)


# --------------------------------------------------------------------------- checkpoints

def cache_root() -> Path:
    """Where the servable checkpoints are written: ``$LLM_HANDBOOK_CACHE``, else the user cache
    (``$XDG_CACHE_HOME`` or ``~/.cache``) ``/llm-data-handbook``."""
    if os.environ.get("LLM_HANDBOOK_CACHE"):
        return Path(os.environ["LLM_HANDBOOK_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llm-data-handbook"


def checkpoints_fingerprint() -> str:
    """A short hash of what the servable checkpoints are made from: the shipped base model, chat
    adapter and tokenizer files, and the transformers and peft versions that merge and save them.

    >>> len(checkpoints_fingerprint())
    12
    """
    import peft
    import transformers

    from utils.models import ASSETS

    digest = hashlib.sha256(f"transformers {transformers.__version__} peft {peft.__version__}".encode())
    for name in ("causal_lm", "chat_adapter", "tokenizer"):
        for path in sorted((ASSETS / name).rglob("*")):
            if path.is_file():
                digest.update(path.relative_to(ASSETS).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def prepare_checkpoints(root: str | Path | None = None) -> Path:
    """The folder holding ``tiny-base/`` and ``tiny-chat/`` (merged), written once (safetensors, each with
    the course tokenizer) under ``root`` (default :func:`cache_root`) ``/serve-<fingerprint>``; later calls
    return the same folder without writing. The server runs in this folder, so a model's name is its path.
    """
    root = Path(root) if root is not None else cache_root()
    target = root / f"serve-{checkpoints_fingerprint()}"
    if all((target / name / "model.safetensors").is_file() for name in MODELS):
        return target

    import warnings

    import transformers

    from utils.models import load_causal_lm, load_chat_lm, load_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    tmp = Path(tempfile.mkdtemp(prefix=".serve-tmp-", dir=root))
    try:
        tokenizer = load_tokenizer()
        for name, load in ((BASE_MODEL, load_causal_lm), (CHAT_MODEL, load_chat_lm)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # peft asks transformers for a deprecated name
                model = load()  # load_chat_lm() merges the adapter: a plain LlamaForCausalLM
                model.save_pretrained(tmp / name, safe_serialization=True)
            tokenizer.save_pretrained(tmp / name)
        try:
            tmp.rename(target)
        except OSError:  # another process wrote it meanwhile
            if not (target / CHAT_MODEL / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if bars:
            transformers.utils.logging.enable_progress_bar()
    return target


# --------------------------------------------------------------------------- request validation

def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> tuple[int, dict]:
    return status, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


class RequestValidator:
    """Checks a ``/v1/completions`` or ``/v1/chat/completions`` request before ``transformers serve`` sees it.

    ``transformers serve`` 5.24 answers many bad requests with a bare ``500 Internal Server Error`` (text,
    not JSON) — an unknown or missing ``model``, ``max_tokens`` <= 0 or not a number, empty ``messages``, a
    message the chat template rejects — and runs a prompt longer than the model's context, or a huge
    ``max_tokens``, past the positions the model was trained on. 5.25 answers a missing ``model``,
    ``max_tokens`` <= 0, empty ``messages`` and a too-long prompt with its own ``400`` (``{"detail": ...}``);
    an unknown model or role is still a bare 500 and a huge ``max_tokens`` still runs (``tests/test_serve.py``
    records both versions' answers). This check answers all of them, the same way on every version, with an
    OpenAI-style ``4xx`` JSON error (``{"error": {"message", "type", "param", "code"}}``), and gives a
    request without ``max_tokens`` the rest of the context (as OpenAI does) instead of the server's 1024.
    Everything else goes to ``transformers serve`` unchanged. ``folder``: the checkpoints folder (a
    model's name is its sub-folder).

    >>> v = RequestValidator(prepare_checkpoints())
    >>> v.check("/v1/completions", {"model": "gpt-4o", "prompt": "hi"})[0]
    404
    >>> v.check("/v1/chat/completions", {"model": "tiny-chat", "messages": [], "max_tokens": 4})
    (400, {'error': {'message': 'messages must be a non-empty list of {"role", "content"} objects', 'type': 'invalid_request_error', 'param': 'messages', 'code': None}})
    >>> body = {"model": "tiny-base", "prompt": "How are you?"}
    >>> v.check("/v1/completions", body), body["max_tokens"]      # the rest of the 512-token context
    (None, 507)
    """

    PATHS = ("/v1/completions", "/v1/chat/completions")

    def __init__(self, folder: str | Path, app: Any = None):
        import transformers

        self.app = app
        self.models = {}
        for name in MODELS:
            path = Path(folder) / name
            config = json.loads((path / "config.json").read_text())
            self.models[name] = (transformers.AutoTokenizer.from_pretrained(str(path)),
                                 int(config["max_position_embeddings"]))

    def check(self, path: str, body: Any) -> tuple[int, dict] | None:
        """``None`` if the request may go on (``body`` may get a default ``max_tokens``), else
        ``(status, error body)``."""
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object")
        model = body.get("model")
        if model is None:
            return _error(400, f"model is required: one of {', '.join(self.models)}", "model")
        if model not in self.models:
            return _error(404, f"The model {model!r} does not exist on this server; it serves "
                               f"{', '.join(self.models)} (GET /v1/models lists them)", "model", "model_not_found")
        tokenizer, context = self.models[model]
        key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        max_tokens = body.get(key)
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens < 1):
            return _error(400, f"{key} must be a positive integer, got {max_tokens!r}", key)
        if path.endswith("/chat/completions"):
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
                return _error(400, 'messages must be a non-empty list of {"role", "content"} objects', "messages")
            texts = []
            for i, m in enumerate(messages):
                content = m.get("content")
                if isinstance(content, list):  # content parts: the server joins their texts
                    content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
                if not isinstance(m.get("role"), str) or not isinstance(content, str):
                    return _error(400, f"messages[{i}] needs a string role and a string content", f"messages[{i}]")
                texts.append({"role": m["role"], "content": content})
            try:
                n_prompt = len(tokenizer.apply_chat_template(texts, add_generation_prompt=True, tokenize=True,
                                                             return_dict=True)["input_ids"])
            except Exception as err:  # the chat template rejects the conversation (e.g. an unknown role)
                return _error(400, f"the chat template of {model} rejects these messages: {err}", "messages")
        else:
            prompt = body.get("prompt", "")
            if not isinstance(prompt, str):
                return _error(400, "prompt must be a string", "prompt")
            n_prompt = len(tokenizer(prompt)["input_ids"])  # as the server tokenizes it (BOS added)
        room = context - n_prompt
        if room < 1 or (max_tokens is not None and max_tokens > room):
            asked = f" and {max_tokens} for the completion" if max_tokens is not None else ""
            return _error(400, f"This model's maximum context length is {context} tokens; the request has "
                               f"{n_prompt} in the prompt{asked}. Shorten the prompt or lower {key}.",
                          key if room >= 1 else ("messages" if "messages" in body else "prompt"),
                          "context_length_exceeded")
        if max_tokens is None:
            body["max_tokens"] = room
        return None

    async def __call__(self, scope, receive, send):  # an ASGI middleware
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.PATHS or \
                dict(scope["headers"]).get(RAW_HEADER.encode()) == b"1":
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, receive, send)
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None  # malformed JSON: transformers serve itself answers 422 with a JSON error
        problem = self.check(scope["path"], body) if body is not None else None
        if problem is not None:
            status, payload = problem
            data = json.dumps(payload).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(data)).encode())]})
            return await send({"type": "http.response.body", "body": data})
        if body is not None:
            raw = json.dumps(body).encode()
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"content-length"]
                     + [(b"content-length", str(len(raw)).encode())]}
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def install_validator(folder: str | Path) -> None:
    """Make ``transformers serve``'s app factory put a :class:`RequestValidator` in front of its app
    (called in the server process before the command line runs)."""
    from transformers.cli.serving import server as serving

    build = serving.build_server

    def build_validated(*args: Any, **kwargs: Any):
        app = build(*args, **kwargs)
        app.add_middleware(_ValidatorMiddleware, folder=str(folder))
        return app

    serving.build_server = build_validated


class _ValidatorMiddleware(RequestValidator):
    def __init__(self, app: Any, folder: str):
        super().__init__(folder, app)


# --------------------------------------------------------------------------- ports

def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Whether ``port`` on 127.0.0.1 cannot be bound (another program listens there); connections of a
    stopped server still closing (TIME_WAIT) do not count, as for the server itself."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def _port_busy_message(port: int) -> str:
    return (f"port {port} on {HOST} is already in use (another server, or an earlier `python -m utils.serve` "
            f"still running?). Stop it, or choose another port: `python -m utils.serve --port {port + 1}` / "
            f"`make serve PORT={port + 1}`, or start(port=None) to pick a free one.")


# --------------------------------------------------------------------------- the server

_RUNNING: list["Server"] = []
_LOCK = threading.Lock()


class Server:
    """A running ``transformers serve`` process (made by :func:`start`).

    Attributes: ``base_url`` (``http://127.0.0.1:PORT/v1``, for ``openai.OpenAI(base_url=...)``),
    ``port``, ``models`` (the names ``/v1/models`` lists), ``pid``, ``log_path`` (the server's output).
    """

    def __init__(self, process: subprocess.Popen, port: int, log_path: Path, checkpoints: Path):
        self.process = process
        self.port = port
        self.log_path = log_path
        self.checkpoints = checkpoints
        self.url = f"http://{HOST}:{port}"
        self.base_url = f"{self.url}/v1"
        self.models: tuple[str, ...] = ()

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        """Whether the server process is still alive (it is not reaped here: see :meth:`stop`)."""
        return not _exited(self.process)

    def client(self, **kwargs: Any):
        """An ``openai.OpenAI`` client pointed at this server (``kwargs`` go to ``openai.OpenAI``)."""
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key=API_KEY, **kwargs)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the server's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and every process it started (SIGTERM to its process group, SIGKILL after
        ``timeout`` s). Calling it again does nothing."""
        with _LOCK:
            if self in _RUNNING:
                _RUNNING.remove(self)
        if self.process.returncode is not None:
            return  # already reaped: its process group id may belong to someone else by now
        _signal_group(self.process, signal.SIGTERM)
        if not _wait_exited(self.process, timeout):
            _signal_group(self.process, _SIGKILL)
            _wait_exited(self.process, timeout)
        # the leader is at most a zombie (not reaped yet), so the group id is still the server's:
        # end whatever else is in the group, then reap the leader
        _signal_group(self.process, _SIGKILL)
        self.process.wait(timeout)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else f"stopped (exit status {self.process.returncode})"
        return f"<Server {self.base_url} models={list(self.models)} pid={self.pid} {state}>"


_SIGKILL = getattr(signal, "SIGKILL", signal.SIGTERM)


def _exited(process: subprocess.Popen) -> bool:
    """Whether ``process`` has exited, without reaping it (POSIX ``waitid(WNOWAIT)``)."""
    if process.returncode is not None:
        return True
    if not hasattr(os, "waitid"):
        return process.poll() is not None
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _wait_exited(process: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _exited(process):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, sig)  # the server is the leader of its own process group
        elif process.poll() is None:
            process.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


@atexit.register
def stop_all() -> None:
    """Stop every server this Python process started (runs at exit, e.g. when a Jupyter kernel ends)."""
    for server in list(_RUNNING):
        server.stop()


def hub_index(checkpoints: Path) -> Path:
    """A hub-cache folder (``models--NAME/refs/main`` + ``snapshots/local/``, files linked to the checkpoints)
    listing the course's models, which the server is given as its ``HF_HUB_CACHE``.

    ``/v1/models`` lists the generative models of the hub cache. From transformers 5.24 it also lists the
    models loaded from a local folder, but up to 5.23 (Colab has 5.15) it lists the cache alone, so a
    server started on a folder would list nothing: this index makes both list exactly ``tiny-base`` and
    ``tiny-chat`` (and keeps a user's own hub cache out of the list). Written once, atomically.
    """
    index = checkpoints / "hub-index"
    if all((index / f"models--{name}" / "refs" / "main").is_file() for name in MODELS):
        return index
    tmp = Path(tempfile.mkdtemp(prefix=".hub-index-tmp-", dir=checkpoints))
    try:
        for name in MODELS:
            repo = tmp / f"models--{name}"
            snapshot = repo / "snapshots" / "local"
            snapshot.mkdir(parents=True)
            (repo / "refs").mkdir()
            (repo / "refs" / "main").write_text("local")
            for file in sorted((checkpoints / name).iterdir()):
                try:  # relative, so that the folder can move; a copy where links are not allowed
                    (snapshot / file.name).symlink_to(Path("..", "..", "..", "..", name, file.name))
                except OSError:
                    shutil.copy2(file, snapshot / file.name)
        try:
            tmp.rename(index)
        except OSError:  # another process wrote it meanwhile
            if not index.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return index


def _server_env(checkpoints: Path, validate: bool) -> dict[str, str]:
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[1])  # `utils` importable in the server process
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    env.update({
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
        # /v1/models lists the models of the hub cache: point it at an index of the course's models only
        "HF_HUB_CACHE": str(hub_index(checkpoints)),
        _PARENT_ENV: str(os.getpid()), _VALIDATE_ENV: "1" if validate else "0",
    })
    return env


def _command(port: int) -> list[str]:
    """The server's command line: ``transformers serve`` with the course's settings."""
    return [sys.executable, "-c", _CHILD, "serve", "--host", HOST, "--port", str(port), "--device", "cpu",
            # keep the models loaded (the default unloads them after 300 s idle)
            "--model-timeout", "-1", "--log-level", "warning"]


def _request(url: str, body: dict | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _fail(server: Server, message: str) -> ServeError:
    server.stop()
    log = server.log_tail()
    if "address already in use" in log.lower():
        message = _port_busy_message(server.port)
    return ServeError(f"{message} (exit status {server.process.returncode})\n"
                      f"--- last lines of the server log ({server.log_path}) ---\n{log}")


def _wait_healthy(server: Server, deadline: float, timeout: float) -> None:
    while True:
        if not server.running():
            raise _fail(server, "`transformers serve` exited before answering /health")
        try:
            status, _ = _request(server.url + "/health", timeout=2.0)
            if status == 200:
                return
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise _fail(server, f"`transformers serve` did not answer {server.url}/health within {timeout:.0f} s "
                                "(a loaded machine starts slowly: try start(timeout=...))")
        time.sleep(0.25)


def _load_models(server: Server, names: tuple[str, ...], deadline: float) -> None:
    for name in names:
        status, body = _request(server.url + "/load_model", {"model": name},
                                timeout=max(1.0, deadline - time.monotonic()))
        events = [json.loads(line[len("data: "):]) for line in body.decode(errors="replace").splitlines()
                  if line.startswith("data: ")]
        if status != 200 or not events or events[-1].get("status") != "ready":
            detail = events[-1].get("message") if events else body[:300]
            raise _fail(server, f"the server did not load {name!r}: {detail}")


def start(port: int | None = None, *, timeout: float = 180.0, verbose: bool = True,
          checkpoints: str | Path | None = None, reuse: bool = True, validate: bool = True) -> Server:
    """Start ``transformers serve`` with the course's models on 127.0.0.1 and wait until it answers.

    ``port``: ``None`` picks a free port; a busy port raises :class:`ServeError`. ``timeout``: seconds
    for start-up and loading both models. ``checkpoints``: a folder from :func:`prepare_checkpoints`
    (default: prepared under :func:`cache_root`). ``reuse``: a server this process already started (same
    port, or any port when ``port`` is None) is returned instead of starting a second one — re-running a
    notebook cell does not pile up servers. ``verbose`` prints the base URL and the model names.
    ``validate``: put :class:`RequestValidator` in front (4xx JSON errors for bad requests instead of the
    server's bare 500s; a request with the header ``x-utils-serve-raw: 1`` skips it either way).
    """
    require_serve_extra()
    if port is not None and port_in_use(port) and not (reuse and any(s.port == port for s in _RUNNING)):
        raise ServeError(_port_busy_message(port))
    checkpoints = Path(checkpoints) if checkpoints is not None else prepare_checkpoints()
    if reuse:
        for server in list(_RUNNING):
            if server.running() and server.checkpoints == checkpoints and port in (None, server.port):
                if verbose:
                    _announce(server, again=True)
                return server
    if port is None:
        port = free_port()
    elif port_in_use(port):
        raise ServeError(_port_busy_message(port))

    fd, log_name = tempfile.mkstemp(prefix=f"transformers-serve-{port}-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        process = subprocess.Popen(_command(port), cwd=checkpoints, env=_server_env(checkpoints, validate),
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = Server(process, port, Path(log_name), checkpoints)
    with _LOCK:
        _RUNNING.append(server)
    deadline = time.monotonic() + timeout
    try:
        _wait_healthy(server, deadline, timeout)
        _load_models(server, tuple(MODELS), deadline)
        status, body = _request(server.base_url + "/models")
        server.models = tuple(m["id"] for m in json.loads(body)["data"]) if status == 200 else ()
    except BaseException:
        server.stop()
        raise
    if set(server.models) != set(MODELS):
        raise _fail(server, f"/v1/models lists {list(server.models)}, expected {list(MODELS)}")
    if verbose:
        _announce(server)
    return server


def _announce(server: Server, again: bool = False) -> None:
    print(f"transformers serve {'is still running' if again else 'is ready'} at {server.base_url}")
    for name in server.models:
        print(f"  model={name!r}: {MODELS.get(name, '')}")


def example_call(server: Server) -> str:
    """Python code that calls ``server`` with the ``openai`` client (printed by ``python -m utils.serve``)."""
    return f'''from openai import OpenAI
client = OpenAI(base_url="{server.base_url}", api_key="{API_KEY}")
r = client.completions.create(model="{BASE_MODEL}", prompt="How are you?", max_tokens=12, temperature=0)
print(r.choices[0].text)
r = client.chat.completions.create(model="{CHAT_MODEL}", max_tokens=20, temperature=0,
        messages=[{{"role": "user", "content": "What is the capital of France?"}}])
print(r.choices[0].message.content)'''


# --------------------------------------------------------------------------- python -m utils.serve

def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # `kill PID` stops the server as cleanly as Ctrl-C

def main(argv: list[str] | None = None) -> int:
    """``python -m utils.serve [--port N] [--timeout S]``: serve until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m utils.serve",
        description="Serve the course's tiny base and chat models with `transformers serve` on "
                    f"{HOST} (OpenAI-compatible API), until Ctrl-C.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port on {HOST} (default {DEFAULT_PORT}; 0 = any free port)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for start-up")
    args = parser.parse_args(argv)
    try:
        print("preparing the checkpoints and starting `transformers serve` (~20 s) ...", flush=True)
        server = start(args.port or None, timeout=args.timeout, reuse=False)
    except (ImportError, ServeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"\nserver log: {server.log_path}\nexample (any OpenAI-compatible client works the same way):\n")
    print(example_call(server))
    print("\nCtrl-C stops the server.", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while server.running():
            time.sleep(0.5)
        server.stop()
        print(f"error: the server exited (status {server.process.returncode}):\n{server.log_tail()}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping the server ...", flush=True)
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
