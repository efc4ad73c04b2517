"""Compiling source schemas into Campaign's compiled `xtk:schema` XML and the in-memory model.

The steps follow data-model.md §1: merge extensions into their base (keeping the base id), add
what compilation adds (sqltable/sqlname, the autopk `id` attribute with its key and index,
foreign-key attributes and joins of links, reverse links in target schemas), validate, then build
the typed model from the compiled XML.
"""

from __future__ import annotations

import copy
import hashlib

from lxml import etree

from .errors import SchemaError, SchemaProblem
from .model import (
    Attribute,
    DbIndex,
    Element,
    Enumeration,
    EnumValue,
    Join,
    Key,
    Method,
    Param,
    Schema,
)
from .source import NAME_RE, SourceSchema
from .types import DEFAULT_STRING_LENGTH, PARAM_ONLY_TYPES, TEXT_ELEMENT_TYPES, XTK_TYPES, normalize_type

INTEGRITIES = {"define", "normal", "own", "owncopy", "neutral"}
OPERATIONS = {"insertOrUpdate", "insert", "update", "delete", "none"}
_MERGE_MATCH_TAGS = {"attribute", "element", "key", "dbindex", "sysFilter", "method", "param", "value", "join"}


def cap(name: str) -> str:
    return name[:1].upper() + name[1:]


def default_sqltable(namespace: str, name: str) -> str:
    return cap(namespace) + cap(name)


def where(node: etree._Element) -> str:
    """An xpath-like location of a node, for error messages."""
    parts = []
    while node is not None:
        name = node.get("name")
        # Problems point into the source document, whose root is <srcSchema>.
        tag = "srcSchema" if node.getparent() is None else node.tag
        parts.append(f"{tag}[@name='{name}']" if name else tag)
        node = node.getparent()
    return "/" + "/".join(reversed(parts))


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1")


class _Unit:
    """One schema being compiled: its merged tree and where it came from."""

    def __init__(self, src: SourceSchema):
        self.id = src.id
        self.namespace = src.namespace
        self.name = src.name
        self.source = src.source
        self.tree = copy.deepcopy(src.root)
        self.tree.tag = "schema"
        self.source_xml = src.root
        self.extensions: list[str] = []

    @property
    def main(self) -> etree._Element | None:
        return next((e for e in self.tree.findall("element") if e.get("name") == self.name), None)

    @property
    def has_table(self) -> bool:
        return (
            self.main is not None
            and self.tree.get("mappingType", "sql") == "sql"
            and not _bool(self.tree.get("library"))
        )


class Compiler:
    def __init__(self, sources: list[SourceSchema]):
        self.sources = sources
        self.problems: list[SchemaProblem] = []
        self.units: dict[str, _Unit] = {}

    def problem(self, unit_or_source: _Unit | SourceSchema | str, node: etree._Element | str, message: str) -> None:
        source = unit_or_source if isinstance(unit_or_source, str) else unit_or_source.source
        path = node if isinstance(node, str) else where(node)
        self.problems.append(SchemaProblem(source, path, message))

    # -- entry point -------------------------------------------------------------------------
    def compile(self) -> dict[str, Schema]:
        extensions = []
        for src in self.sources:
            if src.extended_schema:
                extensions.append(src)
            elif src.id in self.units:
                self.problem(src, "/srcSchema", f"schema '{src.id}' is already defined in {self.units[src.id].source}")
            else:
                self.units[src.id] = _Unit(src)
        for ext in extensions:
            self._merge_extension(ext)
        for unit in self.units.values():
            self._strip_operations(unit.tree)
            self._expand_structure(unit)
        for unit in self.units.values():
            self._expand_links(unit)
        for unit in self.units.values():
            self._expand_keys(unit)
        for unit in list(self.units.values()):
            self._add_reverse_links(unit)
        for unit in self.units.values():
            self._check_columns(unit)
        if self.problems:
            raise SchemaError(self.problems)
        schemas = {uid: self._build_model(unit) for uid, unit in self.units.items()}
        return schemas

    # -- extensions ----------------------------------------------------------------------------
    def _merge_extension(self, ext: SourceSchema) -> None:
        base = self.units.get(ext.extended_schema or "")
        if base is None:
            self.problem(ext, "/srcSchema", f"extends unknown schema '{ext.extended_schema}'")
            return
        base.extensions.append(ext.id)
        for child in ext.root:
            if child.tag in ("element", "enumeration", "methods", "interface"):
                container_match = self._find_match(base.tree, child)
                if child.tag in ("methods", "interface") and container_match is None:
                    base.tree.append(copy.deepcopy(child))
                    continue
                self._merge_child(base.tree, child, ext, container_match)

    @staticmethod
    def _find_match(parent: etree._Element, child: etree._Element) -> etree._Element | None:
        for candidate in parent:
            if candidate.tag != child.tag:
                continue
            if child.tag in _MERGE_MATCH_TAGS or child.tag == "enumeration" or child.tag == "interface":
                if candidate.get("name") == child.get("name"):
                    return candidate
            else:  # methods, compute-string, help...: one per parent
                return candidate
        return None

    def _merge_child(self, parent: etree._Element, child: etree._Element, ext: SourceSchema,
                     match: etree._Element | None) -> None:
        op = child.get("_operation", "insertOrUpdate")
        if op not in OPERATIONS:
            self.problem(ext, child, f"unknown _operation '{op}'")
            return
        if op == "delete":
            if match is not None:
                parent.remove(match)
            return
        if match is None:
            if op in ("update", "none"):
                self.problem(ext, child, f"_operation='{op}' but '{child.get('name', child.tag)}' does not exist in '{ext.extended_schema}'")
                return
            added = copy.deepcopy(child)
            for node in added.iter("attribute", "element", "method"):
                node.set("belongsTo", ext.id)
            parent.append(added)
            return
        if op == "insert":
            self.problem(ext, child, f"_operation='insert' but '{child.get('name', child.tag)}' already exists in '{ext.extended_schema}'")
            return
        if op != "none":
            for key, value in child.attrib.items():
                if key not in ("name", "_operation"):
                    match.set(key, value)
        for grandchild in child:
            if grandchild.tag is etree.Comment:
                continue
            self._merge_child(match, grandchild, ext, self._find_match(match, grandchild))

    @staticmethod
    def _strip_operations(tree: etree._Element) -> None:
        for node in tree.iter():
            node.attrib.pop("_operation", None)
        tree.attrib.pop("extendedSchema", None)  # xtk:schema has no @extendedSchema (data-model.md §1.1)

    # -- structure: table, autopk, columns -------------------------------------------------------
    def _expand_structure(self, unit: _Unit) -> None:
        tree = unit.tree
        tree.set("mappingType", tree.get("mappingType", "sql"))
        if unit.extensions:
            tree.set("dependingSchemas", ",".join(unit.extensions))
        self._check_enumerations(unit)
        main = unit.main
        for element in tree.findall("element"):
            in_table = unit.has_table and element is main
            self._walk_element(unit, element, in_xml=not in_table or _bool(element.get("xml")), in_table=in_table)
        if not unit.has_table:
            return
        assert main is not None
        main.set("sqltable", main.get("sqltable") or default_sqltable(unit.namespace, unit.name))
        if _bool(main.get("autopk")):
            self._add_autopk(unit, main)
        elif main.find("key") is None:
            self.problem(unit, main, "a table needs at least one <key> or autopk=\"true\"")

    def _check_enumerations(self, unit: _Unit) -> None:
        seen: set[str] = set()
        for enum in unit.tree.findall("enumeration"):
            name = enum.get("name", "")
            if not NAME_RE.match(name):
                self.problem(unit, enum, f"invalid enumeration name '{name}'")
            if name in seen:
                self.problem(unit, enum, f"duplicate enumeration '{name}'")
            seen.add(name)
            basetype = normalize_type(enum.get("basetype", "string"))
            if basetype not in XTK_TYPES:
                self.problem(unit, enum, f"unknown basetype '{basetype}'")
            values = [v.get("name") for v in enum.findall("value")]
            if len(values) != len(set(values)):
                self.problem(unit, enum, "duplicate value names")

    def _add_autopk(self, unit: _Unit, main: etree._Element) -> None:
        uuid = _bool(main.get("autouuid"))
        pk_type = "uuid" if uuid else "long"
        sqlname = ("s" if uuid else "i") + cap(unit.name) + "Id"
        if main.find("attribute[@name='id']") is None:
            attr = etree.Element("attribute", name="id", type=pk_type, sqlname=sqlname, label="Primary key",
                                 desc="Internal primary key")
            if uuid:
                attr.set("length", "36")
            main.insert(0, attr)
        else:
            existing = main.find("attribute[@name='id']")
            existing.set("sqlname", existing.get("sqlname") or sqlname)
        if not uuid:
            main.set("pkSequence", main.get("pkSequence") or "XtkNewId")
        if main.find("key[@name='id']") is None:
            key = etree.Element("key", name="id", internal="true")
            etree.SubElement(key, "keyfield", xpath="@id")
            main.insert(0, key)
        if main.find("dbindex[@name='id']") is None:
            index = etree.Element("dbindex", name="id", unique="true")
            etree.SubElement(index, "keyfield", xpath="@id")
            main.insert(0, index)

    def _walk_element(self, unit: _Unit, element: etree._Element, *, in_xml: bool, in_table: bool) -> None:
        names: set[tuple[str, str]] = set()
        for child in element:
            if child.tag not in ("attribute", "element"):
                continue
            name = child.get("name", "")
            if not NAME_RE.match(name.replace("-", "_")):
                self.problem(unit, child, f"invalid name '{name}'")
                continue
            if (child.tag, name) in names:
                self.problem(unit, child, f"duplicate {child.tag} '{name}'")
            names.add((child.tag, name))
            if child.tag == "attribute":
                self._attribute(unit, child, in_xml=in_xml, in_table=in_table)
            else:
                self._sub_element(unit, child, in_xml=in_xml, in_table=in_table)

    def _attribute(self, unit: _Unit, attr: etree._Element, *, in_xml: bool, in_table: bool) -> None:
        xtype = normalize_type(attr.get("type"))
        if xtype not in XTK_TYPES:
            self.problem(unit, attr, f"unknown type '{attr.get('type')}'")
            return
        if attr.get("type"):
            attr.set("type", xtype)
        if attr.get("length") and not attr.get("length", "").isdigit():
            self.problem(unit, attr, f"invalid length '{attr.get('length')}'")
        if xtype == "string" and attr.get("length") is None and in_table and attr.get("expr") is None:
            attr.set("length", str(DEFAULT_STRING_LENGTH))
        self._check_enum_ref(unit, attr)
        if attr.get("expr") is not None or not in_table:
            return
        xml = _bool(attr.get("xml")) or (in_xml and not _bool(attr.get("sql")))
        if xml:
            attr.set("xml", "true")
            attr.attrib.pop("sqlname", None)
            return
        attr.set("sqlname", attr.get("sqlname") or XTK_TYPES[xtype].prefix + cap(attr.get("name", "")))

    def _check_enum_ref(self, unit: _Unit, attr: etree._Element) -> None:
        ref = attr.get("enum")
        if not ref:
            return
        if ":" not in ref:
            if unit.tree.find(f"enumeration[@name='{ref}']") is None:
                self.problem(unit, attr, f"unknown enumeration '{ref}'")
            return
        schema_id, _, enum_name = ref.rpartition(":")
        target = self.units.get(schema_id)
        if target is None or target.tree.find(f"enumeration[@name='{enum_name}']") is None:
            self.problem(unit, attr, f"unknown enumeration '{ref}'")

    def _sub_element(self, unit: _Unit, element: etree._Element, *, in_xml: bool, in_table: bool) -> None:
        etype = element.get("type")
        if etype == "link":
            if not element.get("target"):
                self.problem(unit, element, "link without @target")
            for attr_name, allowed in (("integrity", INTEGRITIES), ("revIntegrity", INTEGRITIES)):
                value = element.get(attr_name)
                if value and value not in allowed:
                    self.problem(unit, element, f"invalid {attr_name} '{value}'")
            return
        if etype == "ANY":  # free XML content: always kept in the XML memo
            if in_table:
                element.set("xml", "true")
            return
        if etype is not None:
            etype = normalize_type(etype)
            if etype not in XTK_TYPES and etype not in TEXT_ELEMENT_TYPES:
                self.problem(unit, element, f"unknown type '{element.get('type')}'")
                return
            element.set("type", etype)
        xml = in_xml or _bool(element.get("xml")) or _bool(element.get("unbound"))
        if etype is not None and len(element.findall("attribute")) + len(element.findall("element")) == 0:
            # A text element: its own column unless stored in the XML memo.
            if in_table and not xml:
                element.set("sqlname", element.get("sqlname") or XTK_TYPES[etype].prefix + cap(element.get("name", "")))
            elif in_table:
                element.set("xml", "true")
            return
        if in_table and xml and not in_xml:
            element.set("xml", "true")
        self._walk_element(unit, element, in_xml=xml, in_table=in_table)

    # -- links -----------------------------------------------------------------------------------
    def _iter_links(self, unit: _Unit) -> list[tuple[etree._Element, str]]:
        """(link element, xpath prefix of its parent) for every declared link of the main element."""
        found: list[tuple[etree._Element, str]] = []
        main = unit.main
        if main is None or not unit.has_table:
            return found

        def visit(element: etree._Element, prefix: str) -> None:
            for child in element.findall("element"):
                if child.get("type") == "link":
                    if not _bool(child.get("unbound")) and not child.get("_reverse"):
                        found.append((child, prefix))
                elif not _bool(child.get("xml")):
                    visit(child, f"{prefix}{child.get('name')}/")

        visit(main, "")
        return found

    def _target_key_attrs(self, target: _Unit) -> list[etree._Element] | None:
        main = target.main
        if main is None:
            return None
        keys = main.findall("key")
        key = next((k for k in keys if _bool(k.get("internal"))), keys[0] if keys else None)
        if key is None:
            return None
        attrs = []
        for field in key.findall("keyfield"):
            xpath = field.get("xpath")
            if not xpath:
                return None
            node = _find_attribute(main, xpath)
            if node is None:
                return None
            attrs.append(node)
        return attrs

    def _expand_links(self, unit: _Unit) -> None:
        main = unit.main
        for link, prefix in self._iter_links(unit):
            target = self.units.get(link.get("target", ""))
            if target is None:
                self.problem(unit, link, f"link to unknown schema '{link.get('target')}'")
                continue
            if not target.has_table:
                self.problem(unit, link, f"link target '{target.id}' has no table")
                continue
            parent = link.getparent()
            joins = link.findall("join")
            if joins:
                for join in joins:
                    src, dst = join.get("xpath-src", ""), join.get("xpath-dst", "")
                    if _find_attribute(main, prefix + src.lstrip("[").rstrip("]")) is None and _find_attribute(parent, src) is None:
                        self.problem(unit, join, f"join source '{src}' is not an attribute of '{unit.id}'")
                    if _find_attribute(target.main, dst) is None:
                        self.problem(unit, join, f"join destination '{dst}' is not an attribute of '{target.id}'")
                continue
            key_attrs = self._target_key_attrs(target)
            if not key_attrs:
                self.problem(unit, link, f"cannot join to '{target.id}': it has no usable key; declare a <join>")
                continue
            link_name = link.get("name", "")
            for key_attr in key_attrs:
                field_name = key_attr.get("name", "")
                fk_name = f"{link_name}-{field_name}"
                ftype = normalize_type(key_attr.get("type"))
                fk = parent.find(f"attribute[@name='{fk_name}']")
                if fk is None:
                    fk = etree.Element("attribute", name=fk_name, type=ftype, advanced="true",
                                       label=f"Foreign key of '{link.get('label') or link_name}' link (field '{field_name}')")
                    if key_attr.get("length"):
                        fk.set("length", key_attr.get("length"))
                    parent.insert(parent.index(link) + 1, fk)
                fk.set("sqlname", fk.get("sqlname") or XTK_TYPES[ftype].prefix + cap(link_name) + cap(field_name))
                etree.SubElement(link, "join", {"xpath-src": f"@{fk_name}", "xpath-dst": f"@{field_name}"})
            if not _bool(link.get("noDbIndex")):
                index_name = link_name + "Id"
                if main.find(f"dbindex[@name='{index_name}']") is None:
                    index = etree.Element("dbindex", name=index_name)
                    for join in link.findall("join"):
                        etree.SubElement(index, "keyfield", xpath=prefix + join.get("xpath-src", ""))
                    _insert_after_last(main, index, "dbindex")

    def _expand_keys(self, unit: _Unit) -> None:
        main = unit.main
        if main is None or not unit.has_table:
            return
        for keyed in main.findall("key") + main.findall("dbindex"):
            fields = keyed.findall("keyfield")
            if not fields:
                self.problem(unit, keyed, f"{keyed.tag} '{keyed.get('name')}' has no keyfield")
            for field in fields:
                xlink = field.get("xlink")
                if xlink:
                    link = main.find(f"element[@name='{xlink}']")
                    if link is None or link.get("type") != "link":
                        self.problem(unit, field, f"key field xlink '{xlink}' is not a link of '{unit.id}'")
                        continue
                    position = keyed.index(field)
                    keyed.remove(field)
                    for offset, join in enumerate(link.findall("join")):
                        keyed.insert(position + offset, etree.Element("keyfield", xpath=join.get("xpath-src", "")))
                    continue
                xpath = field.get("xpath", "")
                attr = _find_attribute(main, xpath)
                if attr is None:
                    self.problem(unit, field, f"{keyed.tag} '{keyed.get('name')}' refers to missing field '{xpath}'")
                elif attr.get("sqlname") is None:
                    self.problem(unit, field, f"{keyed.tag} '{keyed.get('name')}' field '{xpath}' is not stored in a column")

    def _add_reverse_links(self, unit: _Unit) -> None:
        for link, _prefix in self._iter_links(unit):
            rev_name = link.get("revLink") or unit.name
            target = self.units.get(link.get("target", ""))
            if rev_name == "_NONE_" or target is None or target.main is None:
                continue
            tmain = target.main
            if tmain.find(f"element[@name='{rev_name}']") is not None or tmain.find(f"attribute[@name='{rev_name}']") is not None:
                self.problem(unit, link, f"reverse link '{rev_name}' already exists in '{target.id}'; set a distinct revLink (or '_NONE_')")
                continue
            single = link.get("revCardinality") == "single"
            reverse = etree.SubElement(tmain, "element", name=rev_name, type="link", target=unit.id,
                                       belongsTo=unit.id, revLink=link.get("name", ""),
                                       integrity=link.get("revIntegrity") or "normal",
                                       label=link.get("revLabel") or unit.tree.get("label") or unit.name)
            reverse.set("_reverse", "true")
            if not single:
                reverse.set("unbound", "true")
            if _bool(link.get("revExternalJoin")):
                reverse.set("externalJoin", "true")
            for join in link.findall("join"):
                etree.SubElement(reverse, "join", {"xpath-src": join.get("xpath-dst", ""),
                                                   "xpath-dst": join.get("xpath-src", "")})

    def _check_columns(self, unit: _Unit) -> None:
        main = unit.main
        if main is None or not unit.has_table:
            return
        seen: dict[str, etree._Element] = {}
        for node in main.iter("attribute", "element"):
            sqlname = node.get("sqlname")
            if not sqlname:
                continue
            key = sqlname.lower()
            if key in seen:
                self.problem(unit, node, f"SQL column '{sqlname}' is also used by {where(seen[key])}; set a distinct sqlname")
            seen[key] = node

    # -- model -----------------------------------------------------------------------------------
    def _build_model(self, unit: _Unit) -> Schema:
        tree = unit.tree
        main = unit.main
        enumerations = {e.get("name"): _enumeration(unit.id, e) for e in tree.findall("enumeration")}
        root = _element(unit.id, main, "", None) if main is not None else None
        others = {e.get("name"): _element(unit.id, e, e.get("name"), None) for e in tree.findall("element")
                  if e is not main}
        keys, indexes = [], []
        if main is not None and unit.has_table:
            keys = [Key(k.get("name", ""), [f.get("xpath", "") for f in k.findall("keyfield")],
                        internal=_bool(k.get("internal")), no_db_index=_bool(k.get("noDbIndex")))
                    for k in main.findall("key")]
            indexes = [DbIndex(i.get("name", ""), [f.get("xpath", "") for f in i.findall("keyfield")],
                               unique=_bool(i.get("unique"))) for i in main.findall("dbindex")]
        methods = [_method(m, None) for ms in tree.findall("methods") for m in ms.findall("method")]
        for interface in tree.findall("interface"):
            methods.extend(_method(m, interface.get("name")) for m in interface.findall("method"))
        compute = main.find("compute-string") if main is not None else None
        published = copy.deepcopy(tree)
        for node in published.iter():
            node.attrib.pop("_reverse", None)
        md5 = hashlib.md5(etree.tostring(published, method="c14n")).hexdigest()
        published.set("md5", md5)
        return Schema(
            id=unit.id, namespace=unit.namespace, name=unit.name,
            label=tree.get("label") or unit.name, label_singular=tree.get("labelSingular") or tree.get("label") or unit.name,
            desc=tree.get("desc", ""), implements=tree.get("implements"),
            mapping_type=tree.get("mappingType", "sql"),
            data_source=(main.get("dataSource") if main is not None else None) or tree.get("dataSource"),
            source=unit.source, extensions=list(unit.extensions), root=root, elements=others,
            enumerations=enumerations, keys=keys, dbindexes=indexes, methods=methods,
            sqltable=main.get("sqltable") if main is not None and unit.has_table else None,
            autopk=_bool(main.get("autopk")) if main is not None else False,
            autouuid=_bool(main.get("autouuid")) if main is not None else False,
            pk_sequence=main.get("pkSequence") if main is not None else None,
            compute_string=compute.get("expr") if compute is not None else None,
            md5=md5, compiled_xml=published, source_xml=unit.source_xml,
        )


def _find_attribute(element: etree._Element | None, xpath: str) -> etree._Element | None:
    if element is None:
        return None
    steps = [s for s in xpath.strip().strip("[]").split("/") if s]
    node = element
    for i, step in enumerate(steps):
        if step.startswith("@"):
            if i != len(steps) - 1:
                return None
            return node.find(f"attribute[@name='{step[1:]}']")
        node = node.find(f"element[@name='{step}']")
        if node is None:
            return None
    return None


def _insert_after_last(parent: etree._Element, node: etree._Element, tag: str) -> None:
    same = parent.findall(tag)
    parent.insert(parent.index(same[-1]) + 1 if same else 0, node)


def _enumeration(schema_id: str, node: etree._Element) -> Enumeration:
    return Enumeration(
        name=node.get("name", ""), qualified_name=f"{schema_id}:{node.get('name')}",
        basetype=normalize_type(node.get("basetype", "string")), label=node.get("label", ""),
        default=node.get("default"),
        values=[EnumValue(v.get("name", ""), v.get("label", v.get("name", "")), v.get("value", v.get("name", "")),
                          v.get("desc", "")) for v in node.findall("value")],
    )


def _element(schema_id: str, node: etree._Element, xpath: str, parent: Element | None) -> Element:
    element = Element(
        name=node.get("name", ""), xpath=xpath, label=node.get("label", ""), desc=node.get("desc", ""),
        type=node.get("type"), xml=_bool(node.get("xml")), unbound=_bool(node.get("unbound")),
        sqlname=node.get("sqlname"), length=int(node.get("length")) if (node.get("length") or "").isdigit() else None,
        belongs_to=node.get("belongsTo"), advanced=_bool(node.get("advanced")), target=node.get("target"),
        integrity=node.get("integrity"), rev_link=node.get("revLink"), rev_integrity=node.get("revIntegrity"),
        rev_cardinality=node.get("revCardinality"), external_join=_bool(node.get("externalJoin")),
        reverse=bool(node.get("_reverse")), parent=parent,
        joins=[Join(j.get("xpath-src", ""), j.get("xpath-dst", "")) for j in node.findall("join")],
    )
    prefix = f"{xpath}/" if xpath else ""
    for child in node:
        if child.tag == "attribute":
            enum = child.get("enum")
            if enum and ":" not in enum:
                enum = f"{schema_id}:{enum}"
            xtype = normalize_type(child.get("type"))
            element.attributes[child.get("name", "")] = Attribute(
                name=child.get("name", ""), type=xtype if xtype in XTK_TYPES else "string",
                xpath=f"{prefix}@{child.get('name')}", label=child.get("label", ""), desc=child.get("desc", ""),
                length=int(child.get("length")) if (child.get("length") or "").isdigit() else None,
                sqlname=child.get("sqlname"), xml=_bool(child.get("xml")), expr=child.get("expr"),
                default=child.get("default"), enum=enum, not_null=_bool(child.get("notNull")),
                advanced=_bool(child.get("advanced")), belongs_to=child.get("belongsTo"),
                user_enum=child.get("userEnum"), parent=element,
            )
        elif child.tag == "element":
            element.elements[child.get("name", "")] = _element(schema_id, child, f"{prefix}{child.get('name')}", element)
    return element


def _method(node: etree._Element, interface: str | None) -> Method:
    params = node.find("parameters")
    return Method(
        name=node.get("name", ""), static=_bool(node.get("static")), const=_bool(node.get("const")),
        access=node.get("access"), library=node.get("library"), interface=interface,
        label=node.get("label", ""), desc=node.get("desc", ""), belongs_to=node.get("belongsTo"),
        params=[Param(p.get("name", ""), p.get("type", "string"), p.get("inout", "in"), p.get("desc", ""))
                for p in (params.findall("param") if params is not None else [])],
    )


def compile_sources(sources: list[SourceSchema]) -> dict[str, Schema]:
    return Compiler(sources).compile()


__all__ = ["Compiler", "compile_sources", "cap", "default_sqltable", "PARAM_ONLY_TYPES"]
