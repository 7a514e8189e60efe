"""GET /api/v1/journal: the journal, filtered by kind, host, plan, and paged by id."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query

from controller.api.deps import EngineDep, Viewer
from controller.api.responses import AUTH, JournalOut
from controller.status import entry_dict

router = APIRouter(prefix="/api/v1", tags=["journal"], responses=AUTH)
MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id is a 422, not an OverflowError (a 500)


@router.get("/journal", response_model=JournalOut)
async def journal(_: Viewer, engine: EngineDep, kind: Annotated[str | None, Query(max_length=200)] = None,
                  host: Annotated[str | None, Query(max_length=63)] = None,
                  plan_id: Annotated[str | None, Query(max_length=64)] = None,
                  before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
                  after_id: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    kinds = kind.split(",") if kind else None
    entries = await asyncio.to_thread(engine.journal.query, kinds=kinds, host=host, plan_id=plan_id,
                                      before_id=before_id, after_id=after_id, limit=limit,
                                      newest_first=after_id is None)
    return {"entries": [entry_dict(e) for e in entries]}
