"""Shared pieces of the write engine: failures, schema lookups, field parsing and validation,
defaults and audit columns (data-model.md §1.5-1.12, docs/write.md)."""

from __future__ import annotations

import re
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .write_plan import Plan

from lxml import etree

from ..schema.model import Attribute, Element, Schema
from ..schema.registry import SchemaRegistry
from ..schema.types import XTK_TYPES
from .errors import DataApiError, echo, unknown_schema
from .values import format_value, parse_value

SAVE_FAILED = "XSV-350023"  # Unable to save document of type '...'. (Campaign's code)
DELETE_FAILED = "XSV-350025"  # invented: Unable to delete documents of type '...'.
INVALID_ARGUMENT = "XSV-350026"  # invented: bad method argument (count, sequence, primary key)
CHUNK = 1000  # values per IN list: far below every engine's parameter limit
_EMPTY = (None, "", 0)
_SMALL_INTEGERS = {"byte": 127, "short": 32767, "long": 2**31 - 1, "int64": 2**63 - 1}


class WriteFailure(Exception):
    """A planning or execution failure: `lines` are the causes, innermost first."""

    def __init__(self, *lines: str, client: bool = True):
        self.lines = [line for line in lines if line]
        self.client = client
        super().__init__("\n".join(self.lines))


def fail_save(schema_label: str, failure: WriteFailure) -> DataApiError:
    return DataApiError(SAVE_FAILED, f"Unable to save document of type '{schema_label}'.", failure.lines,
                        client=failure.client)


def now_ms() -> datetime:
    """The current UTC time at millisecond precision (what documents show), naive as stored."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# --- schema helpers -------------------------------------------------------------------------


@cache
def pk_attributes(schema: Schema) -> list[Attribute]:
    key = schema.primary_key
    if key is None:
        raise WriteFailure(f"Schema '{schema.full_label}' has no key")
    attrs = [schema.attribute(xpath) for xpath in key.fields]
    if any(a is None or a.sqlname is None for a in attrs):
        raise WriteFailure(f"The primary key of schema '{schema.full_label}' is not stored in columns")
    return [a for a in attrs if a is not None]


@cache
def pk_columns(schema: Schema) -> list[str]:
    return [a.sqlname for a in pk_attributes(schema) if a.sqlname]


def column_attr(schema: Schema, xpath: str) -> Attribute:
    attr = schema.attribute(xpath)
    if attr is None or attr.sqlname is None:
        raise WriteFailure(f"'{echo(xpath)}' is not a field stored in a column of schema '{schema.full_label}'")
    return attr


def collection_links(schema: Schema) -> list[Element]:
    """Links whose rows point at this schema's rows: 1-N collections and reverse 1-1 links."""
    if schema.root is None:
        return []
    return [e for e in schema.root.walk_elements() if e.is_link and (e.unbound or e.reverse)]


def owned_links(schema: Schema) -> list[Element]:
    """N-1 links declared with own/owncopy integrity: deleting the row deletes the target."""
    return [e for e in schema.links() if not e.reverse and e.integrity in ("own", "owncopy")]


def empty_value(attr: Attribute) -> Any:
    """What an unset field holds: 0 for numbers (NOT NULL DEFAULT 0), NULL otherwise."""
    return 0 if XTK_TYPES[attr.type].not_null else None


def to_db(attr: Attribute, value: Any) -> Any:
    """A parsed value as the driver must receive it (booleans are SMALLINT columns)."""
    family = XTK_TYPES[attr.type].family
    if value is None:
        return empty_value(attr)
    if isinstance(value, bool):
        return int(value)
    if family == "float":
        return float(value)
    return value


def compiled_node(schema: Schema, xpath: str) -> etree._Element | None:
    """The compiled-schema XML node of an xpath: attributes the model does not carry
    (a link's `default`, `defOnDuplicate`) are read there."""
    if schema.compiled_xml is None:
        return None
    node = schema.compiled_xml.find(f"element[@name='{schema.name}']")
    for step in [s for s in xpath.strip("[]").split("/") if s]:
        if node is None:
            return None
        if step.startswith("@"):
            return node.find(f"attribute[@name='{step[1:]}']")
        node = node.find(f"element[@name='{step}']")
    return node


@cache
def enumeration_of(registry: SchemaRegistry, attr: Attribute):  # noqa: ANN201 - Enumeration | None
    if not attr.enum:
        return None
    owner = registry.find(attr.enum.rsplit(":", 1)[0])
    return owner.enumeration(attr.enum) if owner else None


def parse_field(registry: SchemaRegistry, attr: Attribute, text: str) -> Any:
    """Document text of a field -> Python value, validated (type, length, enumeration)."""
    enum = enumeration_of(registry, attr) if attr.enum else None
    if enum is not None and text != "":
        match = enum.by_value(text) or enum.by_name(text)
        if match is None:
            raise WriteFailure(f"The value '{echo(text)}' is not valid for the '{attr.enum}' enumeration "
                               f"of the '{attr.xpath}' field")
        text = match.value
    if attr.type == "string":
        value: Any = text or None  # the common cases, without the generic parser's dispatch
    elif attr.type in _SMALL_INTEGERS and text.isdigit() and len(text) < 6:
        value = int(text)
        if value > _SMALL_INTEGERS[attr.type]:
            raise WriteFailure(f"Field '{attr.xpath}': invalid {attr.type} value '{text}': out of range")
    else:
        try:
            value = parse_value(attr.type, text)
        except ValueError as exc:
            raise WriteFailure(f"Field '{attr.xpath}': {exc}") from None
    if isinstance(value, str) and attr.length and len(value) > attr.length and attr.type in ("string", "uuid"):
        raise WriteFailure(f"The value of field '{attr.xpath}' is too long ({len(value)} characters, "
                           f"at most {attr.length})")
    return value


# --- defaults -------------------------------------------------------------------------------

_STRING_LITERAL = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)\"""")
_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\(\s*(.*?)\s*\)")
UNSET = object()


class Defaults:
    """Evaluates the default expressions Campaign schemas commonly use (docs/write.md lists them);
    anything else is left unset, so the column keeps its database default."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self._folders: dict[str, Any] = {}
        self._rules: dict[str, list[tuple[Attribute, str | None, bool, bool]]] = {}
        self._values: dict[tuple[str, str], Any] = {}
        self._templates: dict[tuple[str, frozenset[str]], InsertDefaults] = {}

    def evaluate(self, expr: str, xtk_type: str) -> Any:
        text = expr.strip()
        literal = _STRING_LITERAL.fullmatch(text)
        if literal:
            raw = literal.group(1) if literal.group(1) is not None else literal.group(2)
            return self._parse(xtk_type, re.sub(r"\\(.)", r"\1", raw))
        if _NUMBER.fullmatch(text) or text.lower() in ("true", "false"):
            return self._parse(xtk_type, text)
        if text == "$(loginId)":
            return self.plan.ctx.login_id
        if text == "$(login)":
            return self.plan.ctx.login or None
        call = _CALL.fullmatch(text)
        if not call:
            return UNSET
        name, argument = call.group(1).lower(), call.group(2)
        if name in ("getdate", "now"):
            return self.plan.now.date() if xtk_type == "date" else self.plan.now
        if name == "newuuid":
            return str(uuid.uuid4())
        if name == "defaultfolder":
            arg = _STRING_LITERAL.fullmatch(argument)
            return self.folder_id(arg.group(1) or arg.group(2) or "") if arg else UNSET
        return UNSET

    @staticmethod
    def _parse(xtk_type: str, text: str) -> Any:
        try:
            return parse_value(xtk_type, text)
        except ValueError:
            return UNSET

    def folder_id(self, name: str) -> Any:
        if name not in self._folders:
            folder = self.plan.registry.find("xtk:folder")
            found = None
            if folder is not None and folder.has_table:
                found = self.plan.first_value(folder, "iFolderId", "sName", name)
            self._folders[name] = found if found is not None else UNSET
        return self._folders[name]

    def rules(self, schema: Schema) -> list[tuple[Attribute, str | None, bool, bool]]:
        """(field, default expression or enumeration default, defOnDuplicate) per column, and the
        FK fields of links with a default; read from the schema once per plan."""
        cached = self._rules.get(schema.id)
        if cached is None:
            cached = _RULES.get(schema)
            if cached is None:
                cached = _RULES[schema] = self._schema_rules(schema)
            self._rules[schema.id] = cached
        return cached

    def _schema_rules(self, schema: Schema) -> list[tuple[Attribute, str | None, bool, bool]]:
        rules: list[tuple[Attribute, str | None, bool, bool]] = []
        for attr in schema.sql_attributes():
            node = compiled_node(schema, attr.xpath)
            on_duplicate = node is not None and node.get("defOnDuplicate") in ("true", "1")
            expr = attr.default
            if expr is None:
                enum = enumeration_of(self.plan.registry, attr)
                match = (enum.by_name(enum.default) or enum.by_value(enum.default)) if enum and enum.default else None
                expr = f"'{match.value}'" if match is not None else None
            if expr is not None or on_duplicate:
                rules.append((attr, expr, on_duplicate, False))
        for link in schema.links():
            node = compiled_node(schema, link.xpath)
            fk = schema.attribute(link.joins[0].src) if len(link.joins) == 1 else None
            if node is not None and node.get("default") and fk is not None and fk.sqlname:
                rules.append((fk, node.get("default"), False, True))
        return rules

    def db_value(self, expr: str, attr: Attribute) -> Any:
        """evaluate() as the driver takes it, memoised: every default but newuuid() is constant
        within one plan."""
        key = (expr, attr.type)
        if key in self._values:
            return self._values[key]
        value = self.evaluate(expr, attr.type)
        if value is not UNSET:
            value = to_db(attr, value)
        if not _volatile(expr):
            self._values[key] = value
        return value

    def apply_insert(self, schema: Schema, values: dict[str, Any], *, duplicate: bool = False) -> None:
        """Fill columns missing from `values` with their defaults (or, for Duplicate, overwrite the
        fields flagged defOnDuplicate)."""
        if not duplicate:
            self.insert_defaults(schema, frozenset(values)).apply(self, values)
            return
        self.apply_audit(schema, values, insert=True, force=True)
        for attr, expr, on_duplicate, _link_fk in self.rules(schema):
            if on_duplicate:
                value = self.db_value(expr, attr) if expr else UNSET
                if value is not UNSET:
                    values[attr.sqlname or ""] = value

    def insert_defaults(self, schema: Schema, present: frozenset[str]) -> InsertDefaults:
        """What an insert whose document gives the columns `present` gets from the audit columns
        and the defaults: resolved once per plan and column set (a collection's rows share it),
        the rules applied in the order apply_insert always used."""
        cached = self._templates.get((schema.id, present))
        if cached is not None:
            return cached
        audit: dict[str, Any] = {}
        self.apply_audit(schema, audit, insert=True)
        fill = {c: v for c, v in audit.items() if c not in present}
        fresh: list[tuple[str, str, Attribute]] = []
        empty_fk: list[tuple[str, str, Attribute]] = []
        for attr, expr, _on_duplicate, link_fk in self.rules(schema):
            name = attr.sqlname or ""
            if link_fk and name in present:
                if expr:  # a link FK of 0 is the empty link: its default applies, row by row
                    empty_fk.append((name, expr, attr))
                continue
            # other given values win; an absent link FK already holding a non-empty default too
            if name in present or (name in fill and (not link_fk or fill[name] is _FRESH or fill[name] not in _EMPTY)):
                continue
            value = self.db_value(expr, attr) if expr else UNSET
            if value is UNSET:
                continue
            if _volatile(expr or ""):
                fill[name] = _FRESH
                fresh.append((name, expr or "", attr))
            else:
                fill[name] = value
        template = InsertDefaults({c: v for c, v in fill.items() if v is not _FRESH}, tuple(fresh), tuple(empty_fk))
        self._templates[(schema.id, present)] = template
        return template

    def apply_audit(self, schema: Schema, values: dict[str, Any], *, insert: bool, force: bool = False) -> None:
        """created/lastModified/createdBy/modifiedBy, where the schema has them; values given in
        the document win (imports keep their dates) unless `force`."""
        for attr, on_insert_only in audit_fields(schema):
            if (insert or not on_insert_only) and attr.sqlname and (force or attr.sqlname not in values):
                if attr.name.endswith("-id"):
                    values[attr.sqlname] = self.plan.ctx.login_id
                else:
                    values[attr.sqlname] = self.plan.now.date() if attr.type == "date" else self.plan.now


# Per schema: its default and defOnDuplicate rules, read from the compiled XML once (schemas do
# not change while loaded).
_RULES: weakref.WeakKeyDictionary[Schema, list[tuple[Attribute, str | None, bool, bool]]] = \
    weakref.WeakKeyDictionary()
_FRESH = object()  # a default evaluated again for every row (NewUUID())


def _volatile(expr: str) -> bool:
    return "uuid" in expr.lower()


@dataclass(frozen=True, slots=True)
class InsertDefaults:
    """The defaults of inserts that give one set of columns (Defaults.insert_defaults)."""

    fill: dict[str, Any]  # absent columns -> constant value (audit columns, literals, folders...)
    fresh: tuple[tuple[str, str, Attribute], ...]  # absent columns whose default differs per row
    empty_fk: tuple[tuple[str, str, Attribute], ...]  # given link FKs that take the link default when empty

    def apply(self, defaults: Defaults, values: dict[str, Any]) -> None:
        values.update(self.fill)
        for name, expr, attr in self.fresh:
            values[name] = defaults.db_value(expr, attr)
        for name, expr, attr in self.empty_fk:
            if values.get(name) in _EMPTY:
                value = defaults.db_value(expr, attr)
                if value is not UNSET:
                    values[name] = value


@cache
def audit_fields(schema: Schema) -> list[tuple[Attribute, bool]]:
    """The audit columns a schema has, with whether they are only set on insert."""
    found = []
    for name, insert_only in (("created", True), ("lastModified", False), ("createdBy-id", True),
                              ("modifiedBy-id", False)):
        attr = schema.attribute("@" + name)
        dated = attr is not None and attr.type in ("datetime", "datetimetz", "datetimenotz", "date")
        if attr is not None and attr.sqlname and (dated or name.endswith("-id")):
            found.append((attr, insert_only))
    return found


# --- documents ------------------------------------------------------------------------------


def load_document(document: Any, root_name: str | None = None) -> etree._Element:
    """An lxml element, XML text, or the SimpleJson dict form."""
    from ..xmlsafe import XMLInputError, parse_xml
    from .simplejson import RepresentationError, json_document_to_xml

    try:
        if isinstance(document, etree._Element):
            return document
        if isinstance(document, str | bytes):
            return parse_xml(document, source="document")
        if isinstance(document, dict):
            return json_document_to_xml(document, root_name)
    except (XMLInputError, RepresentationError) as exc:
        raise WriteFailure(str(exc)) from None
    raise WriteFailure(f"Unsupported document type {type(document).__name__}")


def schema_of(registry: SchemaRegistry, root: etree._Element) -> Schema:
    schema_id = root.get("xtkschema")
    if not schema_id:
        raise WriteFailure(f"The document '{echo(str(root.tag))}' has no 'xtkschema' attribute")
    schema = registry.find(schema_id)
    if schema is None:
        raise unknown_schema(schema_id)
    return schema


# --- per-column converters --------------------------------------------------------------------

Converter = Callable[[str], Any]
_MEMO_LIMIT = 4096  # distinct texts remembered per column (dates, enumerations, small numbers)

# Secrets are never stored in clear (docs/write.md "Passwords and secrets"): operator passwords
# are hashed on the way in; technical-account secrets are only set by the command line.
SECRET_FIELDS = {("xtk:operator", "access/@password"): "hash", ("xtk:technicalAccount", "@secretHash"): "refuse"}
ARGON2_PREFIX = "$argon2"


def _secret_converter(schema_id: str, attr: Attribute, rule: str, base: Converter) -> Converter:
    if rule == "refuse":
        def refuse(text: str) -> Any:
            raise WriteFailure(f"Field '{attr.xpath}' of schema '{schema_id}' cannot be written through Write: "
                               "technical-account secrets are set with 'opencampaign account create'")
        return refuse

    from ..security.passwords import hash_password

    def hashed(text: str) -> Any:
        value = base(text)
        if value and not value.startswith(ARGON2_PREFIX):
            return hash_password(value)  # a value that already is an argon2 hash is kept as is
        return value
    return hashed


@cache
def column_converter(registry: SchemaRegistry, schema_id: str, attr: Attribute) -> Converter:
    """Document text -> the value the driver takes, for one column field: parse_field + to_db,
    resolved once per column (fast path for plain strings, a bounded memo for the other types,
    whose texts repeat: dates, enumerations, flags)."""
    if attr.type in ("string", "uuid") and not attr.enum:
        length = attr.length or 0
        xpath = attr.xpath

        def string(text: str) -> Any:
            if length and len(text) > length:
                raise WriteFailure(f"The value of field '{xpath}' is too long ({len(text)} characters, "
                                   f"at most {length})")
            return text or None
        base: Converter = string if attr.type == "string" else (lambda text: to_db(attr, parse_field(registry, attr, text)))
    else:
        memo: dict[str, Any] = {}

        def memoised(text: str) -> Any:
            try:
                return memo[text]
            except KeyError:
                value = to_db(attr, parse_field(registry, attr, text))
                if len(memo) < _MEMO_LIMIT:
                    memo[text] = value
                return value
        base = memoised
    rule = SECRET_FIELDS.get((schema_id, attr.xpath))
    return _secret_converter(schema_id, attr, rule, base) if rule else base


BulkConverter = Callable[[Sequence[str]], list[Any]]


def bulk_converter(registry: SchemaRegistry, schema_id: str, attr: Attribute) -> BulkConverter:
    """column_converter for a whole column of texts at once (the batch path): one call per
    column, and plain strings without a call per value."""
    convert = column_converter(registry, schema_id, attr)
    if (schema_id, attr.xpath) in SECRET_FIELDS:
        return lambda texts: list(map(convert, texts))
    if attr.type != "string" or attr.enum:
        def distinct(texts: Sequence[str]) -> list[Any]:
            # Dates, enumerations, numbers repeat: each distinct text is converted once.
            table = {text: convert(text) for text in set(texts)}
            return list(map(table.__getitem__, texts))
        return distinct
    length = attr.length or 0

    def strings(texts: Sequence[str]) -> list[Any]:
        if length and texts and max(map(len, texts)) > length:
            for text in texts:
                convert(text)  # raises the converter's failure for the first text too long
        if "" not in texts:  # the usual column: nothing to clear, the texts are the values
            return texts if isinstance(texts, list) else list(texts)
        return [text or None for text in texts]
    return strings


@dataclass(frozen=True, slots=True)
class FieldEntry:
    """What one attribute name of a schema element is, for the document parser."""

    attr: Attribute
    column: str | None  # SQL column, None for an XML (mData) field
    convert: Converter | None  # None: calculated field, ignored
    bulk: BulkConverter | None = None  # column fields: convert for a column of texts


@cache
def field_table(registry: SchemaRegistry, schema_id: str, definition: Element) -> dict[str, FieldEntry]:
    """Attribute name -> FieldEntry for the attributes of one schema element, built once."""
    table: dict[str, FieldEntry] = {}
    for name, attr in definition.attributes.items():
        if attr.expr is not None:
            table[name] = FieldEntry(attr, attr.sqlname, None)
        elif attr.sqlname is not None:
            table[name] = FieldEntry(attr, attr.sqlname, column_converter(registry, schema_id, attr),
                                     bulk_converter(registry, schema_id, attr))
        else:
            table[name] = FieldEntry(attr, None, _xml_converter(registry, schema_id, attr))
    return table


def _xml_converter(registry: SchemaRegistry, schema_id: str, attr: Attribute) -> Converter:
    def convert(text: str) -> str:
        return format_value(attr.type, parse_field(registry, attr, text))
    rule = SECRET_FIELDS.get((schema_id, attr.xpath))
    return _secret_converter(schema_id, attr, rule, convert) if rule else convert
