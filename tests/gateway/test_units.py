"""Small pure pieces of the gateway: auth, body rewrite, x_gateway injection, error mapping."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from circuitd.config import KeyConfig, LimitsConfig
from circuitd.errors import (
    InvalidApiKey,
    ModelNotAllowed,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from circuitd.gateway.app import client_request_id, decode_chat_request, new_request_id
from circuitd.gateway.auth import ANONYMOUS_ID, Authenticator
from circuitd.gateway.relay import GatewayMeta, inject_meta, upstream_error
from circuitd.gateway.rewrite import upstream_body


def test_auth_by_key_env_and_digest() -> None:
    keys = [
        KeyConfig(id="plain", key="k1"),
        KeyConfig(id="env", key_env="MY_KEY"),
        KeyConfig(id="hashed", key_sha256=hashlib.sha256(b"k3").hexdigest(), models=["m"]),
    ]
    auth = Authenticator.from_config(keys, {"MY_KEY": "k2"}, LimitsConfig(daily_usd=5.0, rpm=7))
    assert auth.authenticate(b"Bearer k1").key_id == "plain"
    assert auth.authenticate(b"bearer k2").key_id == "env"
    hashed = auth.authenticate(b"Bearer k3")
    assert hashed.key_id == "hashed"
    assert (hashed.daily_usd_limit, hashed.rpm, hashed.tpm) == (5.0, 7, None)
    hashed.check_model("m")
    with pytest.raises(ModelNotAllowed):
        hashed.check_model("other")
    for bad in (None, b"", b"Bearer", b"Basic k1", b"Bearer nope"):
        with pytest.raises(InvalidApiKey):
            auth.authenticate(bad)


def test_open_auth_when_no_keys() -> None:
    auth = Authenticator.from_config([], {}, LimitsConfig(daily_usd=1.0))
    assert auth.open
    anonymous = auth.authenticate(None)
    assert (anonymous.key_id, anonymous.daily_usd_limit) == (ANONYMOUS_ID, 1.0)


def test_client_request_ids_are_taken_only_when_sane() -> None:
    sane = {"headers": [(b"x-request-id", b"abc-123_x.y:z")]}
    assert client_request_id(sane) == "abc-123_x.y:z"
    for bad in (b"", b"has space", b"x" * 129, b"\xff"):
        assert client_request_id({"headers": [(b"x-request-id", bad)]}) is None
    assert client_request_id({"headers": []}) is None
    ours = new_request_id()
    assert ours.startswith("req_") and len(ours) == 28
    int(ours[4:], 16)
    later = [new_request_id() for _ in range(100)]
    assert ours not in later and len(set(later)) == 100
    # time-ordered at millisecond grain: the ledger index grows at its right edge
    assert all(ours[4:16] <= other[4:16] for other in later)


def test_body_is_forwarded_untouched_when_nothing_changes() -> None:
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"seed":7}'
    view = decode_chat_request(body)
    assert upstream_body(body, view, "m") is body


def test_rewrite_renames_model_and_asks_for_usage_keeping_unknown_fields() -> None:
    body = (
        b'{"model":"alias","stream":true,"stream_options":{"x":1},"messages":'
        b'[{"role":"user","content":"hi"}],"logit_bias":{"50256":-100},"vendor_ext":[1,2]}'
    )
    out = msgspec.json.decode(upstream_body(body, decode_chat_request(body), "real-model"))
    assert out["model"] == "real-model"
    assert out["stream_options"] == {"x": 1, "include_usage": True}
    assert out["logit_bias"] == {"50256": -100}
    assert out["vendor_ext"] == [1, 2]


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'{"model":"m"}', b'{"messages":[]}', b'{"model":"","messages":[{"role":"u"}]}'],
)
def test_bad_requests_are_invalid_request_errors(body: bytes) -> None:
    from circuitd.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        decode_chat_request(body)


def test_inject_meta() -> None:
    meta = GatewayMeta("r", "p", "p/m", 1, 2.5, 0.000123)
    out = msgspec.json.decode(inject_meta(b'{"id":"x","usage":{"a":1}}\n', meta))
    assert out["id"] == "x"
    assert out["x_gateway"]["deployment"] == "p/m"
    assert out["x_gateway"]["cache_hit"] is False
    assert msgspec.json.decode(inject_meta(b"{ }", meta))["x_gateway"]["request_id"] == "r"


def test_upstream_error_mapping() -> None:
    assert isinstance(upstream_error(400, b"{}", b"application/json"), UpstreamRejected)
    assert upstream_error(422, b"{}", b"application/json").status == 422
    assert isinstance(upstream_error(500, b"boom", b"text/plain"), UpstreamError)
    assert "boom" in upstream_error(503, b"boom", b"text/plain").message
    assert isinstance(upstream_error(504, b"", b""), UpstreamTimeout)
    # OpenAI's 401 quotes the key it refused (masked, but its ends show): never relayed
    refused = upstream_error(401, b"Incorrect API key provided: sk-pr****wxyz.", b"text/plain")
    assert isinstance(refused, UpstreamError) and "wxyz" not in refused.message
    assert "key was refused" in upstream_error(403, b"", b"").message
