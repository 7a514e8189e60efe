"""The in-process controller and agent apps both API test modules attack (one of each per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.safety.apikit import AgentApi, ControllerApi


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerApi]:
    api = ControllerApi(tmp_path_factory.mktemp("controller-api"))
    yield api
    api.close()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentApi]:
    api = AgentApi(tmp_path_factory.mktemp("agent-api"))  # under the session's temp dir: the reaper sees its daemons
    yield api
    api.close()
