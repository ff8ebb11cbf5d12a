from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from circuitd.mockupstream.testing import running_mock_upstream

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Tell me about circuit breakers."},
]


@pytest.fixture
def mock_url() -> Iterator[str]:
    """Base URL (no /v1) of a fresh mock upstream on 127.0.0.1, a free port."""
    with running_mock_upstream() as url:
        yield url


@pytest.fixture
def sdk(mock_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=mock_url + "/v1", api_key="sk-test", max_retries=0)


@pytest.fixture
def http(mock_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mock_url, timeout=30) as client:  # > long-polls' 10 s
        yield client
