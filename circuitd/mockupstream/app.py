"""The mock's routes: every dialect over one answering pipeline (see `server`).

`App.handle` routes a parsed request to its dialect's route (`openai_routes`,
`anthropic_routes`, `gemini_routes`) or to the control API (`control`). A chat request in any
dialect is authenticated, validated as its provider does, and turned into a `pipeline.Job`
that `Pipeline.run` answers the same way whatever the dialect.
"""

from __future__ import annotations

from circuitd.mockupstream import (
    anthropic_render,
    anthropic_routes,
    gemini,
    gemini_render,
    gemini_routes,
    openai_routes,
)
from circuitd.mockupstream.azure import azure_route
from circuitd.mockupstream.faults import Fault, error_body
from circuitd.mockupstream.openai_routes import MODELS
from circuitd.mockupstream.pipeline import Pipeline
from circuitd.mockupstream.protocol import Connection, Request

__all__ = ["MODELS", "App"]

_CHAT_PATHS = ("/v1/chat/completions", "/v1/messages", "/v1/models")  # other methods: 405


class App:
    def __init__(self, defaults: Fault | None, require_key: str | None) -> None:
        self.pipeline = Pipeline(defaults, require_key)
        self.control = self.pipeline.control
        self._models = openai_routes.models_body()
        self._anthropic_models = anthropic_render.models_body()
        self._gemini_models = gemini_render.models_body()

    def connection(self) -> Connection:
        self.control.connections += 1
        return Connection(self.handle, self.control.open, error_body)

    def handle(self, request: Request, conn: Connection) -> None:
        path, method, pipeline = request.path, request.method, self.pipeline
        if path == "/v1/chat/completions" and method == "POST":
            openai_routes.chat(pipeline, request, conn)
        elif path == "/v1/embeddings" and method == "POST":
            openai_routes.embeddings(pipeline, request, conn)
        elif method == "POST" and (azure := azure_route(path, request.query)) is not None:
            chat = azure.operation == "chat/completions"
            route = openai_routes.chat if chat else openai_routes.embeddings
            route(pipeline, request, conn, azure)
        elif path == "/v1/messages" and method == "POST":
            anthropic_routes.messages(pipeline, request, conn)
        elif path == "/v1/models" and method == "GET":
            self.models(request, conn)
        elif (target := gemini.route(path)) is not None and method == "POST":
            gemini_routes.generate(pipeline, request, conn, *target)
        elif path == "/v1beta/models" and method == "GET":
            gemini_routes.models(pipeline, request, conn, self._gemini_models)
        elif not (path.startswith("/_mock/") and self.control.route(request, conn)):
            status = 405 if path in _CHAT_PATHS else 404
            conn.respond(status, error_body(status, f"Invalid URL ({method} {path})", code=None))

    def models(self, request: Request, conn: Connection) -> None:
        """`GET /v1/models`: Anthropic's list when the request is Anthropic's, else OpenAI's."""
        if b"anthropic-version" in request.headers:
            anthropic_routes.models(self.pipeline, request, conn, self._anthropic_models)
        elif openai_routes.authorised(self.pipeline, request):
            conn.respond(200, self._models)
        else:
            conn.respond(401, openai_routes.bad_key())
