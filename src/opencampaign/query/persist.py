"""xtk:persist on the storage: the write plan and its execution, defaults, cascades, and the
NewInstance / DeleteCollection / GetNewIds / Duplicate methods (data-model.md §4, docs/write.md).

Every write (Write, WriteCollection, DeleteCollection) is planned first with plain reads: rows
are reconciled, ids drawn, defaults evaluated, cascades expanded and unique keys checked. Only
then are the write transactions opened, one per database touched, and the statements run.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, suppress
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from lxml import etree

from ..context import CallContext
from ..schema.model import XML_DATA_COLUMN, Attribute, Element, Schema
from ..schema.registry import SchemaRegistry
from ..schema.types import XTK_TYPES
from ..storage.placement import CLOUD, LOCAL
from ..storage.replication import replicate
from ..storage.storage import Storage
from . import xmldata
from .errors import DataApiError, database_error, echo, unknown_schema
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
                table = self.plan.table(folder)
                found = self.plan.reader(folder).execute(
                    sa.select(table.c.iFolderId).where(table.c.sName == name).limit(1)).scalar()
            self._folders[name] = found if found is not None else UNSET
        return self._folders[name]

    def rules(self, schema: Schema) -> list[tuple[Attribute, str | None, bool, bool]]:
        """(field, default expression or enumeration default, defOnDuplicate) per column, and the
        FK fields of links with a default; read from the schema once per plan."""
        cached = self._rules.get(schema.id)
        if cached is not None:
            return cached
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
        self._rules[schema.id] = rules
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
        if "uuid" not in expr.lower():
            self._values[key] = value
        return value

    def apply_insert(self, schema: Schema, values: dict[str, Any], *, duplicate: bool = False) -> None:
        """Fill columns missing from `values` with their defaults (or, for Duplicate, overwrite the
        fields flagged defOnDuplicate)."""
        self.apply_audit(schema, values, insert=True, force=duplicate)
        for attr, expr, on_duplicate, link_fk in self.rules(schema):
            name = attr.sqlname or ""
            if duplicate and not on_duplicate:
                continue
            # a link FK of 0 is the empty link: its default applies; other given values win
            if not duplicate and (values.get(name) not in _EMPTY if link_fk else name in values):
                continue
            value = self.db_value(expr, attr) if expr else UNSET
            if value is not UNSET:
                values[name] = value

    def apply_audit(self, schema: Schema, values: dict[str, Any], *, insert: bool, force: bool = False) -> None:
        """created/lastModified/createdBy/modifiedBy, where the schema has them; values given in
        the document win (imports keep their dates) unless `force`."""
        for attr, on_insert_only in audit_fields(schema):
            if (insert or not on_insert_only) and attr.sqlname and (force or attr.sqlname not in values):
                if attr.name.endswith("-id"):
                    values[attr.sqlname] = self.plan.ctx.login_id
                else:
                    values[attr.sqlname] = self.plan.now.date() if attr.type == "date" else self.plan.now


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


# --- the plan -------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Row:
    """One physical row touched by a write. `pk` is its identity in the database (or its new
    primary key); `known` the column values known so far; `changes` what will be written."""

    schema: Schema
    pk: tuple
    state: str  # insert | update | delete | exists
    known: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, Any] = field(default_factory=dict)
    memo: etree._Element | None = None
    memo_loaded: bool = False
    generated_pk: bool = False

    def set(self, values: dict[str, Any]) -> None:
        self.known.update(values)
        self.changes.update(values)
        if self.state == "exists" and values:
            self.state = "update"


@dataclass(eq=False)
class Reset:
    """Foreign keys set back to empty (`normal` integrity) when their target is deleted."""

    schema: Schema
    match: list[str]  # FK columns
    values: list[tuple]  # deleted targets' key values
    empty: dict[str, Any]


class Plan:
    def __init__(self, storage: Storage, registry: SchemaRegistry, ctx: CallContext):
        self.storage = storage
        self.registry = registry
        self.ctx = ctx
        self.now = now_ms()
        self.rows: dict[tuple[str, tuple], Row] = {}
        self.order: list[Row] = []
        self.index: dict[tuple[str, tuple[str, ...]], dict[tuple, Row]] = {}
        self.resets: list[Reset] = []
        self.defaults = Defaults(self)
        self._stack = ExitStack()
        self._readers: dict[str, sa.Connection] = {}
        self._ids: dict[str, list[int]] = {}

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._readers.clear()
        self._stack.close()

    # databases
    def role(self, schema: Schema) -> str:
        return LOCAL if self.storage.single else self.storage.home(schema.id)

    def table(self, schema: Schema) -> sa.Table:
        if not schema.has_table:
            raise WriteFailure(f"Schema '{schema.full_label}' has no table")
        return self.storage.table(schema.id, self.role(schema))

    def reader(self, schema: Schema) -> sa.Connection:
        role = self.role(schema)
        if role not in self._readers:
            self._readers[role] = self._stack.enter_context(self.storage.engine(role).connect())
        return self._readers[role]

    def new_pk(self, schema: Schema) -> Any:
        if schema.autouuid:
            return str(uuid.uuid4())
        buffer = self._ids.setdefault(schema.pk_sequence or "XtkNewId", [])
        if not buffer:
            self.reserve_ids(schema, 1)
        return buffer.pop()

    def reserve_ids(self, schema: Schema, count: int) -> None:
        """Draw the ids a batch is about to need in one allocator call (one sequence commit)."""
        if not schema.autopk or schema.autouuid:
            return
        name = schema.pk_sequence or "XtkNewId"
        buffer = self._ids.setdefault(name, [])
        if count > len(buffer):
            buffer[:0] = reversed(self.storage.sequences.next_ids(name, count - len(buffer)))

    # rows
    def get(self, schema: Schema, pk: tuple) -> Row | None:
        return self.rows.get((schema.id, pk))

    def add(self, row: Row) -> Row:
        existing = self.rows.get((row.schema.id, row.pk))
        if existing is not None:
            return existing
        self.rows[(row.schema.id, row.pk)] = row
        self.order.append(row)
        return row

    def register(self, row: Row, cols: tuple[str, ...]) -> None:
        values = tuple(row.known.get(c) for c in cols)
        self.index.setdefault((row.schema.id, cols), {})[values] = row

    def indexed(self, schema: Schema, cols: tuple[str, ...], values: tuple) -> Row | None:
        row = self.index.get((schema.id, cols), {}).get(values)
        if row is None or row.state == "delete":
            return None
        if tuple(row.known.get(c) for c in cols) != values:
            return None  # the row's key changed since it was indexed
        return row

    def fetch(self, schema: Schema, cols: Iterable[str], match: tuple[str, ...],
              values: Iterable[tuple]) -> Iterator[dict[str, Any]]:
        """Rows whose `match` columns equal one of `values` (chunked IN queries), id-0 row excluded."""
        table = self.table(schema)
        wanted = list(dict.fromkeys([*cols, *match]))
        distinct = list(dict.fromkeys(values))
        zero = self._zero_row_filter(schema, table)
        for start in range(0, len(distinct), CHUNK):
            chunk = distinct[start:start + CHUNK]
            if len(match) == 1:
                condition = table.c[match[0]].in_([v[0] for v in chunk])
            else:
                condition = sa.tuple_(*[table.c[c] for c in match]).in_(chunk)
            query = sa.select(*[table.c[c] for c in wanted]).where(condition)
            if zero is not None:
                query = query.where(zero)
            for record in self.reader(schema).execute(query):
                yield dict(zip(wanted, record, strict=True))

    @staticmethod
    def _zero_row_filter(schema: Schema, table: sa.Table) -> sa.ColumnElement[bool] | None:
        if not schema.autopk or schema.autouuid:
            return None
        pk = schema.attribute("@id")
        return table.c[pk.sqlname] != 0 if pk is not None and pk.sqlname else None

    def load_memo(self, row: Row) -> None:
        """The stored mData of an existing row, read once before the first XML merge."""
        if row.memo_loaded:
            return
        row.memo_loaded = True
        if row.state == "insert":
            return
        cols = tuple(pk_columns(row.schema))
        for record in self.fetch(row.schema, [XML_DATA_COLUMN], cols, [row.pk]):
            row.memo = xmldata.read_memo(record.get(XML_DATA_COLUMN))


# --- cascades -------------------------------------------------------------------------------


def expand_deletes(plan: Plan) -> None:
    """Apply link integrity to every deleted row: own/owncopy delete the linked rows (recursively),
    normal resets their foreign key, define refuses the delete while linked rows remain."""
    done: set[int] = set()
    defines: list[tuple[Schema, Element, Schema, list[str], list[tuple]]] = []
    while True:
        pending = [r for r in plan.order if r.state == "delete" and id(r) not in done]
        if not pending:
            break
        by_schema: dict[str, list[Row]] = {}
        for row in pending:
            done.add(id(row))
            by_schema.setdefault(row.schema.id, []).append(row)
        for rows in by_schema.values():
            schema = rows[0].schema
            _cascade(plan, schema, rows, defines)
    for schema, link, child, match, values in defines:
        remaining = [r for r in plan.fetch(child, pk_columns(child), tuple(match), values)
                     if (g := plan.get(child, tuple(r[c] for c in pk_columns(child)))) is None or g.state != "delete"]
        if remaining:
            raise WriteFailure(f"Unable to delete: {len(remaining)} record(s) of '{child.full_label}' still reference "
                               f"this {schema.label_singular.lower()} (link '{link.name}', integrity 'define')")


def _cascade(plan: Plan, schema: Schema, rows: list[Row], defines: list) -> None:
    pks = pk_columns(schema)
    needed: set[str] = set()
    links = [link for link in collection_links(schema) if link.integrity in ("own", "owncopy", "normal", "define")]
    owned = owned_links(schema)
    for link in [*links, *owned]:
        for join in link.joins:
            needed.add(column_attr(schema, join.src).sqlname or "")
    missing = [c for c in needed if c not in pks and any(c not in r.known for r in rows)]
    if missing:
        fetched = {tuple(r[c] for c in pks): r for r in plan.fetch(schema, missing, tuple(pks), [r.pk for r in rows])}
        for row in rows:
            row.known.update({k: v for k, v in fetched.get(row.pk, {}).items() if k not in row.known})
    for row in rows:
        row.known.update(dict(zip(pks, row.pk, strict=True)))
    for link in links:
        child = plan.registry.get(link.target or "")
        if not child.has_table:
            continue
        src = [column_attr(schema, j.src).sqlname or "" for j in link.joins]
        dst_attrs = [column_attr(child, j.dst) for j in link.joins]
        dst = [a.sqlname or "" for a in dst_attrs]
        values = [v for v in {tuple(r.known.get(c) for c in src) for r in rows} if not all(x in _EMPTY for x in v)]
        if not values:
            continue
        if link.integrity == "normal":
            plan.resets.append(Reset(child, dst, values, {a.sqlname or "": empty_value(a) for a in dst_attrs}))
        elif link.integrity == "define":
            defines.append((schema, link, child, dst, values))
        else:
            child_pks = pk_columns(child)
            for record in plan.fetch(child, child_pks, tuple(dst), values):
                key = tuple(record[c] for c in child_pks)
                row = plan.add(Row(child, key, "delete", known=dict(record)))
                row.state = "delete"
    for link in owned:
        target = plan.registry.get(link.target or "")
        src = [column_attr(schema, j.src).sqlname or "" for j in link.joins]
        dst = tuple(column_attr(target, j.dst).sqlname or "" for j in link.joins)
        values = [v for v in {tuple(r.known.get(c) for c in src) for r in rows} if not all(x in _EMPTY for x in v)]
        target_pks = pk_columns(target)
        for record in plan.fetch(target, target_pks, dst, values):
            row = plan.add(Row(target, tuple(record[c] for c in target_pks), "delete", known=dict(record)))
            row.state = "delete"


# --- unique keys ----------------------------------------------------------------------------


def check_unique_keys(plan: Plan) -> None:
    """Refuse inserts whose unique key already exists (in the database or earlier in the plan)
    before any statement runs, with Campaign's message."""
    inserts: dict[str, list[Row]] = {}
    for row in plan.order:
        if row.state == "insert":
            inserts.setdefault(row.schema.id, []).append(row)
    for rows in inserts.values():
        schema = rows[0].schema
        pks = pk_columns(schema)
        for key in schema.keys:
            if key.no_db_index:
                continue
            cols = tuple(column_attr(schema, f).sqlname or "" for f in key.fields)
            if schema.autopk and list(cols) == pks and all(r.generated_pk for r in rows):
                continue
            seen: dict[tuple, Row] = {}
            for row in rows:
                values = tuple(row.known.get(c) for c in cols)
                if any(v is None for v in values):
                    continue  # NULLs never collide in a unique index
                if values in seen:
                    raise duplicate_key(schema, values)
                seen[values] = row
            for record in plan.fetch(schema, pks, cols, list(seen)):
                existing = plan.get(schema, tuple(record[c] for c in pks))
                if existing is not None and (existing.state == "delete"
                                             or tuple(existing.known.get(c, record[c]) for c in cols)
                                             != tuple(record[c] for c in cols)):
                    continue  # deleted or re-keyed by this same write
                raise duplicate_key(schema, tuple(record[c] for c in cols))


def duplicate_key(schema: Schema, values: tuple | None, engine_line: str = "") -> WriteFailure:
    shown = "" if values is None else " '" + echo(",".join("" if v is None else str(v) for v in values)) + "'"
    return WriteFailure(f"A '{schema.label_singular}' with the same key{shown} already exists.", engine_line)


# --- access: sysFilter writeAccess ---------------------------------------------------------


class _NotConstant(Exception):
    """An expression that depends on the row: not decidable before reading it."""


def _context_value(node: Any, ctx: CallContext) -> Any:
    from .expr import ast

    if isinstance(node, ast.Boolean | ast.String | ast.Number):
        return node.value
    if isinstance(node, ast.Null):
        return None
    if isinstance(node, ast.Variable):
        if node.name == "loginId":
            return ctx.login_id
        if node.name == "login":
            return ctx.login
        if node.name in ctx.variables:
            return ctx.variables[node.name]
        raise _NotConstant(node.name)
    if isinstance(node, ast.FunctionCall) and node.name.lower() == "hasnamedright" and len(node.args) == 1:
        return ctx.has_right(str(_context_value(node.args[0], ctx)))
    if isinstance(node, ast.Unary) and node.op == "NOT":
        return not _context_value(node.operand, ctx)
    if isinstance(node, ast.Binary):
        left, right = _context_value(node.left, ctx), _context_value(node.right, ctx)
        if isinstance(left, bool) or isinstance(right, bool):
            left, right = bool(left), bool(right)
        operations = {"AND": lambda: bool(left) and bool(right), "OR": lambda: bool(left) or bool(right),
                      "=": lambda: left == right, "<>": lambda: left != right}
        if node.op in operations:
            return operations[node.op]()
    raise _NotConstant(type(node).__name__)


def write_denied(schema: Schema, ctx: CallContext) -> bool:
    """Whether the schema's `writeAccess` filter forbids this caller any write: a condition whose
    `enabledIf` holds for the caller and whose `expr` is constant false (`expr="FALSE"`, as on
    xtk:operator). Row-dependent filters are not enforced here (docs/write.md)."""
    from .expr.parser import parse_expression

    main = compiled_node(schema, "")
    for condition in main.iterfind("sysFilter[@name='writeAccess']/condition") if main is not None else ():
        try:
            enabled = condition.get("enabledIf")
            if enabled and not _context_value(parse_expression(enabled), ctx):
                continue
            if not _context_value(parse_expression(condition.get("expr") or "TRUE"), ctx):
                return True
        except _NotConstant:
            continue
        except Exception:  # noqa: BLE001 - an unparsable filter denies rather than opens
            return True
    return False


def check_write_access(plan: Plan) -> None:
    for schema in {row.schema.id: row.schema for row in plan.order if row.state in ("insert", "update", "delete")}.values():
        if write_denied(schema, plan.ctx):
            raise WriteFailure(f"You are not allowed to modify documents of type '{schema.full_label}' "
                               f"(access filter 'writeAccess').")


# --- statements and execution ---------------------------------------------------------------


@dataclass(eq=False)
class Statement:
    kind: str  # delete | reset | update | insert
    schema: Schema
    role: str
    table: sa.Table
    pks: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    reset: Reset | None = None


def build_statements(plan: Plan) -> list[Statement]:
    """Deletes first (a key freed by a delete may be inserted again), then FK resets, updates,
    and inserts grouped by column set so each group is one executemany."""
    deletes: dict[str, Statement] = {}
    updates: dict[tuple[str, tuple[str, ...]], Statement] = {}
    inserts: dict[tuple[str, tuple[str, ...]], Statement] = {}
    for row in plan.order:
        schema = row.schema
        if row.memo is not None and row.state in ("insert", "update") and row.memo_loaded:
            row.changes[XML_DATA_COLUMN] = xmldata.write_memo(row.memo)
        pks = pk_columns(schema)
        if row.state == "delete":
            statement = deletes.setdefault(schema.id, _statement(plan, "delete", schema))
            statement.rows.append(dict(zip(pks, row.pk, strict=True)))
        elif row.state == "update" and row.changes:
            cols = tuple(sorted(row.changes))
            statement = updates.setdefault((schema.id, cols), _statement(plan, "update", schema))
            statement.rows.append({**{"k_" + c: v for c, v in zip(pks, row.pk, strict=True)},
                                   **{"v_" + c: row.changes[c] for c in cols}})
        elif row.state == "insert":
            values = {**dict(zip(pks, row.pk, strict=True)), **row.changes}
            cols = tuple(sorted(values))
            inserts.setdefault((schema.id, cols), _statement(plan, "insert", schema)).rows.append(values)
    resets = []
    for reset in plan.resets:
        statement = _statement(plan, "reset", reset.schema)
        statement.reset = reset
        resets.append(statement)
    return [*deletes.values(), *resets, *updates.values(), *inserts.values()]


def _statement(plan: Plan, kind: str, schema: Schema) -> Statement:
    return Statement(kind, schema, plan.role(schema), plan.table(schema), pk_columns(schema))


def _pk_condition(table: sa.Table, pks: list[str], keys: list[tuple]) -> sa.ColumnElement[bool]:
    if len(pks) == 1:
        return table.c[pks[0]].in_([k[0] for k in keys])
    return sa.tuple_(*[table.c[c] for c in pks]).in_(keys)


def _quote(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def run_statement(conn: sa.Connection, statement: Statement) -> None:
    table, pks = statement.table, statement.pks
    duck = conn.dialect.name == "duckdb"
    if statement.kind == "delete":
        keys = [tuple(r[c] for c in pks) for r in statement.rows]
        for start in range(0, len(keys), CHUNK):
            conn.execute(sa.delete(table).where(_pk_condition(table, pks, keys[start:start + CHUNK])))
    elif statement.kind == "reset":
        reset = statement.reset
        assert reset is not None
        for start in range(0, len(reset.values), CHUNK):
            chunk = reset.values[start:start + CHUNK]
            conn.execute(sa.update(table).where(_pk_condition(table, reset.match, chunk)).values(reset.empty))
    elif statement.kind == "update":
        cols = [k[2:] for k in statement.rows[0] if k.startswith("v_")]
        if duck and len(statement.rows) > 1:
            _duck_update(conn, table, pks, cols, statement.rows)
            return
        query = sa.update(table).where(sa.and_(*[table.c[c] == sa.bindparam("k_" + c) for c in pks]))
        conn.execute(query.values({c: sa.bindparam("v_" + c) for c in cols}), statement.rows)
    else:
        if duck and len(statement.rows) > 1:
            _duck_insert(conn, table, statement.rows)
            return
        conn.execute(sa.insert(table), statement.rows)


# DuckDB runs executemany one row at a time (a few thousand rows/s); a single statement reading
# column arrays through UNNEST moves the same rows 50-100x faster.
def _duck_insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    cols = list(rows[0])
    names = ", ".join(_quote(conn, table.c[c].name) for c in cols)
    unnest = ", ".join(f"UNNEST(?) AS c{i}" for i in range(len(cols)))
    picks = ", ".join(f"c{i}" for i in range(len(cols)))
    sql = f"INSERT INTO {_quote(conn, table.name)} ({names}) SELECT {picks} FROM (SELECT {unnest})"
    for start in range(0, len(rows), 20 * CHUNK):
        chunk = rows[start:start + 20 * CHUNK]
        conn.exec_driver_sql(sql, tuple([r[c] for r in chunk] for c in cols))


def _duck_update(conn: sa.Connection, table: sa.Table, pks: list[str], cols: list[str],
                 rows: list[dict[str, Any]]) -> None:
    keys = ["k_" + c for c in pks] + ["v_" + c for c in cols]
    unnest = ", ".join(f"UNNEST(?) AS p{i}" for i in range(len(keys)))
    sets = ", ".join(f"{_quote(conn, table.c[c].name)} = v.p{len(pks) + i}" for i, c in enumerate(cols))
    where = " AND ".join(f"{_quote(conn, table.name)}.{_quote(conn, table.c[c].name)} = v.p{i}"
                         for i, c in enumerate(pks))
    sql = f"UPDATE {_quote(conn, table.name)} SET {sets} FROM (SELECT {unnest}) AS v WHERE {where}"
    for start in range(0, len(rows), 20 * CHUNK):
        chunk = rows[start:start + 20 * CHUNK]
        conn.exec_driver_sql(sql, tuple([r[k] for r in chunk] for k in keys))


@dataclass(eq=False)
class _Undo:
    """What restores the first-committed database if a later commit fails."""

    table: sa.Table
    pks: list[str]
    inserted: list[tuple] = field(default_factory=list)
    before: list[dict[str, Any]] = field(default_factory=list)


def _capture(conn: sa.Connection, statement: Statement) -> _Undo:
    table, pks = statement.table, statement.pks
    undo = _Undo(table, pks)
    if statement.kind == "insert":
        undo.inserted = [tuple(r[c] for c in pks) for r in statement.rows]
        return undo
    if statement.kind == "reset":
        assert statement.reset is not None
        match, values = statement.reset.match, statement.reset.values
    elif statement.kind == "update":
        match, values = pks, [tuple(r["k_" + c] for c in pks) for r in statement.rows]
    else:
        match, values = pks, [tuple(r[c] for c in pks) for r in statement.rows]
    for start in range(0, len(values), CHUNK):
        columns = list(table.columns)
        query = sa.select(*columns).where(_pk_condition(table, match, values[start:start + CHUNK]))
        undo.before.extend(dict(zip([c.key for c in columns], r, strict=True)) for r in conn.execute(query))
    return undo


def _compensate(storage: Storage, role: str, undos: list[_Undo]) -> None:
    with storage.write(role) as conn:
        for undo in reversed(undos):
            table = undo.table
            if undo.inserted:
                conn.execute(sa.delete(table).where(_pk_condition(table, undo.pks, undo.inserted)))
            if undo.before:
                keys = [tuple(r[c] for c in undo.pks) for r in undo.before]
                conn.execute(sa.delete(table).where(_pk_condition(table, undo.pks, keys)))
                conn.execute(sa.insert(table), undo.before)


def execute(plan: Plan) -> set[str]:
    """Run the plan: one transaction per database; when two databases are written, the local
    one commits first and is restored from before-images if the cloud commit then fails.
    Returns the ids of the schemas written."""
    check_write_access(plan)
    statements = build_statements(plan)
    plan.close()  # release read snapshots before taking write locks
    if not statements:
        return set()
    roles = [r for r in (LOCAL, CLOUD) if any(s.role == r for s in statements)]
    undos: list[_Undo] = []
    opened: list[tuple[str, AbstractContextManager[sa.Connection]]] = []
    try:
        for role in roles:
            manager = plan.storage.write(role)
            conn = manager.__enter__()
            opened.append((role, manager))
            for statement in (s for s in statements if s.role == role):
                if len(roles) > 1 and role == roles[0]:
                    undos.append(_capture(conn, statement))
                try:
                    run_statement(conn, statement)
                except sa.exc.DBAPIError as exc:
                    raise map_database_error(exc, statement, conn.dialect.name, conn) from exc
    except BaseException as exc:
        _abort([m for _, m in reversed(opened)], exc)
        raise
    committed: list[str] = []
    for position, (role, manager) in enumerate(opened):
        try:
            manager.__exit__(None, None, None)
            committed.append(role)
        except Exception as exc:
            _abort([m for _, m in opened[position + 1:]], exc)
            cause = database_error(exc, plan.storage.dialect(role)).headline
            if committed:
                try:
                    _compensate(plan.storage, committed[0], undos)
                except Exception as undo_exc:  # noqa: BLE001
                    raise WriteFailure(cause, "The changes already committed in the local database could not be "
                                              f"undone: {database_error(undo_exc, plan.storage.dialect(committed[0])).headline}",
                                       client=False) from exc
            raise WriteFailure(cause, f"Commit failed in the {role} database; nothing was written", client=False) from exc
    written = {s.schema.id for s in statements}
    local_written = [sid for sid in written if plan.storage.placement.is_replicated(sid)]
    if local_written:
        replicate(plan.storage, sorted(local_written))
    return written


def _abort(managers: list[AbstractContextManager[sa.Connection]], exc: BaseException) -> None:
    """Roll back transactions still open after a failure (their own errors add nothing)."""
    for manager in managers:
        with suppress(Exception):
            manager.__exit__(type(exc), exc, exc.__traceback__)


_PG_KEY = re.compile(r"Key \((.*?)\)=\((.*)\) already exists")
_DUCK_KEY = re.compile(r'Duplicate key "(.*?)" violates')


_SQLITE_KEY = re.compile(r"UNIQUE constraint failed: (.*)")


def map_database_error(exc: sa.exc.DBAPIError, statement: Statement, dialect: str,
                       conn: sa.Connection | None = None) -> WriteFailure:
    """A driver error as Campaign words it; a unique violation names the duplicated key."""
    engine_line = database_error(exc, dialect).headline
    text = str(exc.orig) if exc.orig is not None else str(exc)
    lowered = text.lower()
    if isinstance(exc, sa.exc.IntegrityError) and ("unique" in lowered or "duplicate" in lowered):
        values: tuple | None = None
        if (m := _PG_KEY.search(text)) is not None:
            values = (m.group(2),)
        elif (m := _DUCK_KEY.search(text)) is not None:
            values = (",".join(part.split(": ", 1)[-1] for part in m.group(1).split(", ")),)
        elif (m := _SQLITE_KEY.search(text)) is not None and conn is not None:
            values = _find_duplicate(conn, statement, [c.strip().rsplit(".", 1)[-1] for c in m.group(1).split(",")])
        return duplicate_key(statement.schema, values, engine_line)
    return WriteFailure(engine_line, client=False)


def _find_duplicate(conn: sa.Connection, statement: Statement, names: list[str]) -> tuple | None:
    """SQLite names the columns of a violated unique index, not the value: find the first row of
    the failed insert whose key is repeated in the batch or already stored."""
    by_name = {c.name.lower(): c.key for c in statement.table.columns}
    cols = [by_name.get(n.lower()) for n in names]
    if statement.kind != "insert" or None in cols or not statement.rows:
        return None
    keys = [tuple(r.get(c) for c in cols) for r in statement.rows]
    seen: set[tuple] = set()
    for key in keys:
        if key in seen:
            return key
        seen.add(key)
    table = statement.table
    # A fresh connection: inside the failed transaction the batch's own earlier rows are visible.
    with conn.engine.connect() as reader:
        for start in range(0, len(keys), CHUNK):
            found = reader.execute(sa.select(*[table.c[c] for c in cols]).where(
                _pk_condition(table, cols, keys[start:start + CHUNK])).limit(1)).first()
            if found is not None:
                return tuple(found)
    return None


# --- NewInstance ----------------------------------------------------------------------------


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


def new_instance(storage: Storage, registry: SchemaRegistry, document: Any, ctx: CallContext) -> etree._Element:
    """xtk:persist#NewInstance: the entity with its defaults, a new @id (autopk) drawn from the
    schema's sequence, `_operation="insert"` and `xtkschema`. Nothing is written."""
    root = load_document(document)
    try:
        schema = schema_of(registry, root)
    except WriteFailure as failure:
        raise DataApiError(SAVE_FAILED, "Unable to create the new instance.", failure.lines) from None
    out = etree.Element(schema.name)
    with Plan(storage, registry, ctx) as plan:
        values: dict[str, Any] = {}
        if schema.autopk:
            pk = schema.attribute("@id")
            assert pk is not None and pk.sqlname
            given = root.get("id")
            values[pk.sqlname] = given if given not in (None, "", "0") else plan.new_pk(schema)
        if schema.has_table:
            plan.defaults.apply_insert(schema, values)
        for attr in schema.sql_attributes():
            if attr.sqlname in values and attr.sqlname is not None:
                _set_path(out, attr.xpath, format_value(attr.type, values[attr.sqlname]))
    for name, value in root.attrib.items():
        if not name.startswith("{"):
            out.set(name, value)
    for child in root:
        out.append(child)
    out.set("_operation", "insert")
    out.set("xtkschema", schema.id)
    return out


def _set_path(doc: etree._Element, xpath: str, text: str) -> None:
    steps = xpath.split("/")
    node = xmldata.ensure_path(doc, steps[:-1])
    if text != "":
        node.set(steps[-1].lstrip("@"), text)


def row_document(schema: Schema, record: dict[str, Any]) -> etree._Element:
    """An entity document from a table row: columns at their xpaths, then the XML memo."""
    doc = etree.Element(schema.name)
    # Result rows may be keyed by physical names, lower-cased on PostgreSQL.
    folded = {k.lower(): v for k, v in record.items() if isinstance(k, str)}
    for attr in schema.sql_attributes():
        name = (attr.sqlname or "").lower()
        if name in folded:
            _set_path(doc, attr.xpath, format_value(attr.type, folded[name]))
    xmldata.apply_to_document(doc, xmldata.read_memo(folded.get(XML_DATA_COLUMN.lower())))
    return doc


# --- GetNewIds ------------------------------------------------------------------------------

_SEQUENCE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
MAX_IDS = 100_000


def get_new_ids(storage: Storage, count: int, sequence: str = "XtkNewId") -> list[int]:
    """xtk:session#GetNewIds / GetNewIdsEx: `count` ids reserved from a sequence."""
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_IDS:
        raise DataApiError(INVALID_ARGUMENT, f"Invalid number of identifiers '{echo(str(count))}' (0 to {MAX_IDS}).")
    if not _SEQUENCE_NAME.fullmatch(sequence or ""):
        raise DataApiError(INVALID_ARGUMENT, f"Invalid sequence name '{echo(str(sequence))}'.")
    return storage.sequences.next_ids(sequence, count)


# --- DeleteCollection -----------------------------------------------------------------------


def matching_keys(plan: Plan, schema: Schema, where: etree._Element | None, ignore_delete_status: bool) -> list[tuple]:
    """Primary keys of the rows a queryDef `<where>` selects, compiled by the queryDef engine
    (so conditions, links, sub-queries and the recycle-bin rule are the same as ExecuteQuery's)."""
    from .querydef import _Query, parse_querydef

    query = etree.Element("queryDef", schema=schema.id, operation="count",
                          ignoreDeleteStatus="true" if ignore_delete_status else "false")
    if where is not None:
        query.append(deepcopy(where))
    # TODO: ask the queryDef engine for a public "compile a where" entry point instead of _Query.
    compiled = _Query(plan.storage, plan.registry, plan.ctx, parse_querydef(query), default_line_count=0,
                      max_expression_length=65536)
    level = compiled.main_level()
    table = level.scope.table
    select = sa.select(*[table.c[c] for c in pk_columns(schema)]).select_from(level.scope.from_clause())
    clauses = level.where_clause()
    if clauses:
        select = select.where(*clauses)
    return [tuple(r) for r in plan.reader(schema).execute(select)]


def delete_collection(storage: Storage, registry: SchemaRegistry, schema_id: str, where: Any,
                      ignore_delete_status: bool, ctx: CallContext) -> int:
    """xtk:persist#DeleteCollection: delete the rows matching `where` (a queryDef `<where>` or
    `<condition>`), with link-integrity cascades. Returns the number of rows of `schema_id` deleted."""
    schema = registry.find(schema_id)
    if schema is None:
        raise unknown_schema(schema_id)
    headline = f"Unable to delete documents of type '{schema.full_label}'."
    try:
        where_elem = load_document(where, "where") if where is not None else None
        if where_elem is not None and where_elem.tag != "where":
            wrapper = etree.Element("where")
            wrapper.append(deepcopy(where_elem))
            where_elem = wrapper
        with Plan(storage, registry, ctx) as plan:
            plan.table(schema)
            keys = matching_keys(plan, schema, where_elem, ignore_delete_status)
            pks = pk_columns(schema)
            for key in keys:
                plan.add(Row(schema, key, "delete", known=dict(zip(pks, key, strict=True))))
            expand_deletes(plan)
            execute(plan)
        return len(keys)
    except WriteFailure as failure:
        raise DataApiError(DELETE_FAILED, headline, failure.lines, client=failure.client) from None
    except DataApiError as exc:
        raise DataApiError(DELETE_FAILED, headline, exc.lines, client=exc.client) from None
    except sa.exc.DBAPIError as exc:
        line = database_error(exc, storage.dialect(storage.home(schema.id))).headline
        raise DataApiError(DELETE_FAILED, headline, [line], client=False) from None


# --- Duplicate ------------------------------------------------------------------------------


def parse_primary_key(text: str) -> tuple[str, list[str]]:
    """`nms:recipient|123` -> ("nms:recipient", ["123"]); `\\|` and `\\"` are escapes."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text or "")
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, ""))
        elif ch == "|":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    if len(parts) < 2 or not parts[0]:
        raise DataApiError(INVALID_ARGUMENT, f"Invalid primary key '{echo(text or '')}' (expected 'schema|value').")
    return parts[0], parts[1:]


def duplicate(storage: Storage, registry: SchemaRegistry, schema_id: str, pk: str, ctx: CallContext, *,
              save: bool = False) -> etree._Element:
    """xtk:persist#Duplicate: a copy of the entity `pk` as a new document (`_operation="insert"`,
    new @id, defOnDuplicate defaults re-applied, owncopy collections copied as members). Like
    Campaign, the copy is returned, not saved, unless `save` is set (then it is written)."""
    pk_schema, pk_values = parse_primary_key(pk)
    schema = registry.find(schema_id or pk_schema)
    if schema is None:
        raise unknown_schema(schema_id or pk_schema)
    try:
        with Plan(storage, registry, ctx) as plan:
            doc = _duplicate_row(plan, schema, pk_values)
    except WriteFailure as failure:
        raise DataApiError(SAVE_FAILED, f"Unable to duplicate document of type '{schema.full_label}'.",
                           failure.lines, client=failure.client) from None
    doc.set("xtkschema", schema.id)
    if save:
        from .write import write

        write(storage, registry, doc, ctx)
    return doc


def _duplicate_row(plan: Plan, schema: Schema, pk_values: list[str]) -> etree._Element:
    attrs = pk_attributes(schema)
    if len(pk_values) != len(attrs):
        raise WriteFailure(f"The primary key of '{schema.full_label}' has {len(attrs)} part(s)")
    try:
        key = tuple(to_db(a, parse_value(a.type, v)) for a, v in zip(attrs, pk_values, strict=True))
    except ValueError as exc:
        raise WriteFailure(str(exc)) from None
    table = plan.table(schema)
    pks = [a.sqlname or "" for a in attrs]
    record = next(plan.fetch(schema, [c.key for c in table.columns], tuple(pks), [key]), None)
    if record is None:
        raise WriteFailure(f"Unable to find document with path '{schema.label_singular}' from key "
                           f"'{echo(','.join(pk_values))}' (document with schema '{schema.name}')")
    doc = _copy_document(plan, schema, record)
    for link in collection_links(schema):
        if link.integrity != "owncopy":
            continue
        child = plan.registry.get(link.target or "")
        src = tuple(record[column_attr(schema, j.src).sqlname or ""] for j in link.joins)
        dst = tuple(column_attr(child, j.dst).sqlname or "" for j in link.joins)
        child_table = plan.table(child)
        for child_record in plan.fetch(child, [c.key for c in child_table.columns], dst, [src]):
            for col in dst:
                child_record.pop(col, None)  # set from the new parent when written
            member = _copy_document(plan, child, child_record)
            member.tag = link.name
            doc.append(member)
    return doc


def _copy_document(plan: Plan, schema: Schema, record: dict[str, Any]) -> etree._Element:
    values = dict(record)
    if schema.autopk:
        pk = schema.attribute("@id")
        assert pk is not None and pk.sqlname
        values[pk.sqlname] = plan.new_pk(schema)
    plan.defaults.apply_insert(schema, values, duplicate=True)
    doc = row_document(schema, values)
    doc.set("_operation", "insert")
    return doc
