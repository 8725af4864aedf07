"""The loopback Gemini API driven by the real ``google-genai`` client: what the double answers is
what the SDK parses, so the backend's tests against it test the wire protocol."""

import pytest
from gemini_server import GeminiServer
from videos import timecode_video

genai = pytest.importorskip("google.genai")
from google.genai import errors, types  # noqa: E402


@pytest.fixture()
def server():
    with GeminiServer(processing_polls=2) as running:
        yield running


def client(server, key="test-key"):
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=server.url))


def test_upload_poll_generate_with_thoughts_and_usage_then_delete(server, tmp_path):
    video = timecode_video(tmp_path / "v.mp4", duration=6.0)
    sdk = client(server)
    uploaded = sdk.files.upload(file=str(video), config={"mime_type": "video/mp4", "display_name": "v"})
    assert uploaded.state == types.FileState.PROCESSING
    with pytest.raises(errors.ClientError) as early:  # not ACTIVE yet
        sdk.models.generate_content(model="gemini-2.5-pro", contents=[types.Part(file_data=types.FileData(
            file_uri=uploaded.uri, mime_type="video/mp4")), "when?"])  # fmt: skip
    assert early.value.code == 400 and early.value.status == "FAILED_PRECONDITION"
    while sdk.files.get(name=uploaded.name).state != types.FileState.ACTIVE:
        pass
    part = types.Part(file_data=types.FileData(file_uri=uploaded.uri, mime_type="video/mp4"),
                      video_metadata=types.VideoMetadata(fps=2.0, start_offset="1s", end_offset="5s"))  # fmt: skip
    config = types.GenerateContentConfig(candidate_count=2, seed=4, max_output_tokens=64,
                                         thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=256),
                                         media_resolution=types.MediaResolution.MEDIA_RESOLUTION_LOW)  # fmt: skip
    answer = sdk.models.generate_content(model="gemini-2.5-pro", contents=[part, "when?"], config=config)
    assert len(answer.candidates) == 2 and answer.candidates[0].finish_reason == types.FinishReason.STOP
    thought, text = answer.candidates[0].content.parts
    assert thought.thought and "8 frames" in thought.text and text.text.startswith("<time>")
    assert answer.usage_metadata.prompt_token_count == 8 * 66 + 1  # 4 s at 2 fps, low resolution, "when?"
    assert answer.usage_metadata.thoughts_token_count > 0
    assert server.seen[-1]["videos"][0] | {"bytes": 0} == {"source": "file", "bytes": 0, "fps": 2.0, "start": 1.0,
                                                         "end": 5.0, "frames": 8, "seconds": pytest.approx(6.0, abs=0.05)}  # fmt: skip
    sdk.files.delete(name=uploaded.name)
    assert server.deleted == [uploaded.name.split("/")[1]] and server.files == {}


def test_errors_reach_the_sdk_as_the_service_sends_them(server, tmp_path):
    video = timecode_video(tmp_path / "v.mp4", duration=2.0)
    inline = types.Part(inline_data=types.Blob(data=video.read_bytes(), mime_type="video/mp4"))
    wrong, sdk = client(server, key="wrong"), client(server)  # kept: a collected Client closes its connection
    with pytest.raises(errors.ClientError) as bad_key:
        wrong.models.generate_content(model="m", contents=["hi"])
    assert bad_key.value.code == 400 and "API key not valid" in bad_key.value.message
    server.faults["busy"] = ["429", "503"]
    with pytest.raises(errors.ClientError) as limited:
        sdk.models.generate_content(model="m", contents=[inline, "busy"])
    assert limited.value.code == 429 and limited.value.status == "RESOURCE_EXHAUSTED"
    assert limited.value.details["error"]["details"][0]["retryDelay"] == "1s"
    with pytest.raises(errors.ServerError) as overloaded:
        sdk.models.generate_content(model="m", contents=[inline, "busy"])
    assert overloaded.value.code == 503
    server.faults["bad"] = ["safety", "prompt_blocked"]
    blocked = sdk.models.generate_content(model="m", contents=[inline, "bad"])
    assert (
        blocked.candidates[0].finish_reason == types.FinishReason.SAFETY
        and blocked.candidates[0].content is None
    )
    prompt = sdk.models.generate_content(model="m", contents=[inline, "bad"])
    assert prompt.prompt_feedback.block_reason == types.BlockedReason.SAFETY and not prompt.candidates
    with GeminiServer(max_request_bytes=1000) as small:
        tight = client(small)
        with pytest.raises(errors.ClientError, match="payload size exceeds"):
            tight.models.generate_content(model="m", contents=[inline, "x"])
