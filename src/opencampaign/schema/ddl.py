"""SQLAlchemy Core tables derived from compiled schemas (data-model.md §1.5-1.8).

Campaign's naming is kept (`NmsRecipient`, `sEmail`, `NmsRecipient_email`) so SQL written by
Campaign users keeps working. PostgreSQL folds unquoted names to lower case, so names are
lower-cased there; SQLite and DuckDB compare identifiers case-insensitively anyway.
"""

from __future__ import annotations

import sqlalchemy as sa

from .model import XML_DATA_COLUMN, Attribute, Element, Schema
from .types import DEFAULT_STRING_LENGTH, XTK_TYPES


def physical(name: str, dialect: str) -> str:
    return name.lower() if dialect == "postgresql" else name


def sql_type(xtk_type: str, length: int | None) -> sa.types.TypeEngine:
    family = XTK_TYPES[xtk_type].family
    if xtk_type == "uuid":
        return sa.String(36)
    if family == "string":
        return sa.String(length or DEFAULT_STRING_LENGTH)
    if family == "integer":
        if xtk_type == "int64":
            return sa.BigInteger()
        return sa.Integer() if xtk_type == "long" else sa.SmallInteger()
    if family == "float":
        return sa.Float() if xtk_type == "float" else sa.Double()
    if family == "date":
        return sa.Date()
    if family == "datetime":
        return sa.DateTime()  # naive, always UTC (documented in docs/data-model.md)
    if family == "time":
        return sa.Time()
    if family == "binary":
        return sa.LargeBinary()
    return sa.Text()


def column_for(node: Attribute | Element, dialect: str) -> sa.Column:
    xtype = node.type if isinstance(node, Attribute) else (node.type or "memo")
    assert node.sqlname is not None
    not_null = XTK_TYPES[xtype].not_null
    return sa.Column(
        physical(node.sqlname, dialect),
        sql_type(xtype, node.length),
        nullable=not not_null,
        server_default=sa.text("0") if not_null else None,
        key=node.sqlname,  # code addresses columns by Campaign's spelling on every engine
    )


def build_table(schema: Schema, metadata: sa.MetaData, dialect: str, *, with_indexes: bool = True,
                unique_only: bool = False) -> sa.Table:
    assert schema.sqltable is not None
    columns: dict[str, sa.Column] = {}
    for node in [*schema.sql_attributes(), *schema.text_columns()]:
        assert node.sqlname is not None
        columns.setdefault(node.sqlname.lower(), column_for(node, dialect))
    if schema.has_xml_data:
        columns.setdefault(XML_DATA_COLUMN.lower(), sa.Column(physical(XML_DATA_COLUMN, dialect), sa.Text(),
                                                              key=XML_DATA_COLUMN))
    table = sa.Table(physical(schema.sqltable, dialect), metadata, *columns.values(), info={"schema_id": schema.id})
    if with_indexes:
        for name, fields, unique in index_specs(schema):
            if unique_only and not unique:
                continue
            cols = [table.c[_sqlname(schema, f)] for f in fields]
            sa.Index(physical(f"{schema.sqltable}_{name}", dialect), *cols, unique=unique)
    return table


def index_specs(schema: Schema) -> list[tuple[str, list[str], bool]]:
    """(name, field xpaths, unique) for keys and dbindexes, without duplicates of the same fields."""
    specs: list[tuple[str, list[str], bool]] = []
    seen: dict[tuple[str, ...], int] = {}
    for key in schema.keys:
        if key.no_db_index:
            continue
        specs.append((key.name, key.fields, True))
        seen[tuple(key.fields)] = len(specs) - 1
    for index in schema.dbindexes:
        position = seen.get(tuple(index.fields))
        if position is not None:
            continue
        specs.append((index.name, index.fields, index.unique))
        seen[tuple(index.fields)] = len(specs) - 1
    return specs


def _sqlname(schema: Schema, xpath: str) -> str:
    attr = schema.attribute(xpath)
    if attr is None or attr.sqlname is None:
        raise ValueError(f"{schema.id}: index field '{xpath}' is not a column")
    return attr.sqlname
