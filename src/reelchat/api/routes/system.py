"""GET /v1/models, /v1/models/{id}, /healthz (the store answers, workers run or load), /readyz (it takes work)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ...catalog import ModelSpec
from ...protocol.response_schema import Health, ModelList, ModelObject, Ready
from ..contract import documented
from ..deps import AppState, StateDep, TenantDep
from ..errors import ApiError

router = APIRouter()


def _model(spec: ModelSpec, created: int) -> dict[str, Any]:
    return {
        "id": spec.name,
        "object": "model",
        "created": created,
        "owned_by": "reelchat",
        "description": spec.description,
        "engine": spec.engine,
        "seconds": [str(s) for s in spec.allowed_seconds],
        "default_seconds": str(spec.default_seconds),
        "sizes": spec.public_sizes,
        "fps": spec.fps,
    }


@router.get("/v1/models", **documented(ok=ModelList))
async def list_models(state: StateDep, _tenant: TenantDep) -> dict[str, Any]:
    created = int(state.started_at)
    return {"object": "list", "data": [_model(s, created) for s in state.service.models()]}


@router.get("/v1/models/{model_id}", **documented(ok=ModelObject, errors=[404]))
async def get_model(model_id: str, state: StateDep, _tenant: TenantDep) -> dict[str, Any]:
    spec = state.service.model(model_id)
    if spec is None:
        raise ApiError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
    return _model(spec, int(state.started_at))


@router.get("/healthz", **documented(ok=Health, extra={503: {"description": "What failed", "model": Health}}))
async def healthz(state: StateDep) -> JSONResponse:
    """200 while the store answers and the workers run or load their models; 503 (with what failed) if not."""
    return await health_response(state)  # served by `api/direct.py`, ahead of every other request


async def health_response(state: AppState) -> JSONResponse:
    checks = await state.service.health()
    if checks["database"] == "ok" and checks["workers"] != "failed":
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "unavailable", **checks}, status_code=503)


@router.get("/readyz", **documented(ok=Ready, errors=[503]))
async def readyz(state: StateDep) -> JSONResponse:
    """200 once the models are loaded and the workers take tasks; 503 while they load."""
    return ready_response(state)  # served by `api/direct.py`, ahead of every other request


def ready_response(state: AppState) -> JSONResponse:
    if not state.service.ready:
        raise ApiError(503, "The server is loading its models; requests are queued meanwhile.", code="loading")
    return JSONResponse({"status": "ready"})
