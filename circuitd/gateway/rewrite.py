"""Prepares the canonical request body for one deployment.

The client's body is forwarded byte for byte unless the gateway must change it: the model is
renamed to the deployment's upstream name, streams always ask for usage
(`stream_options.include_usage`) so that accounting never depends on the client remembering to,
and the gateway's `circuit_breaker` extension is removed.
Only then is the body decoded generically and re-encoded, every other field untouched.
"""

from __future__ import annotations

from typing import Any

import msgspec

from circuitd.wire.openai import ChatRequestView

_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()


def client_wants_usage(view: ChatRequestView) -> bool:
    return bool(view.stream_options and view.stream_options.include_usage)


def upstream_body(body: bytes, view: ChatRequestView, upstream_model: str) -> bytes:
    rename = view.model != upstream_model
    ask_usage = bool(view.stream) and not client_wants_usage(view)
    if not (rename or ask_usage or view.circuit_breaker is not None):
        return body
    data = _decoder.decode(body)
    data.pop("circuit_breaker", None)  # the gateway's own extension stays here
    data["model"] = upstream_model
    if ask_usage:
        options = data.get("stream_options")
        data["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    return _encoder.encode(data)
