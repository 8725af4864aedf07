"""The loopback hosted chat-completions API driven by the real ``openai`` client library, and the
openai backend's images mode against it (a hosted model shown the plan's frames as images, each
after its time)."""

import base64
import io

import pytest
from openai_api_server import OpenAIAPIServer
from videos import timecode_video

from vtg_data.grounding.prompts import get_prompt
from vtg_data.lvlm import GenerationParams, Request
from vtg_data.lvlm.openai_http import OpenAIBackend
from vtg_data.video import SamplingPolicy

openai = pytest.importorskip("openai")
POLICY = SamplingPolicy(fps=2.0, max_frames=16, min_pixels=56 * 56, max_pixels=112 * 112)


def png(width=600, height=400) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (0, 128, 0)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_the_real_client_gets_answers_errors_and_rate_limits_as_the_api_sends_them():
    with OpenAIAPIServer() as server:
        client = openai.OpenAI(api_key="sk-test", base_url=server.url, max_retries=0)
        content = [{"type": "text", "text": "0.0 s"}, {"type": "image_url", "image_url": {"url": png(), "detail": "high"}},
                   {"type": "text", "text": "what?"}]  # fmt: skip
        answer = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": content}], n=2, seed=1
        )
        assert len(answer.choices) == 2 and answer.choices[0].message.content.startswith("<time>")
        assert (
            answer.usage.prompt_tokens == 85 + 170 * 2 + 1 + 1
        )  # 600x400 (never enlarged): 2x1 tiles of 512
        assert server.seen[-1]["images"] == [{"label": "0.0 s", "size": [600, 400], "detail": "high"}]
        with pytest.raises(openai.BadRequestError, match="Unrecognized request argument supplied: top_k"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                           extra_body={"top_k": 5})  # fmt: skip
        with pytest.raises(openai.BadRequestError) as video:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": [
                {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}}]}])  # fmt: skip
        assert video.value.code == "invalid_value"
        server.faults["busy"] = ["429"]
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "busy"}]
            )
        assert (
            limited.value.response.headers["retry-after"] == "1"
            and limited.value.code == "rate_limit_exceeded"
        )
        wrong = openai.OpenAI(api_key="sk-wrong-key", base_url=server.url, max_retries=0)
        with pytest.raises(openai.AuthenticationError, match="Incorrect API key provided: sk-\\*\\*\\*key"):
            wrong.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return timecode_video(tmp_path_factory.mktemp("images") / "v.mp4", duration=6.0)


def req(uid, video, query):
    return Request(uid, get_prompt("tvg_r1_think").messages(query), str(video), POLICY)


def test_images_mode_sends_each_frame_after_its_time_with_usage_and_no_server_check(video):
    with OpenAIAPIServer(retry_after="0.1") as server:
        server.faults["busy"] = ["429"]
        client = OpenAIBackend("gpt-4o-mini", base_url=server.url, api_key="sk-test", video_mode="images",
                               api_fields="standard", image_detail="low", backoff=0.01)  # fmt: skip
        assert client.family == "other"
        answers = {r.uid: r for r in client.generate([req("a", video, "a door"), req("b", video, "busy")],
                                                     GenerationParams(n=2, temperature=1.0, max_tokens=32))}  # fmt: skip
    assert answers["a"].ok and answers["b"].ok and server.attempts["busy"] == 2  # retried after Retry-After
    images = server.seen[-1]["images"]
    assert len(images) == 12 and [i["label"] for i in images[:3]] == ["0.0 s", "0.5 s", "1.0 s"]
    assert all(i["detail"] == "low" for i in images)
    assert answers["a"].video["sent"] == "images" and answers["a"].video["frames"] == 12
    assert answers["a"].usage == {"prompt_tokens": answers["a"].prompt_tokens, "output_tokens": answers["a"].usage["output_tokens"],
                                  "thought_tokens": 0} and answers["a"].prompt_tokens > 12 * 85  # fmt: skip
    assert client.backend_notes()["server_check"]["unchecked_reason"].startswith("images mode")
    assert "top_k" not in server.seen[-1]["fields"]


def test_over_the_image_limit_frames_are_thinned_or_the_request_refused(video):
    with OpenAIAPIServer(max_images=5) as server:
        lowered = OpenAIBackend("gpt-4o", base_url=server.url, api_key="sk-test", video_mode="images",
                                api_fields="standard", max_images=5)  # fmt: skip
        (answer,) = lowered.generate([req("a", video, "q")], GenerationParams(max_tokens=16))
        assert answer.ok and answer.video["frames"] == 5 and answer.video["frames_planned"] == 12
        assert [i["label"] for i in server.seen[-1]["images"]] == [
            "0.0 s",
            "1.5 s",
            "3.0 s",
            "4.0 s",
            "5.5 s",
        ]
        refusing = OpenAIBackend("gpt-4o", base_url=server.url, api_key="sk-test", video_mode="images",
                                 api_fields="standard", max_images=5, over_image_limit="refuse")  # fmt: skip
        (refused,) = refusing.generate([req("b", video, "q")], GenerationParams(max_tokens=16))
        full_fields = OpenAIBackend(
            "gpt-4o", base_url=server.url, api_key="sk-test", video_mode="images", max_images=5
        )
        (unknown,) = full_fields.generate([req("c", video, "q")], GenerationParams(max_tokens=16))
    assert (
        refused.status == "failed"
        and "12 frames planned, over the provider's limit of 5 images" in refused.error
    )
    assert unknown.status == "failed" and "Unrecognized request argument supplied: min_p" in unknown.error
    with pytest.raises(ValueError, match="--video-mode images"):
        OpenAIBackend("gpt-4o", base_url="http://127.0.0.1:1/v1", video_mode="frames")
