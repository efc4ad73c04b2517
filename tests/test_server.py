"""The server a new user starts from the README: demo data, /datamodel/, /r/test."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from lxml import etree

from opencampaign.schema.registry import load_registry

from .live_server import LiveServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("serve") / "data"
    with LiveServer(data, "--demo") as live:
        yield live


def test_datamodel_lists_every_builtin_schema(server: LiveServer):
    response = httpx.get(f"{server.url}/datamodel/", timeout=60)
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    for schema in load_registry():
        assert schema.id in response.text, schema.id
    links = set(re.findall(r'href="(schemas/[^"#]+)"', response.text))
    assert links
    page = httpx.get(f"{server.url}/datamodel/{sorted(links)[0]}", timeout=30)
    assert page.status_code == 200


def test_recipient_page_documents_columns_and_links(server: LiveServer):
    index = httpx.get(f"{server.url}/datamodel/", timeout=60).text
    href = re.search(r'href="(schemas/[^"]*recipient[^"]*\.html)"', index).group(1)
    page = httpx.get(f"{server.url}/datamodel/{href}", timeout=30).text
    for text in ("NmsRecipient", "sEmail", "iFolderId", "xtk:folder", "@email"):
        assert text in page


def test_unknown_page_is_404(server: LiveServer):
    assert httpx.get(f"{server.url}/datamodel/nothing.html").status_code == 404


def test_r_test_answers_like_campaign(server: LiveServer):
    response = httpx.get(f"{server.url}/r/test")
    redir = etree.fromstring(response.content)
    assert redir.tag == "redir" and redir.get("status") == "OK"
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z", redir.get("date"))
    assert redir.get("build")


def test_demo_data_is_loaded_once(server: LiveServer, tmp_path: Path):
    assert "Demo data loaded." in server.log.read_text()
