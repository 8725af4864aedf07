"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 running the tiny model."""

import pytest
from openai_server import ModelServer
from videos import timecode_video

from vtg_data.grounding.prompts import get_prompt
from vtg_data.lvlm import GenerationParams, Request
from vtg_data.lvlm.openai_http import OpenAIBackend
from vtg_data.video import SamplingPolicy

pytest.importorskip("httpx")

POLICY = SamplingPolicy(fps=2.0, max_frames=8, min_pixels=28 * 28, max_pixels=56 * 56)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return timecode_video(tmp_path_factory.mktemp("oa") / "v.mp4", duration=3.0)


@pytest.fixture()
def server(hf_backend):
    with ModelServer(hf_backend, slow_seconds=6.0) as running:
        yield running


def backend(server, **options):
    return OpenAIBackend(
        "tiny", base_url=server.url, api_key="sk-secret", timeout=3.0, retries=3, backoff=0.05, **options
    )


def req(uid, video, query):
    return Request(uid, get_prompt("tvg_r1_think").messages(query), str(video), POLICY)


def test_faults_are_retried_and_a_hopeless_request_is_recorded_failed(server, video):
    faults = {
        "q500": ["500", "500"],
        "qtimeout": ["timeout"],
        "qmalformed": ["malformed"],
        "qdrop": ["drop"],
        "q429": ["429"],
    }
    server.faults.update({k: list(v) for k, v in faults.items()})
    server.broken.add("qbroken")
    requests = [req(q, video, q) for q in [*faults, "qbroken", "qfine"]]
    collected = []
    responses = {
        r.uid: r
        for r in backend(server).generate(requests, GenerationParams(n=2, max_tokens=6), collected.append)
    }
    assert len(responses) == len(requests) == len(collected)
    for query, injected in faults.items():
        assert responses[query].ok, responses[query].error
        assert len(responses[query].texts) == 2
        # every injected fault costs one attempt (a slow machine may add a timeout of its own)
        assert server.attempts[query] >= len(injected) + 1
    assert responses["qfine"].ok
    failed = responses["qbroken"]
    assert failed.status == "failed" and "gave up after 4 attempts: HTTP 500" in failed.error
    assert "sk-secret" not in failed.error


def test_request_body_carries_the_video_and_timing_hints(server, video):
    list(backend(server).generate([req("a", video, "hello")], GenerationParams(max_tokens=4)))
    body = server.bodies[-1]
    user = [m for m in body["messages"] if m["role"] == "user"][0]["content"]
    assert user[0]["type"] == "video_url" and user[0]["video_url"]["url"].startswith("data:video/mp4;base64,")
    assert body["mm_processor_kwargs"]["fps"] == 2.0 and body["media_io_kwargs"] == {"video": {"fps": 2.0}}
    assert isinstance(body["messages"][0]["content"], str)  # the system prompt as plain text
    list(
        backend(server, video_mode="file_url").generate(
            [req("b", video, "hello")], GenerationParams(max_tokens=4)
        )
    )
    assert server.bodies[-1]["messages"][1]["content"][0]["video_url"]["url"] == video.resolve().as_uri()


def test_repeat_mode_sends_n_single_requests(server, video):
    (response,) = backend(server, n_mode="repeat").generate(
        [req("a", video, "rep")], GenerationParams(n=3, max_tokens=4)
    )
    assert response.ok and len(response.texts) == 3 and server.attempts["rep"] == 3
    assert [b["seed"] for b in server.bodies[-3:]] == [0, 1, 2]


def test_client_errors_are_not_retried(server, video):
    server.faults["bad"] = ["400", "400", "400"]
    (response,) = backend(server).generate([req("a", video, "bad")], GenerationParams(max_tokens=4))
    assert response.status == "failed" and "HTTP 400" in response.error and "unknown field" in response.error
    assert server.attempts["bad"] == 1
    wrong_route = OpenAIBackend("tiny", base_url=server.url.replace("/v1", "/nope"), retries=3, backoff=0.01)
    (response,) = wrong_route.generate([req("b", video, "x")], GenerationParams(max_tokens=4))
    assert response.status == "failed" and "HTTP 404" in response.error


def test_a_request_backing_off_gives_its_slot_to_the_next(server, video):
    server.faults["qwaits"] = ["429long"]  # Retry-After: 2 s
    requests = [req(q, video, q) for q in ("qwaits", "qnext", "qlast")]
    order = [r.uid for r in backend(server, concurrency=1).generate(requests, GenerationParams(max_tokens=4))]
    # with one slot, the two others are answered while the first waits out its 2 s
    assert order == ["qnext", "qlast", "qwaits"]
    assert server.attempts["qwaits"] == 2
