"""The promotion router's rules over HTTP, against fake upstreams (tests/serving/fakes.py): no vLLM.

Every rule of docs/SERVING.md: shadow answers from base and logs both; canary keys stay put; a mode flip applies to
the next call and is recorded; SSD down falls back to base (logged), base down is a 503 and never SSD; bad requests
get OpenAI-style 4xx bodies; streams are relayed tagged; every call leaves one record.
"""
import json

import httpx
import openai
import pytest

from megatron_ssd.serving.routing import key_digest, route
from megatron_ssd.serving.telemetry import CHAT

from fakes import ADMIN, MODEL, UPSTREAM_KEY, FakeUpstream, RouterThread, closed_port_url


@pytest.fixture
def fakes():
    ups = {"base": FakeUpstream("base"), "ssd": FakeUpstream("ssd")}
    yield ups
    for u in ups.values():
        u.stop()


@pytest.fixture
def router(tmp_path, fakes):
    made = []

    def make(mode="shadow", share=0.05, upstreams=None, **config):
        r = RouterThread(tmp_path / f"serve{len(made)}", upstreams or {n: u.url for n, u in fakes.items()},
                         mode=mode, share=share, **config)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


def client(r, **kw):
    return openai.OpenAI(base_url=r.url + "/v1", api_key=kw.pop("api_key", "unused"), max_retries=0, **kw)


def chat(c, content, **kw):
    raw = c.chat.completions.with_raw_response.create(model=MODEL, messages=[{"role": "user", "content": content}],
                                                      **kw)
    return raw.headers, raw.parse()


def test_shadow_answers_from_base_and_logs_both_answers(router, fakes):
    r = router("shadow")
    headers, out = chat(client(r), "hello there", metadata={"ssd_problem_id": "p1"})
    assert out.choices[0].message.content == "base: hello there"
    assert headers["x-ssd-checkpoint"] == "base" and out.model_extra["ssd_checkpoint"] == "base"
    (rec,) = r.records(wait_for=1)
    assert rec["checkpoint"] == "base" and rec["mode"] == "shadow" and rec["status"] == 200
    assert rec["outputs"][0]["text"] == "base: hello there" and rec["finish_reason"] == "stop"
    assert rec["prompt_tokens"] == 2 and rec["completion_tokens"] == 3 and rec["problem_id"] == "p1"
    assert rec["shadow"]["checkpoint"] == "ssd" and rec["shadow"]["outputs"][0]["text"] == "ssd: hello there"
    assert rec["key_source"] == "request_id" and rec["request_id"] == headers["x-request-id"]
    # both servers got the same body, without the router's metadata, with the internal key
    assert fakes["ssd"].bodies[-1] == fakes["base"].bodies[-1] and "metadata" not in fakes["base"].bodies[-1]
    assert fakes["ssd"].auth[-1] == fakes["base"].auth[-1] == f"Bearer {UPSTREAM_KEY}"


def test_completions_endpoint_and_models(router):
    r = router("ssd")
    c = client(r)
    raw = c.completions.with_raw_response.create(model=MODEL, prompt="def f(", max_tokens=4)
    assert raw.headers["x-ssd-checkpoint"] == "ssd" and raw.parse().choices[0].text == "ssd: def f("
    assert [m.id for m in c.models.list()] == [MODEL]
    (rec,) = r.records(wait_for=1)
    assert rec["endpoint"] == "completions" and rec["checkpoint"] == "ssd" and rec["shadow"] is None


def test_canary_keeps_each_user_on_one_checkpoint_and_follows_the_hash(router):
    r = router("canary", share=0.5)
    c = client(r)
    seen = {}
    for user in [f"user-{i}" for i in range(24)]:
        for _ in range(2):
            headers, _ = chat(c, "hi", user=user)
            seen.setdefault(user, set()).add(headers["x-ssd-checkpoint"])
    assert all(len(v) == 1 for v in seen.values())  # stable per key
    expected = {u: route("canary", 0.5, key_digest(u, "test-salt")).primary for u in seen}
    assert {u: next(iter(v)) for u, v in seen.items()} == expected
    assert set(expected.values()) == {"base", "ssd"}
    # the header is a key too, when the body has no user
    h1, _ = chat(c, "hi", extra_headers={"X-SSD-Routing-Key": "session-7"})
    h2, _ = chat(c, "hi", extra_headers={"X-SSD-Routing-Key": "session-7"})
    assert h1["x-ssd-checkpoint"] == h2["x-ssd-checkpoint"]
    rows = r.records(wait_for=50)
    assert {row["key_source"] for row in rows} == {"user", "header"} and all(row["share"] == 0.5 for row in rows)


def test_a_mode_flip_applies_to_the_next_call_and_is_recorded(router):
    r = router("ssd")
    c = client(r)
    assert chat(c, "a")[0]["x-ssd-checkpoint"] == "ssd"
    denied = httpx.post(f"{r.url}/admin/mode", json={"mode": "base"})
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_admin_token"
    bad = httpx.post(f"{r.url}/admin/mode", json={"mode": "sideways"}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert bad.status_code == 400 and "choose one of" in bad.json()["error"]["message"]
    ok = httpx.post(f"{r.url}/admin/mode", json={"mode": "base", "reason": "rollback drill"},
                    headers={"Authorization": f"Bearer {ADMIN}"})
    assert ok.status_code == 200 and ok.json()["previous"]["mode"] == "ssd"
    assert chat(c, "b")[0]["x-ssd-checkpoint"] == "base"
    assert httpx.get(f"{r.url}/admin/mode", headers={"Authorization": f"Bearer {ADMIN}"}).json()["mode"] == "base"
    (event,) = [e for e in r.events() if e["event"] == "mode"]
    assert event["mode"] == "base" and event["previous"]["mode"] == "ssd" and event["reason"] == "rollback drill"
    assert [row["mode"] for row in r.records(wait_for=2)] == ["ssd", "base"]


@pytest.mark.parametrize("how", ["refused", "500", "known down"])
def test_ssd_unavailable_falls_back_to_base_and_says_so(router, fakes, how):
    ups = {"base": fakes["base"].url, "ssd": closed_port_url() if how == "refused" else fakes["ssd"].url}
    r = router("ssd", upstreams=ups)
    if how == "known down":
        r.state.mark_down("ssd", "its vLLM server exited with status -9")
    headers, out = chat(client(r), "FAIL500:ssd" if how == "500" else "hi")
    assert headers["x-ssd-checkpoint"] == "base" and headers["x-ssd-fallback"] == "ssd unavailable"
    (rec,) = r.records(wait_for=1)
    assert rec["routed"] == "ssd" and rec["checkpoint"] == "base" and rec["fallback"]["from"] == "ssd"
    assert {"refused": "ConnectError", "500": "HTTP 500", "known down": "server down"}[how] in rec["fallback"]["reason"]


def test_base_down_is_a_503_and_never_goes_to_ssd(router, fakes):
    r = router("shadow", upstreams={"base": closed_port_url(), "ssd": fakes["ssd"].url})
    with pytest.raises(openai.InternalServerError) as err:
        chat(client(r), "hi")
    assert err.value.status_code == 503 and err.value.body["code"] == "checkpoint_unavailable"
    rec = r.records(wait_for=1)[0]
    assert rec["status"] == 503 and rec["checkpoint"] is None
    assert r.records(wait_for=1)[0]["shadow"]["outputs"][0]["text"] == "ssd: hi"  # logged, never returned


def test_bad_requests_get_openai_style_4xx(router):
    r = router("shadow", api_key="secret")
    url = f"{r.url}/v1/chat/completions"
    auth = {"Authorization": "Bearer secret"}
    cases = {
        "malformed": httpx.post(url, content=b"{not json", headers={**auth, "Content-Type": "application/json"}),
        "array": httpx.post(url, json=[1, 2], headers=auth),
        "unknown model": httpx.post(url, json={"model": "gpt-9", "messages": []}, headers=auth),
        "no key": httpx.post(url, json={"model": MODEL, "messages": []}),
        "unknown path": httpx.post(f"{r.url}/v1/embeddings", json={}, headers=auth),
        "too long": httpx.post(url, json={"model": MODEL, "messages": [{"role": "user", "content": "TOOLONG"}]},
                               headers=auth),
    }
    status = {k: v.status_code for k, v in cases.items()}
    assert status == {"malformed": 400, "array": 400, "unknown model": 404, "no key": 401, "unknown path": 404,
                      "too long": 400}
    for name, resp in cases.items():
        err = resp.json()["error"]
        assert err["message"] and "Traceback" not in resp.text, name
    assert cases["unknown model"].json()["error"]["code"] == "model_not_found"
    assert cases["too long"].headers["x-ssd-checkpoint"] == "base"  # vLLM's own 400, passed through
    with pytest.raises(openai.AuthenticationError):
        chat(client(r, api_key="wrong"), "hi")
    with pytest.raises(openai.NotFoundError):
        client(r, api_key="secret").chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    rows = r.records(wait_for=7)
    assert sorted(row["status"] for row in rows if row["checkpoint"] is None) == [400, 400, 401, 401, 404, 404]


@pytest.mark.parametrize("include_usage", [False, True])
def test_streams_are_relayed_tagged_and_logged(router, include_usage):
    r = router("shadow")
    kw = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = client(r).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "stream me"}],
                                               stream=True, **kw)
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "base: stream me"
    assert all(ch.model_extra["ssd_checkpoint"] == "base" for ch in chunks)
    assert bool(chunks[-1].usage) == include_usage  # the router's own usage chunk is not shown unasked
    (rec,) = r.records(wait_for=1)
    assert rec["stream"] and rec["outputs"][0]["text"] == "base: stream me" and rec["completion_tokens"] == 3
    assert rec["ttft_s"] is not None and rec["shadow"]["outputs"][0]["text"] == "ssd: stream me"


def test_stream_falls_back_before_the_first_byte(router, fakes):
    r = router("ssd", upstreams={"base": fakes["base"].url, "ssd": closed_port_url()})
    with client(r).chat.completions.with_streaming_response.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True) as resp:
        assert resp.headers["x-ssd-checkpoint"] == "base"
        body = "".join(resp.iter_lines())
    assert '"ssd_checkpoint": "base"' in body
    (rec,) = r.records(wait_for=1)
    assert rec["fallback"]["from"] == "ssd" and rec["checkpoint"] == "base"


def test_shadow_beyond_the_cap_is_skipped_and_logged(router):
    r = router("shadow", max_shadow_inflight=0)
    chat(client(r), "hi")
    (rec,) = r.records(wait_for=1)
    assert "already in flight" in rec["shadow"]["skipped"]


def test_log_text_false_keeps_lengths_not_texts(router):
    r = router("shadow", log_text=False)
    chat(client(r), "private words")
    (rec,) = r.records(wait_for=1)
    assert rec["outputs"] == [{"chars": len("base: private words"), "empty": False, "finish_reason": "stop"}]
    assert "private" not in json.dumps(rec)


def test_shadow_records_wait_for_the_slow_shadow(router):
    r = router("shadow")
    headers, out = chat(client(r), "SLOW:ssd but fine")
    assert out.choices[0].message.content.startswith("base:")
    (rec,) = r.records(wait_for=1)
    assert rec["shadow"]["latency_s"] >= 0.3 and rec["latency_s"] < rec["shadow"]["latency_s"]
    assert rec["endpoint"] == CHAT
