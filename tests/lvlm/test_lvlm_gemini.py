"""The gemini backend through the real google-genai SDK against the loopback Gemini API."""

import json

import pytest
from gemini_server import GeminiServer
from videos import timecode_video

from vtg_data.grounding.prompts import get_prompt
from vtg_data.lvlm import GenerationParams, Request, make_backend
from vtg_data.video import SamplingPolicy

pytest.importorskip("google.genai")
POLICY = SamplingPolicy(fps=2.0, max_frames=16)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gemini")
    return {"short": timecode_video(folder / "short.mp4", duration=4.0),
            "long": timecode_video(folder / "long.mp4", duration=12.0)}  # fmt: skip


def req(uid, video, query):
    return Request(uid, get_prompt("tvg_r1_think").messages(query), str(video), POLICY)


def backend(server, **options):
    options = {
        "api_key": "test-key",
        "base_url": server.url,
        "backoff": 0.01,
        "poll_seconds": 0.01,
        **options,
    }
    return make_backend("gemini", "gemini-2.5-pro", **options)


def test_inline_video_k_candidates_thoughts_and_usage(videos):
    with GeminiServer() as server:
        client = backend(server, media_resolution="low", thinking_budget=512)
        (answer,) = client.generate([req("a", videos["short"], "a door opens")],
                                    GenerationParams(n=3, temperature=1.0, max_tokens=200, seed=7))  # fmt: skip
    assert answer.ok and len(answer.texts) == 3 and len(set(answer.texts)) == 3
    assert all(t.startswith("<think>I watched 8 frames") and "</think>\n<time>" in t for t in answer.texts)
    seen = server.seen[-1]
    assert seen["videos"][0]["source"] == "inline" and seen["videos"][0]["fps"] == 2.0
    config = seen["config"]
    assert config["candidateCount"] == 3 and config["seed"] == 7 and config["temperature"] == 1.0
    assert config["thinkingConfig"] == {"include_thoughts": True, "thinking_budget": 512}
    assert seen["media_resolution"] == "MEDIA_RESOLUTION_LOW"
    assert answer.usage["prompt_tokens"] > 8 * 66  # 8 frames at low resolution, and the prompt's text
    assert answer.usage["output_tokens"] > 0 and answer.usage["thought_tokens"] > 0
    assert answer.video == {
        "sent": "inline",
        "fps_asked": 2.0,
        "frames_expected": 8,
        "bytes": videos["short"].stat().st_size,
    }
    assert client.backend_notes()["videos"] == {"inline": 1}


def test_a_long_video_is_capped_at_max_frames_by_a_lower_rate(videos):
    with GeminiServer() as server:
        (answer,) = backend(server).generate([req("a", videos["long"], "q")], GenerationParams(max_tokens=64))
    assert answer.ok and answer.video["fps_asked"] == pytest.approx(16 / 12.0, abs=1e-3)
    assert server.seen[-1]["videos"][0]["frames"] <= 16


def test_large_videos_go_through_the_files_api_once_reused_and_cleaned(videos, tmp_path):
    cache = tmp_path / "uploads.json"
    with GeminiServer(processing_polls=3) as server:
        server.upload_faults.append("drop")  # the first transfer breaks halfway
        client = backend(server, inline_mib=0.001, upload_cache=cache)
        answers = list(client.generate([req(f"q{i}", videos["short"], f"q{i}") for i in range(3)],
                                       GenerationParams(max_tokens=64)))  # fmt: skip
        assert all(a.ok and a.video["sent"] == "file" for a in answers)
        assert server.uploads_started == 2 and len(server.files) == 1  # one retry after the drop, one file
        assert all(v["source"] == "file" for s in server.seen for v in s["videos"])
        assert client.backend_notes()["videos"] == {"upload_retried": 1, "uploaded": 1}
        # a later run (another backend) reuses the upload recorded in the cache
        again = backend(server, inline_mib=0.001, upload_cache=cache, keep_uploads=True)
        (answer,) = again.generate([req("z", videos["short"], "z")], GenerationParams(max_tokens=64))
        assert answer.ok and again.backend_notes()["videos"] == {"upload_reused": 1}
        again.close()
        assert len(server.files) == 1  # kept
        client.close()
        assert server.files == {} and json.loads(cache.read_text()) == {}


def test_faults_retried_after_the_services_delay_and_blocked_answers_are_named_failures(videos):
    with GeminiServer(retry_delay="0.2s") as server:
        server.faults |= {"busy": ["429", "503"], "unsafe": ["safety"], "quoted": ["recitation"],
                          "rude": ["prompt_blocked"], "long": ["max_tokens"]}  # fmt: skip
        queries = ["busy", "unsafe", "quoted", "rude", "long", "fine"]
        answers = {a.uid: a for a in backend(server).generate([req(q, videos["short"], q) for q in queries],
                                                              GenerationParams(max_tokens=64))}  # fmt: skip
    assert answers["busy"].ok and server.attempts["busy"] == 3
    assert answers["unsafe"].error == "gemini: answer blocked (SAFETY)"
    assert answers["quoted"].error == "gemini: answer blocked (RECITATION)"
    assert answers["rude"].error == "gemini: prompt blocked (SAFETY)"
    assert answers["long"].error == "gemini: answer cut at the output token limit (MAX_TOKENS)"
    assert answers["fine"].ok


def test_repeat_mode_seeds_each_call_and_the_key_never_shows(videos, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with GeminiServer(api_key="the-real-key") as server:
        with pytest.raises(ValueError, match="GEMINI_API_KEY"):
            make_backend("gemini", "gemini-2.5-pro", base_url=server.url)
        monkeypatch.setenv("GEMINI_API_KEY", "the-real-key")
        client = make_backend("gemini", "gemini-2.5-pro", base_url=server.url, n_mode="repeat", backoff=0.01)
        (answer,) = client.generate(
            [req("a", videos["short"], "q")], GenerationParams(n=3, temperature=1.0, seed=4)
        )
        assert answer.ok and len(answer.texts) == 3
        assert [s["config"]["seed"] for s in server.seen] == [4, 5, 6]
        wrong = make_backend(
            "gemini", "gemini-2.5-pro", api_key="sk-wrong-key", base_url=server.url, backoff=0.01
        )
        (refused,) = wrong.generate([req("b", videos["short"], "q")], GenerationParams())
    assert (
        refused.status == "failed"
        and "API key not valid" in refused.error
        and "sk-wrong-key" not in refused.error
    )
    assert "the-real-key" not in json.dumps(client.backend_notes())


def test_eval_and_difficulty_through_gemini_record_tokens_and_cost(synthetic_root, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vtg_data.cli import app

    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    table = str(synthetic_root / "normalized/synthetic/test.parquet")
    with GeminiServer() as server:
        common = ["--model", "gemini-2.5-flash", "--backend", "gemini", "--base-url", server.url, "--data", table,
                  "--fps", "1", "--max-frames", "8", "--max-tokens", "64"]  # fmt: skip
        evaluated = CliRunner().invoke(app, ["eval", *common, "--out", str(tmp_path / "eval")])
        scored = CliRunner().invoke(app, ["score-difficulty", *common, "--out", str(tmp_path / "difficulty"), "-k", "2",
                                          "--temperature", "1.0", "--no-greedy"])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    assert scored.exit_code == 0, scored.output
    card = json.loads((tmp_path / "eval/metrics.json").read_text())["card"]
    usage = card["usage"]
    assert usage["calls"] == json.loads((tmp_path / "eval/metrics.json").read_text())["counts"]["scored"]
    assert usage["price"]["input_per_million"] == 0.30
    assert usage["cost_usd"] == pytest.approx(
        (usage["prompt_tokens"] * 0.30 + (usage["output_tokens"] + usage["thought_tokens"]) * 2.50) / 1e6,
        abs=1e-6,
    )
    difficulty = json.loads((tmp_path / "difficulty/manifest.json").read_text())
    assert (
        difficulty["usage"]["calls"] == difficulty["counts"]["scored"] and difficulty["usage"]["cost_usd"] > 0
    )
