"""Run the fake Anthropic API (``python -m fakeanthropic``) in a subprocess for tests.

    fake = FakeAnthropicProcess.start()          # or FakeAnthropicProcess(tps=0).start()
    client = anthropic.AsyncAnthropic(api_key="test", base_url=fake.url)
    fake.script([{"text": "Hello there"}], match="unique-token-123")
    ...
    fake.stop()

Control calls use urllib from the stdlib, so they work from sync and async tests alike
(they are quick local calls).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
LISTENING_PREFIX = "FAKE_ANTHROPIC_LISTENING "


class FakeAnthropicProcess:
    def __init__(self, *, tps: float | None = None, first_byte_delay_ms: float | None = None,
                 min_cache_tokens: int | None = None, host: str = "127.0.0.1", quiet: bool = True,
                 python: str | None = None, extra_args: list[str] | None = None) -> None:
        self.host = host
        self.tps = tps
        self.first_byte_delay_ms = first_byte_delay_ms
        self.min_cache_tokens = min_cache_tokens
        self.quiet = quiet
        self.python = python or sys.executable
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen[str] | None = None
        self.url: str = ""

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def start_new(cls, **kwargs: Any) -> "FakeAnthropicProcess":
        return cls(**kwargs).start()

    def start(self, timeout: float = 20.0) -> "FakeAnthropicProcess":
        cmd = [self.python, "-m", "fakeanthropic", "--host", self.host, "--port", "0"]
        if self.tps is not None:
            cmd += ["--tps", str(self.tps)]
        if self.first_byte_delay_ms is not None:
            cmd += ["--first-byte-delay-ms", str(self.first_byte_delay_ms)]
        if self.min_cache_tokens is not None:
            cmd += ["--min-cache-tokens", str(self.min_cache_tokens)]
        if self.quiet:
            cmd.append("--quiet")
        cmd += self.extra_args
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), env=env, stdout=subprocess.PIPE, text=True)

        # Read the announcement line in a thread so a hung child cannot block us forever.
        lines: queue.Queue[str | None] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None

        def reader() -> None:
            for line in stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=reader, daemon=True, name="fakeanthropic-stdout").start()
        try:
            while True:
                line = lines.get(timeout=timeout)
                if line is None:
                    raise RuntimeError(f"fakeanthropic exited early with code {self.proc.wait()}")
                if line.startswith(LISTENING_PREFIX):
                    self.url = line[len(LISTENING_PREFIX):].strip()
                    return self
        except queue.Empty:
            self.stop()
            raise RuntimeError("fakeanthropic did not announce its port in time") from None
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self, timeout: float = 10.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()
        return proc.returncode

    def __enter__(self) -> "FakeAnthropicProcess":
        return self if self.proc else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ control API

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def script(self, replies: list[dict] | dict, match: str | None = None) -> dict:
        """Queue scripted replies (see fakeanthropic.server for the Reply fields)."""
        if isinstance(replies, dict):
            replies = [replies]
        return self._call("POST", "/_fake/script", {"replies": replies, "match": match})

    def reset(self) -> dict:
        return self._call("POST", "/_fake/reset", {})

    def requests(self) -> list[dict]:
        """Logged /v1/messages requests, oldest first: {"body", "headers", "auth", ...}."""
        return self._call("GET", "/_fake/requests")

    def stats(self) -> dict:
        return self._call("GET", "/_fake/stats")
