"""The OpenAI-compatible backend against a loopback server that behaves as ``vllm serve`` does by
default (tests/support/vllm_server.py), running the tiny model that carries Qwen2.5-VL-7B-Instruct's
generation config."""

import re
from pathlib import Path

import pytest
from videos import lavfi_video, timecode_video
from vllm_server import VLLMServer

from vtg_data.grounding.parse import parse_answer
from vtg_data.grounding.prompts import get_prompt
from vtg_data.lvlm import GenerationParams, Request
from vtg_data.lvlm.openai_http import OpenAIBackend, ServerMismatch
from vtg_data.video import SamplingPolicy, stream_info

pytest.importorskip("httpx")

POLICY = SamplingPolicy(fps=2.0, max_frames=8, min_pixels=28 * 28, max_pixels=56 * 56)
LONG = SamplingPolicy(fps=2.0, max_frames=128, min_pixels=28 * 28, max_pixels=28 * 56)
RECOMMENDED = """vllm serve Qwen/Qwen2.5-VL-7B-Instruct --media-io-kwargs '{"video": {"num_frames": -1}}' --trust-request-mm-kwargs"""
TRUSTING = "vllm serve Qwen/Qwen2.5-VL-7B-Instruct --trust-request-mm-kwargs"  # vLLM's defaults otherwise
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return timecode_video(tmp_path_factory.mktemp("oa") / "v.mp4", duration=3.0)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """28.7 s at 10 fps: 287 frames, more than vLLM's 32."""
    folder = tmp_path_factory.mktemp("oalong")
    return lavfi_video(folder / "long.mp4", "testsrc2=size=112x56:rate=10:duration=28.7")


@pytest.fixture()
def server(tiny_model):
    with VLLMServer.launched(RECOMMENDED, tiny_model, slow_seconds=6.0) as running:
        yield running


def backend(server, **options):
    options = {"timeout": 3.0, "retries": 3, "backoff": 0.05, **options}
    return OpenAIBackend("qwen2.5-vl", base_url=server.url, api_key="sk-secret", **options)


def req(uid, video, query, policy=POLICY):
    return Request(uid, get_prompt("tvg_r1_think").messages(query), str(video), policy)


def told_length(record: dict) -> float:
    """The video length the model was given to understand: frames seen over the fps it was told."""
    return record["frames_seen"] / record["fps_told"]


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


def test_every_sampling_field_is_sent_and_the_plans_frames_go_as_one_video(server, video):
    params = GenerationParams(n=2, temperature=0.7, top_p=0.9, max_tokens=4, seed=5)
    (response,) = backend(server).generate([req("a", video, "hello")], params)
    body = [b for b in server.bodies if b["max_tokens"] == 4][-1]
    # nothing left for the server to fill from the checkpoint's generation_config.json
    assert {k: body[k] for k in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed", "n")} == {
        "temperature": 0.7, "top_p": 0.9, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0, "seed": 5, "n": 2}  # fmt: skip
    assert server.seen[-1]["sampling"] == {"temperature": 0.7, "top_p": 0.9, "top_k": 0, "min_p": 0.0,
                                           "repetition_penalty": 1.0}  # fmt: skip
    user = [m for m in body["messages"] if m["role"] == "user"][0]["content"]
    url = user[0]["video_url"]["url"]
    assert url.startswith("data:video/jpeg;base64,") and url.count(",") == response.video["frames"]
    assert isinstance(body["messages"][0]["content"], str)  # the system prompt as plain text
    # the model is told the rate the frames were taken at, and shown them at their size
    assert body["mm_processor_kwargs"]["fps"] == pytest.approx(response.video["fps"])
    assert server.seen[-1]["frames_seen"] == response.video["frames"]
    assert server.seen[-1]["size"] == [response.video["width"], response.video["height"]]
    assert response.video["first"] == 0.0 and response.video["sent"] == "frames"
    assert server.ignored == []  # every field sent is one vLLM knows


def test_whole_file_modes_leave_the_frames_to_the_server(server, video, tmp_path):
    list(
        backend(server, video_mode="file_url").generate(
            [req("b", video, "hi")], GenerationParams(max_tokens=4)
        )
    )
    assert server.bodies[-1]["messages"][1]["content"][0]["video_url"]["url"] == video.resolve().as_uri()
    assert server.attempts["hi"] == 1  # refused: the server was not launched with --allowed-local-media-path
    (response,) = backend(server, video_mode="data_url").generate(
        [req("c", video, "yo")], GenerationParams(max_tokens=4)
    )
    assert response.ok and response.video == {"sent": "file", "fps_asked": 2.0, "max_frames_asked": 8}
    assert server.bodies[-1]["media_io_kwargs"] == {"video": {"fps": 2.0, "num_frames": 8}}
    assert server.bodies[-1]["mm_processor_kwargs"] == {"do_sample_frames": False}
    assert told_length(server.seen[-1]) == pytest.approx(3.0, abs=0.1)


def test_k_rollouts_differ_against_a_server_filling_the_checkpoints_generation_config(tiny_model, video):
    params = GenerationParams(n=8, temperature=1.0, max_tokens=12, seed=3)
    with VLLMServer.launched(TRUSTING, tiny_model) as server:
        assert server.defaults["top_k"] == 1  # the tiny model ships Qwen2.5-VL-7B-Instruct's config
        (ours,) = backend(server, timeout=60).generate([req("a", video, "k rollouts")], params)
        # a client sending only OpenAI's own fields gets the checkpoint's top_k 1: greedy, one answer
        (plain,) = backend(server, timeout=60, api_fields="standard", check_server=False).generate(
            [req("a", video, "k rollouts")], params
        )
    assert len(set(ours.texts)) == 8
    assert len(set(plain.texts)) == 1


def test_repeat_mode_sends_n_single_requests_with_vllms_child_seeds(server, video):
    (response,) = backend(server, n_mode="repeat").generate(
        [req("a", video, "rep")], GenerationParams(n=3, temperature=1.0, max_tokens=6, seed=7)
    )
    assert response.ok and len(response.texts) == 3 and server.attempts["rep"] == 3
    assert [b["seed"] for b in server.bodies if b["max_tokens"] == 6] == [7, 8, 9]
    # vLLM's n children are seeded seed + i: the same texts as one request with n = 3
    (together,) = backend(server).generate(
        [req("a", video, "rep")], GenerationParams(n=3, temperature=1.0, max_tokens=6, seed=7)
    )
    assert together.texts == response.texts


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
    client = backend(server, concurrency=1, check_server=False)  # no text-only twin taking a slot
    order = [r.uid for r in client.generate(requests, GenerationParams(max_tokens=4))]
    # with one slot, the two others are answered while the first waits out its 2 s
    assert order == ["qnext", "qlast", "qwaits"]
    assert server.attempts["qwaits"] == 2


def test_the_model_is_told_the_true_length_of_a_long_video(server, long_video):
    duration = stream_info(long_video).duration
    (response,) = backend(server, timeout=60).generate(
        [req("long", long_video, "when", LONG)], GenerationParams(max_tokens=4)
    )
    assert response.ok and response.video["frames"] > 32
    shown = server.seen[-1]
    assert shown["frames_seen"] == response.video["frames"]
    assert told_length(shown) == pytest.approx(duration, abs=1 / 10)  # within one native frame
    assert response.video["last"] < duration
    checks = backend(server).backend_notes()["server_check"]
    assert checks == {"exact_checks": [], "unchecked_reason": None}


def test_whole_file_upload_to_a_server_reading_launch_kwargs_shows_32_frames_at_their_times(
    tiny_model, long_video
):
    """A server that takes media kwargs from its launch only keeps its loader's 32 frames (what the
    frames mode avoids); the processor times them by the loader's metadata, not by a rate asked."""
    with VLLMServer.launched(TRUSTING, tiny_model, request_media_io=False) as server:
        (response,) = backend(server, timeout=60, video_mode="data_url").generate(
            [req("long", long_video, "when", LONG)], GenerationParams(max_tokens=4)
        )
    assert response.ok and server.seen[-1]["frames_seen"] == 32
    duration = stream_info(long_video).duration
    assert told_length(server.seen[-1]) == pytest.approx(duration, abs=0.1)  # 32 frames over 28.7 s


def test_a_server_that_drops_frames_stops_the_run_with_the_launch_flag(tiny_model, long_video, video):
    with VLLMServer.launched(TRUSTING, tiny_model, request_media_io=False) as server:
        client = backend(server, timeout=60)
        (short,) = client.generate([req("short", video, "fine")], GenerationParams(max_tokens=4))
        assert short.ok  # 6 frames: nothing to drop
        received = []
        with pytest.raises(ServerMismatch) as caught:
            list(client.generate([req("long", long_video, "when", LONG)], GenerationParams(max_tokens=4),
                                 received.append))  # fmt: skip
    message = str(caught.value)
    assert "long" in message and "kept about 32 frames" in message
    assert """--media-io-kwargs '{"video": {"num_frames": -1}}'""" in message
    assert received == []  # the wrong answer is not handed on as a result
    verdicts = client.backend_notes()["server_check"]["exact_checks"]
    assert [v["ok"] for v in verdicts] == [True, False]


def test_a_server_refusing_request_kwargs_stops_the_run_at_once_with_the_flag(tiny_model, video, tmp_path):
    """vLLM 0.32 as it ships refuses every request carrying mm_processor_kwargs: the client stops
    at the first answer and names the launch flag, instead of failing row by row."""
    with VLLMServer.launched("vllm serve Qwen/Qwen2.5-VL-7B-Instruct", tiny_model) as server:
        requests = [req(f"q{i}", video, f"q{i}") for i in range(6)]
        client = backend(server, concurrency=1)
        received = []
        with pytest.raises(ServerMismatch, match="--trust-request-mm-kwargs") as caught:
            list(client.generate(requests, GenerationParams(max_tokens=4), received.append))
        assert sum(server.attempts.values()) <= 2  # stopped at once, not six refusals
    assert "mm_processor_kwargs are disabled" in str(caught.value)
    assert received == []


def test_a_server_that_resizes_frames_stops_the_run(tiny_model, video):
    launch = """vllm serve Qwen/Qwen2.5-VL-7B-Instruct --mm-processor-kwargs '{"min_pixels": 50176}'"""
    with VLLMServer.launched(launch, tiny_model) as server:
        client = backend(server, timeout=60, api_fields="standard")  # sends no pixel bounds of its own
        with pytest.raises(ServerMismatch, match="enlarged the frames"):
            list(client.generate([req("a", video, "big")], GenerationParams(max_tokens=4)))


def test_thinking_split_off_by_a_reasoning_parser_is_kept(tiny_model, video):
    def thinker(messages, record, n):
        return ["<think>\nThe door opens at one second.\n</think>\n\n<time>[1.0, 2.0]</time>"] * n

    launch = RECOMMENDED + " --reasoning-parser qwen3"
    with VLLMServer.launched(launch, tiny_model, responder=thinker) as server:
        (response,) = backend(server).generate(
            [req("a", video, "door")], GenerationParams(n=2, max_tokens=64)
        )
    assert response.texts[0] == "<think>The door opens at one second.</think>\n<time>[1.0, 2.0]</time>"
    parsed = parse_answer(response.texts[0], 3.0, "strict")
    assert parsed.ok and parsed.windows == [(1.0, 2.0)]


def serving_lines() -> list[str]:
    """The ``vllm serve`` launch lines of README's Serving section."""
    text = README.read_text()
    section = text[text.index("### Serving") :]
    section = section[: section.index("\n### ", 4)]
    joined = re.sub(r"\\\n\s*", " ", section)
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("vllm serve")]


def test_readmes_launch_lines_show_the_model_every_frame_at_its_true_time(tiny_model, tmp_path, long_video):
    from vtg_data.lvlm.tiny import make_tiny_model

    lines = serving_lines()
    assert len(lines) >= 2 and any("Qwen3-VL" in line for line in lines)
    duration = stream_info(long_video).duration
    qwen3 = None
    for line in lines:
        model_dir = tiny_model
        if "Qwen3-VL" in line:
            qwen3 = qwen3 or make_tiny_model(tmp_path / "q3", family="qwen3-vl")
            model_dir = qwen3
        name = line.split()[2]
        with VLLMServer.launched(line, model_dir) as server:
            client = OpenAIBackend(name, base_url=server.url, timeout=60)
            (response,) = client.generate(
                [req("long", long_video, "when", LONG)], GenerationParams(n=4, temperature=1.0, max_tokens=8)
            )
            assert response.ok, (line, response.error)
            assert told_length(server.seen[-1]) == pytest.approx(duration, abs=1 / 10), line
            assert len(set(response.texts)) == 4, line
            assert [v["ok"] for v in client.backend_notes()["server_check"]["exact_checks"]] == [True], line


def test_the_stand_in_ignores_unknown_fields_and_seeds_children_as_vllm_does(server):
    """The double itself: an unknown field is answered, not refused (vLLM logs and ignores it);
    top_k below -1 is refused as vLLM's SamplingParams refuses it."""
    import httpx

    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3, "n": 2,
            "temperature": 1.0, "seed": 4, "made_up_field": True}  # fmt: skip
    answer = httpx.post(server.url + "/chat/completions", json=body, timeout=30).json()
    assert len(answer["choices"]) == 2 and answer["usage"]["prompt_tokens"] > 0
    assert server.ignored[-1] == ["made_up_field"] and server.seen[-1]["seed"] == 4
    refused = httpx.post(server.url + "/chat/completions", json=body | {"top_k": -2}, timeout=30)
    assert refused.status_code == 400 and "top_k must be 0 (disable), or at least 1" in refused.text
