"""Schemathesis against the generated OpenAPI document: no request may produce a server error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.live_server import LiveServer


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("rest-openapi") / "data", "--demo") as server:
        yield server


MAX_EXAMPLES = 6  # per operation: the whole run stays well under a minute


def test_no_server_error(live: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/rest/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20

    for operation in operations:
        @given(operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:  # noqa: ANN001
            response = case.call(base_url=f"{live.url}/rest", auth=("admin", "admin-test"), timeout=30)
            case.validate_response(response, checks=[not_a_server_error])
            content_type = response.headers.get("content-type", [""])
            content_type = content_type[0] if isinstance(content_type, list) else content_type
            assert response.status_code == 204 or content_type.startswith("application/json")

        try:
            check()
        except Exception as exc:
            raise AssertionError(f"{operation.label}: {exc}") from exc
