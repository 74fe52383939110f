"""The OpenAPI document as a contract: request bodies, responses and errors, declared per route.

Routes read their own bodies (`protocol/json_body`, `api/body_parser`: bounded work, large bodies
parsed in a worker process), so FastAPI never sees a body model and would document none. A route
declares what it takes and answers with `documented(...)`, from the same pydantic models its parser
validates with, so the document and the behaviour can't drift:

    @router.post("/v1/videos", **documented(json=CreateVideoBody, form=CreateVideoBody, files=("input_reference",),
                                             ok=VideoObject, errors=(400, 404, 429)))

`openapi_document(app, routers, refine)` then builds the document: every operation gets the errors that
follow from how it is reached (401/403 behind an API key, 413 and 503 with a body), FastAPI's
422 (never sent: validation errors are 400s) is dropped, and `refine` (see `api/contract_refine.py`)
narrows the request schemas to the catalog in effect (models, seconds, sizes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from .deps import get_tenant

__all__ = ["ERROR_STATUSES", "REF", "ErrorResponse", "documented", "openapi_document"]

REF = "#/components/schemas/{model}"


class ErrorDetail(BaseModel):
    model_config = ConfigDict(title="ErrorDetail")

    message: str
    type: str = Field(description="invalid_request_error, permission_error, rate_limit_error or server_error")
    param: str | None = Field(description="the request field at fault, when there is one")
    code: str | None = Field(description="a machine-readable reason, e.g. video_not_found")


class ErrorResponse(BaseModel):
    """OpenAI's error shape; every error this server answers has it."""

    error: ErrorDetail


ERROR_STATUSES: Mapping[int, str] = {
    400: "The request is invalid: `error.param` names the field, `error.message` says what is allowed.",
    401: "No API key, or one this server does not know.",
    403: "Refused: open mode (no keys) serves only this machine, and the request came through a proxy.",
    404: "No such resource in your tenant.",
    409: "The request conflicts with the resource's state.",
    413: "The request body is larger than REELCHAT_MAX_BODY_BYTES.",
    415: "The request's Content-Type is not one this operation takes.",
    429: "Too many unfinished tasks or open replies (for this key, or for the server); retry after `Retry-After`.",
    503: "The server can't serve this now (loading, or its body parser stopped); retry after `Retry-After`.",
}

# Each documented request body model, by the component name it is published under. The routes'
# `documented(...)` calls fill it at import; the names are the models' own, so two models sharing one fail loudly.
_BODIES: dict[str, type[BaseModel]] = {}


def _register(model: type[BaseModel]) -> str:
    name = model.__name__
    if _BODIES.setdefault(name, model) is not model:
        raise ValueError(f"two request models are named {name}")
    return name


def _error(status: int) -> dict[str, Any]:
    return {"description": ERROR_STATUSES[status], "model": ErrorResponse}


def documented(
    *,
    json: type[BaseModel] | None = None,
    form: type[BaseModel] | None = None,
    files: Iterable[str] = (),
    ok: type[BaseModel] | None = None,
    ok_content: Mapping[str, Any] | None = None,
    errors: Iterable[int] = (),
    extra: Mapping[int, dict[str, Any]] | None = None,
    body_required: bool = True,
    models: Iterable[type[BaseModel]] = (),
) -> dict[str, Any]:
    """Keyword arguments for a route decorator: its request body (JSON and/or multipart form), its 200 and its errors.

    `files`: the form fields that are uploads (documented as binary). `ok_content`: the 200's media types when
    they are not JSON (media files, SSE). The statuses in `errors` are documented with `ErrorResponse`;
    `extra` adds other responses as they are (a 206, a 416, an HTML 404); `models` publishes more components
    for them to point at.
    """
    for model in models:
        _register(model)
    kwargs: dict[str, Any] = {}
    responses: dict[int | str, dict[str, Any]] = {status: _error(status) for status in errors}
    if ok is not None or ok_content is not None:
        responses[200] = {"description": "OK"}
        if ok is not None:
            responses[200]["model"] = ok
        if ok_content is not None:
            responses[200]["content"] = dict(ok_content)
    for status, response in (extra or {}).items():
        responses[status] = response
    kwargs["responses"] = responses
    content: dict[str, Any] = {}
    if json is not None:
        content["application/json"] = {"schema": {"$ref": REF.format(model=_register(json))}}
    if form is not None:
        content["multipart/form-data"] = {
            "schema": {"$ref": REF.format(model=_register(form))},
            "x-reelchat-files": list(files),  # read by `openapi_document`, which derives the form's schema
        }
    if content:
        kwargs["openapi_extra"] = {"requestBody": {"required": body_required, "content": content}}
    return kwargs


def _uses_tenant(route: APIRoute) -> bool:
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        if dep.call is get_tenant:
            return True
        stack.extend(dep.dependencies)
    return False


def _form_schema(json_schema: dict[str, Any], files: Iterable[str]) -> dict[str, Any]:
    """The multipart form of a JSON body: the same fields as text (a form has no null), `files` as uploads."""
    schema = {**json_schema, "properties": {k: _no_null(v) for k, v in json_schema.get("properties", {}).items()}}
    for name in files:
        schema["properties"][name] = {"type": "string", "format": "binary", "description": "an uploaded file"}
    schema["title"] = f"{json_schema.get('title', 'Body')} (multipart)"
    return schema


def _no_null(prop: dict[str, Any]) -> dict[str, Any]:
    choices = prop.get("anyOf")
    if not isinstance(choices, list):
        return prop
    kept = [c for c in choices if c != {"type": "null"}]
    rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**rest, **kept[0]} if len(kept) == 1 else {**rest, "anyOf": kept}


Refine = Callable[[dict[str, Any]], None]


def openapi_document(app: FastAPI, routers: Iterable[APIRouter], refine: Refine | None = None) -> dict[str, Any]:
    """The document of the operations of `routers` (all the app's), as `app.openapi` serves it (see the module doc)."""
    api_routes = [r for router in routers for r in router.routes if isinstance(r, APIRoute)]
    doc = get_openapi(title=app.title, version=app.version, routes=api_routes, description=app.description)
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["ErrorResponse"] = ErrorResponse.model_json_schema(ref_template=REF)
    schemas.update(schemas["ErrorResponse"].pop("$defs"))
    for name, model in _BODIES.items():
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    doc["components"]["securitySchemes"] = {
        "apiKey": {"type": "http", "scheme": "bearer", "description": "an API key from `reelchat keys create`"}
    }
    routes = {(r.path_format, m.lower()): r for r in api_routes for m in r.methods or ()}
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            route = routes[(path, method)]
            _complete(op, route, schemas)
    if refine is not None:
        refine(doc)
    return doc


def _complete(op: dict[str, Any], route: APIRoute, schemas: dict[str, Any]) -> None:
    responses: dict[str, Any] = op["responses"]
    responses.pop("422", None)
    extra: list[int] = []
    if _uses_tenant(route):
        op["security"] = [{"apiKey": []}]
        extra += [401, 403]
    body = op.get("requestBody")
    if body is not None:
        extra += [400, 413, 503]
        form = body["content"].get("multipart/form-data")
        if form is not None:
            name = form["schema"]["$ref"].rsplit("/", 1)[-1]
            files = form.pop("x-reelchat-files", [])
            form_name = f"{name}Form"
            schemas[form_name] = _form_schema(schemas[name], files)
            form["schema"] = {"$ref": REF.format(model=form_name)}
    for status in extra:
        if str(status) not in responses:
            responses[str(status)] = {
                "description": ERROR_STATUSES[status],
                "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}},
            }
