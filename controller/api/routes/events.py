"""GET /api/v1/events: the server-sent event stream (status, plan, step, state, journal, notify) the
dashboard follows; it ends when the client goes away."""

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from controller.api.deps import EngineDep, Viewer
from controller.api.responses import AUTH

router = APIRouter(prefix="/api/v1", tags=["events"], responses=AUTH)
STREAM = {200: {"description": "an endless text/event-stream: `id`, `event` (the kind) and `data` (JSON)",
                "content": {"text/event-stream": {"schema": {"type": "string"}}}}}


@router.get("/events", response_class=StreamingResponse, response_model=None, responses=STREAM)
async def events(_: Viewer, engine: EngineDep, request: Request) -> StreamingResponse:
    async def stream() -> AsyncIterator[bytes]:
        yield b": ccfo events\n\n"
        async for event in engine.events.subscribe():
            if await request.is_disconnected():
                break
            yield f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(event.data)}\n\n".encode()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
