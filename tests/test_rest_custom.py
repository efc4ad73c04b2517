"""Custom schemas through REST: profileAndServicesExt fields and links, customResources, no new code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CUSTOM_SCHEMAS
from tests.live_server import LiveServer

EXT = "/rest/profileAndServicesExt"
STD = "/rest/profileAndServices"
CUS = "/rest/customResources"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    data = tmp_path_factory.mktemp("rest-custom") / "data"
    with LiveServer(data, "--schemas", str(CUSTOM_SCHEMAS)) as live, \
            httpx.Client(base_url=live.url, auth=("admin", "admin-test"), timeout=30) as c:
        yield c


def test_custom_resource_crud(client: httpx.Client) -> None:
    index = client.get(f"{CUS}/").json()["content"]
    assert [r["name"] for r in index] == ["cusStore"]
    r = client.post(f"{CUS}/cusStore", json={"code": "PAR1", "name": "Paris Opera", "opened": "2020-02-01",
                                             "surface": 120.5, "address": {"city": "Paris"}})
    assert r.status_code == 201, r.text
    store = r.json()
    assert store["address"]["city"] == "Paris" and store["surface"] == 120.5
    assert client.post(f"{CUS}/cusStore", json={"code": "PAR1"}).status_code == 409
    assert client.get(f"{CUS}/cusStore/_count").json() == {"count": 1}
    meta = client.get(f"{CUS}/resourceType/cusStore").json()
    assert meta["schema"] == "cus:store" and meta["content"]["opened"]["type"] == "date"
    # not a profileAndServices resource
    assert client.get(f"{STD}/cusStore").status_code == 404


def test_ext_profile_has_custom_fields(client: httpx.Client) -> None:
    store = client.post(f"{CUS}/cusStore", json={"code": "LYO1", "name": "Lyon"}).json()
    r = client.post(f"{EXT}/profile", json={"email": "ext@example.com", "loyaltyPoints": 12, "loyaltyTier": "gold",
                                            "store": {"PKey": store["PKey"]}})
    assert r.status_code == 201, r.text
    profile = r.json()
    assert profile["loyaltyTier"] == "gold" and profile["loyaltyPoints"] == 12
    assert profile["store"]["PKey"] == store["PKey"] and profile["store"]["title"] == "Lyon"
    # the standard API hides custom fields and refuses them
    std = client.get(f"{STD}/profile/{profile['PKey']}").json()
    assert "loyaltyTier" not in std and "store" not in std
    assert client.patch(f"{STD}/profile/{profile['PKey']}", json={"loyaltyPoints": 1}).status_code == 400
    assert client.patch(f"{EXT}/profile/{profile['PKey']}", json={"loyaltyPoints": 13}).status_code == 200
    assert client.get(f"{EXT}/profile/{profile['PKey']}").json()["loyaltyPoints"] == 13
    meta = client.get(f"{EXT}/resourceType/profile").json()["content"]
    assert meta["loyaltyTier"]["values"]["gold"]["label"] == "Gold"


def test_openapi_lists_custom_resources(client: httpx.Client) -> None:
    doc = client.get("/rest/openapi.json").json()
    assert "/customResources/cusStore" in doc["paths"]
    assert "/profileAndServicesExt/profile/{PKey}" in doc["paths"]
    page = client.get("/rest/docs")
    assert page.status_code == 200 and "openapi.json" in page.text and "<script src" not in page.text


def test_declared_filter(tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "shop.xml").write_text("""<srcSchema name="shop" namespace="acme" label="Shops">
      <element name="shop" autopk="true" label="Shop">
        <attribute name="city" type="string" length="64" label="City"/>
        <attribute name="rank" type="long" label="Rank"/>
      </element>
      <restFilter name="inCity" params="city" condition="@city = $city" label="Shops of a city"/>
    </srcSchema>""")
    with LiveServer(tmp_path / "data", "--schemas", str(schemas)) as live, \
            httpx.Client(base_url=live.url, auth=("admin", "admin-test")) as c:
        for city, rank in (("Paris", 1), ("Lyon", 2), ("Paris", 3)):
            assert c.post(f"{CUS}/cusShop", json={"city": city, "rank": rank}).status_code == 201
        found = c.get(f"{CUS}/cusShop/inCity", params={"city": "Paris", "_order": "rank desc"}).json()
        assert [s["rank"] for s in found["content"]] == [3, 1]


def test_rate_limit(tmp_path: Path) -> None:
    with LiveServer(tmp_path / "data", env={"OPENCAMPAIGN_TPS_DEFAULT": "3"}) as live, \
            httpx.Client(base_url=live.url, auth=("admin", "admin-test")) as c:
        statuses = [c.get(f"{STD}/service").status_code for _ in range(8)]
        assert 429 in statuses and statuses[0] == 200
        limited = next(r for r in (c.get(f"{STD}/service") for _ in range(8)) if r.status_code == 429)
        assert limited.json()["error_code"] == "429050" and int(limited.headers["Retry-After"]) >= 1
