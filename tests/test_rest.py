"""REST API against a real `opencampaign serve --demo` process."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.live_server import LiveServer

AUTH = ("admin", "admin-test")
P = "/rest/profileAndServices"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("rest") / "data", "--demo") as live:
        yield live


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, auth=AUTH, timeout=30) as c:
        yield c


def test_requires_auth(server: LiveServer) -> None:
    r = httpx.get(f"{server.url}{P}/profile")
    assert r.status_code == 401
    assert r.json()["code"] == 401
    r = httpx.get(f"{server.url}{P}/profile", auth=("admin", "wrong"))
    assert r.status_code == 401


def test_list_shape_and_pagination(client: httpx.Client) -> None:
    page = client.get(f"{P}/profile").json()
    assert len(page["content"]) == 25 and page["serverSidePagination"] is True
    first = page["content"][0]
    assert first["PKey"].startswith("@") and first["href"].endswith(first["PKey"])
    assert first["subscriptions"]["href"].endswith("/subscriptions/")
    assert isinstance(first["location"], dict) and "city" in first["location"]
    assert first["gender"] in ("unknown", "male", "female")
    seen = {item["PKey"] for item in page["content"]}
    nxt = client.get(page["next"]["href"]).json()
    assert len(nxt["content"]) == 25 and not seen & {i["PKey"] for i in nxt["content"]}
    count = client.get(page["count"]["href"]).json()["count"]
    assert count == 3000
    # walk every page with 1000-row pages: keyset cursors give each row once
    keys, href = set(), f"{P}/profile?_lineCount=1000"
    while href:
        body = client.get(href).json()
        keys |= {i["PKey"] for i in body["content"]}
        href = body.get("next", {}).get("href")
    assert len(keys) == 3000


def test_order_and_projection(client: httpx.Client) -> None:
    body = client.get(f"{P}/profile", params={"_order": "email desc", "_lineCount": 30}).json()
    emails = [i["email"] for i in body["content"]]
    assert emails == sorted(emails, reverse=True)
    more = client.get(body["next"]["href"]).json()
    assert more["content"][0]["email"] <= emails[-1]
    proj = client.get(f"{P}/profile/email", params={"_lineCount": 10}).json()
    assert len(proj["content"]) == 10 and all(isinstance(e, str) for e in proj["content"])
    bad = client.get(f"{P}/profile", params={"_order": "age"})
    assert bad.status_code == 400


def test_get_item_and_bad_pkey(client: httpx.Client) -> None:
    item = client.get(f"{P}/profile", params={"_lineCount": 1}).json()["content"][0]
    again = client.get(item["href"]).json()
    assert again == item
    r = client.get(f"{P}/profile/@jksad")
    assert r.status_code == 404 and "Unable to decrypt PKey" in r.json()["message"]
    # a service PKey does not address a profile
    service = client.get(f"{P}/service").json()["content"][0]
    assert client.get(f"{P}/profile/{service['PKey']}").status_code == 404
    forged = item["PKey"][:-2] + ("AA" if not item["PKey"].endswith("AA") else "BB")
    assert client.get(f"{P}/profile/{forged}").status_code == 404


def test_create_patch_delete_profile(client: httpx.Client) -> None:
    r = client.post(f"{P}/profile", json={"email": "new.one@example.com", "lastName": "Doe", "firstName": "Jane",
                                          "gender": "female", "birthDate": "1980-10-24",
                                          "location": {"city": "Paris"}})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["gender"] == "female" and created["birthDate"] == "1980-10-24"
    assert created["location"]["city"] == "Paris" and created["created"].endswith("Z")
    r = client.patch(created["href"], json={"phone": "+33100000000"})
    assert r.status_code == 200 and r.json()["PKey"] == created["PKey"]
    assert client.get(created["href"]).json()["phone"] == "+33100000000"
    assert client.patch(created["href"], json={}).status_code == 204
    r = client.patch(created["href"], json={"age": 3})
    assert r.status_code == 400 and "'age'" in r.json()["message"] and "read-only" in r.json()["message"]
    r = client.patch(created["href"], json={"nope": 1})
    assert r.status_code == 400 and "'nope' property is not valid" in r.json()["message"]
    r = client.patch(created["href"], json={"gender": "robot"})
    assert r.status_code == 400
    assert client.delete(created["href"]).status_code == 200
    assert client.get(created["href"]).status_code == 404


def test_filters(client: httpx.Client) -> None:
    some = client.get(f"{P}/profile", params={"_lineCount": 1}).json()["content"][0]
    by_email = client.get(f"{P}/profile/byEmail", params={"email": some["email"]}).json()
    assert [i["PKey"] for i in by_email["content"]] == [some["PKey"]]
    by_text = client.get(f"{P}/profile/byText", params={"text": some["lastName"], "_lineCount": 100}).json()
    assert by_text["content"] and all(i["lastName"].startswith(some["lastName"]) or
                                      i["email"].startswith(some["lastName"]) for i in by_text["content"])
    count = client.get(f"{P}/profile/byText/_count", params={"text": some["lastName"]}).json()["count"]
    assert count >= len(by_text["content"])
    email = client.get(f"{P}/service/byChannel", params={"channel": "email"}).json()["content"]
    assert email and all(s["type"] == "email" for s in email)
    chained = client.get(f"{P}/service/byChannel/byText", params={"channel": "email", "text": "news"}).json()
    assert [s["name"] for s in chained["content"]] == ["newsletter"]
    assert client.get(f"{P}/profile/byEmail").status_code == 400
    assert client.get(f"{P}/profile/byNothing").status_code == 404


def test_service_create_duplicate_and_subscriptions(client: httpx.Client) -> None:
    r = client.post(f"{P}/service", json={"label": "Sport", "messageType": "email", "name": "sport",
                                          "start": "2019-10-06", "validityDuration": 30})
    assert r.status_code == 201, r.text
    service = r.json()
    assert service["messageType"] == "email" and service["start"] == "2019-10-06"
    by_name = client.get(f"{P}/service/sport")  # business key in place of the PKey
    assert by_name.status_code == 200 and by_name.json()["PKey"] == service["PKey"]
    dup = client.post(f"{P}/service", json={"label": "Again", "name": "sport"})
    assert dup.status_code == 409 and "already exists" in dup.json()["message"]

    profile = client.post(f"{P}/profile", json={"email": "sub@example.com"}).json()
    r = client.post(profile["subscriptions"]["href"], json={"service": {"PKey": service["PKey"]}})
    assert r.status_code == 201, r.text
    sub = r.json()
    assert sub["serviceName"] == "sport" and sub["service"]["PKey"] == service["PKey"]
    assert sub["subscriber"]["PKey"] == profile["PKey"] and sub["expirationDate"]
    # idempotent
    assert client.post(profile["subscriptions"]["href"], json={"service": {"PKey": service["PKey"]}}).status_code == 201
    subs = client.get(profile["subscriptions"]["href"]).json()["content"]
    assert len(subs) == 1
    from_service = client.get(service["subscriptions"]["href"]).json()["content"]
    assert [s["subscriber"]["PKey"] for s in from_service] == [profile["PKey"]]
    history = client.get(f"{P}/history/{profile['PKey']}").json()["content"]
    assert [h["action"] for h in history] == ["subscription"]
    assert client.delete(sub["href"]).status_code == 204
    assert client.get(profile["subscriptions"]["href"]).json()["content"] == []
    history = client.get(f"{P}/history/{profile['PKey']}").json()["content"]
    assert [h["action"] for h in history] == ["subscription", "unsubscription"]
    # subscribe from the service side
    r = client.post(service["subscriptions"]["href"], json={"subscriber": {"PKey": profile["PKey"]}})
    assert r.status_code == 201 and r.json()["serviceName"] == "sport"


def test_metadata(client: httpx.Client) -> None:
    meta = client.get(f"{P}/resourceType/profile").json()
    assert meta["schema"] == "nms:recipient" and meta["name"] == "profile"
    assert meta["content"]["email"]["type"] == "string" and meta["content"]["email"]["sortable"] is True
    assert meta["content"]["gender"]["type"] == "enumeration" and "female" in meta["content"]["gender"]["values"]
    assert meta["content"]["age"]["readOnly"] is True
    filters = client.get(meta["filters"]["href"]).json()["content"]
    assert "byEmail" in filters and filters["byText"]["data"].startswith("/profileAndServices/profile/byText")
    assert client.get(f"{P}/profile/metadata").json()["name"] == "profile"


def test_errors_are_json(client: httpx.Client) -> None:
    for r in (client.get(f"{P}/nothing"), client.options(f"{P}/profile"),
              client.post(f"{P}/profile", content=b"{not json", headers={"content-type": "application/json"}),
              client.put(f"{P}/profile")):
        assert r.status_code in (400, 404, 405)
        assert set(r.json()) == {"code", "message"}
