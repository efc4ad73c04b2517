"""Prepared requests (soap/prepared.py): a body repeating a known shape skips parsing, and must
answer exactly as a parsed one would.

Over HTTP against a real server: repeated queries with other ids, strings, names and numbers
elsewhere in the document each get their own answer; sessions and tokens are checked on every
call. In process: what a template matches and what it refuses.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime

import pytest
from lxml import etree

from opencampaign.query.output import OutSpec, RowShaper
from opencampaign.soap.dispatch import Action, Target
from opencampaign.soap.envelope import Output, build_response, build_xml_response, parse_request
from opencampaign.soap.prepared import Templates, make_template

from .live_server import LiveServer
from .test_soap import ADMIN_PASSWORD, SoapClient, client, doc_param, envelope, init_with_bob

__all__ = ["client"]  # the logged-on client fixture of test_soap, on this module's server

PEOPLE = [("ada", "Ada", "Lovelace"), ("alan", "Alan", "Turing"), ("grace", "Grace", "Hopper"),
          ("edsger", "Edsger", "Dijkstra"), ("barbara", "Barbara", "Liskov")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("prepared") / "instance"
    init_with_bob(data)
    with LiveServer(data, env={"OPENCAMPAIGN_ADMIN_PASSWORD": ADMIN_PASSWORD}) as live:
        yield live


@pytest.fixture(scope="module")
def ids(server: LiveServer) -> dict[str, int]:
    soap = SoapClient(server.url)
    assert soap.logon().fault is None
    found = {}
    for key, first, last in PEOPLE:
        reply = soap.write(f'<recipient xtkschema="nms:recipient" _operation="insert" email="{key}1@example.com" '
                           f'firstName="{first}" lastName="{last}"/>')
        assert reply.fault is None, reply.text
    rows = soap.query('<queryDef schema="nms:recipient" operation="select"><select><node expr="@id"/>'
                      '<node expr="@email"/></select></queryDef>').outputs[0][0]
    for row in rows:
        found[row.get("email").split("1@")[0]] = int(row.get("id"))
    soap.close()
    return found


def get_by(condition: str, *, operation: str = "get", nodes: str = "") -> str:
    nodes = nodes or '<node expr="@id"/><node expr="@email"/><node expr="@firstName"/><node expr="@lastName"/>'
    return (f'<queryDef schema="nms:recipient" operation="{operation}"><select>{nodes}</select>'
            f'<where><condition expr="{condition}"/></where></queryDef>')


def test_repeated_get_by_key_answers_each_id(client: SoapClient, ids: dict[str, int]):
    order = [key for key, *_ in PEOPLE] * 3
    random.Random(7).shuffle(order)
    for key in order:
        row = client.query(get_by(f"@id = {ids[key]}")).outputs[0][0]
        first = next(f for k, f, _ in PEOPLE if k == key)
        assert (row.get("id"), row.get("email"), row.get("firstName")) == (str(ids[key]), f"{key}1@example.com", first)


def test_other_constant_classes_and_missing_rows(client: SoapClient, ids: dict[str, int]):
    client.query(get_by(f"@id = {ids['ada']}"))  # the template, made with a 32-bit id
    missing = client.query(get_by("@id = 987654"))
    assert missing.code == "SOP-330011" and "XTK-170041" in missing.text  # no row for a get
    zero = client.query(get_by("@id = 0", operation="getIfExists")).outputs[0][0]
    assert etree.QName(zero).localname == "recipient" and zero.get("id") is None  # no row: an empty element
    big = client.query(get_by("@id = 9007199254740993", operation="getIfExists")).outputs[0][0]
    assert big.get("id") is None
    again = client.query(get_by(f"@id = {ids['alan']}")).outputs[0][0]
    assert again.get("email") == "alan1@example.com"
    overflow = client.query(get_by("@id = 99999999999999999999999"))  # beyond int64: refused, not truncated
    assert overflow.fault is not None


def test_digits_inside_strings_are_not_constants(client: SoapClient, ids: dict[str, int]):
    for key in ("grace", "ada", "barbara", "grace"):
        row = client.query(get_by(f"@email = '{key}1@example.com'")).outputs[0][0]
        assert row.get("id") == str(ids[key])
    # Same shape, digit changed inside the string: no such recipient.
    assert "XTK-170041" in client.query(get_by("@email = 'grace2@example.com'")).text


def test_numbers_outside_conditions_are_part_of_the_shape(client: SoapClient, ids: dict[str, int]):
    for alias in ("@a1", "@a2", "@a10"):
        nodes = f'<node expr="@email" alias="{alias}"/>'
        row = client.query(get_by(f"@id = {ids['edsger']}", nodes=nodes)).outputs[0][0]
        assert row.get(alias[1:]) == "edsger1@example.com" and len(row.attrib) == 1
    for n in (1, 2, 3):
        reply = client.query(f'<queryDef schema="nms:recipient" operation="select" lineCount="{n}"><select>'
                             f'<node expr="@id"/></select><where><condition expr="@id &gt; 0"/></where></queryDef>')
        assert len(reply.outputs[0][0]) == n


def test_sessions_and_tokens_are_checked_on_every_call(server: LiveServer, ids: dict[str, int]):
    soap = SoapClient(server.url)
    assert soap.logon().fault is None
    query = get_by(f"@id = {ids['ada']}")
    for _ in range(3):
        assert soap.query(query).fault is None
    wrong = soap.call("xtk:queryDef#ExecuteQuery", doc_param("document", query), security="@not-the-token==")
    assert wrong.code == "XSV-350008"
    assert soap.call("xtk:session#Logoff").fault is None
    assert soap.query(query).code == "XSV-350008"
    soap.close()


def test_the_same_body_from_another_session_runs_as_that_operator(server: LiveServer, ids: dict[str, int]):
    admin = SoapClient(server.url)
    assert admin.logon().fault is None
    reader = SoapClient(server.url)
    assert reader.logon("bob", "bob-pw").fault is None
    query = '<queryDef schema="xtk:operator" operation="getIfExists"><select><node expr="@name"/></select>' \
            '<where><condition expr="@name = $(login)"/></where></queryDef>'
    for _ in range(2):
        assert admin.query(query).outputs[0][0].get("name") == "admin"
        # The reader's body differs only by its tokens: its own template, its own context.
        assert reader.query(query).outputs[0][0].get("name") == "bob"
    admin.close()
    reader.close()


# --- in process --------------------------------------------------------------------------------


class _Schema:
    id = "xtk:queryDef"


class _Method:
    name = "ExecuteQuery"
    static = False
    access = ""


def _body(condition: str, token: str = "___T") -> bytes:
    return envelope("xtk:queryDef", "ExecuteQuery", doc_param("document", get_by(condition)), token=token,
                    security="@S").encode()


def _target() -> Target:
    return Target(_Schema(), _Method())  # type: ignore[arg-type]


def _learn(templates: Templates, body: bytes) -> None:
    templates.learn("a", None, body, parse_request(body), Action("xtk:queryDef", "ExecuteQuery"), _target(), None,
                    True)


def test_template_matches_other_ids_only():
    templates = Templates()
    _learn(templates, _body("@id = 1234"))
    found = templates.match("a", None, _body("@id = 77"))
    assert found is not None and found[1].values == [77] and "@id = 77" in found[1].text()
    for other in (_body("@id = 0"), _body("@id = 4294967296"), _body("@id = 12 "), _body("@id = 1234", "___U"),
                  _body("@id = 1234").replace(b"2001", b"2002"), _body("@id = 1234") + b" ",
                  _body("@id = 1234 + 1"), _body("@id = 1234.5")):
        assert templates.match("a", None, other) is None, other
    assert templates.match("b", None, _body("@id = 77")) is None  # another SOAPAction
    assert templates.match("a", "iso-8859-1", _body("@id = 77")) is None  # another charset


def test_template_keeps_string_and_name_digits_fixed():
    templates = Templates()
    _learn(templates, _body("@email = 'a1@x.org' and @id = 5"))
    assert templates.match("a", None, _body("@email = 'a2@x.org' and @id = 5")) is None
    found = templates.match("a", None, _body("@email = 'a1@x.org' and @id = 6"))
    assert found is not None and found[1].values == [6]


def test_templates_refuse_character_references_and_other_methods():
    body = _body("@id = &#49;2")
    assert make_template(body, parse_request(body), Action("xtk:queryDef", "ExecuteQuery"), _target(), None,
                         True) is None
    plain = _body("@id = 12")
    assert make_template(plain, parse_request(plain), Action("xtk:queryDef", "ExecuteQuery"), _target(), None,
                         False) is None  # an implementation that wants parsed documents


@pytest.mark.parametrize("value", ["plain", 'q"uote & <tag> >', "tab\tnew\nline\rcr", "ünïcødé ☃", "bad\x01char",
                                   "", None, 42, 2**40, 1.5, datetime(2024, 2, 29, 13, 14, 15, 123000)])
def test_row_text_is_what_lxml_writes(value):
    kind = "long" if isinstance(value, int) else "double" if isinstance(value, float) else \
        "datetime" if isinstance(value, datetime) else "string"
    shaper = RowShaper("recipient", [(0, OutSpec((), "id", "long")), (1, OutSpec((), "v", kind)),
                                     (2, OutSpec(("folder",), "name", "string"))])
    row = (7, value, "f&<1")
    assert shaper.single_text(row) == etree.tostring(shaper.single(row), encoding="unicode")


def test_row_text_declines_repeated_names():
    shaper = RowShaper("recipient", [(0, OutSpec((), "id", "long")), (1, OutSpec((), "id", "long"))])
    assert shaper.single_text((1, 2)) is None


def test_one_xml_output_reply_is_the_general_reply():
    xml = '<recipient id="1" email="a&amp;b@x.org"/>'
    general = build_response("ExecuteQuery", "xtk:queryDef", [Output("pdomOutput", "ns:Element", xml=xml)])
    assert build_xml_response("ExecuteQuery", "xtk:queryDef", "pdomOutput", xml) == general
