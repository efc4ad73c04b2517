"""The XML memo (`mData`): fields with `xml="true"` and XML collections of a row.

The memo is one XML document per row with the same structure as the schema: its root is named
after the schema's main element, XML attributes sit on the element of their xpath
(`<recipient><where filteringSchema="x"><condition expr="..."/></where></recipient>`).

Writing (data-model.md §4.5): a Write carries a *patch* tree of the same shape. Attributes and
single elements are merged into the stored memo; the members of an XML collection replace the
stored ones unless every member in the patch carries `_operation`, in which case each member is
merged on its own (insert / update / insertOrUpdate / delete / none).
"""

from __future__ import annotations

from copy import deepcopy

from lxml import etree

from ..schema.model import Element, Schema
from ..xmlsafe import XMLInputError, parse_xml

OPERATIONS = ("insertOrUpdate", "insert", "update", "delete", "none")
_CONTROL = ("_operation", "_key")


def new_patch(schema: Schema) -> etree._Element:
    return etree.Element(schema.name)


def ensure_path(root: etree._Element, steps: list[str]) -> etree._Element:
    """The element at `steps` below `root`, created when missing (single elements only)."""
    node = root
    for step in steps:
        child = node.find(step)
        if child is None:
            child = etree.SubElement(node, step)
        node = child
    return node


def is_empty(elem: etree._Element | None) -> bool:
    return elem is None or (not elem.attrib and len(elem) == 0 and not (elem.text or "").strip())


def read_memo(text: str | None) -> etree._Element | None:
    """The stored memo as an element, None when empty. A corrupt memo is treated as empty."""
    if not text:
        return None
    try:
        return parse_xml(text, source="mData")
    except XMLInputError:
        return None


def write_memo(root: etree._Element | None) -> str | None:
    if is_empty(root):
        return None
    assert root is not None
    return etree.tostring(root, encoding="unicode")


def strip_control(elem: etree._Element) -> etree._Element:
    """A copy without the `_operation`/`_key` markers, which are never stored."""
    copy = deepcopy(elem)
    copy.tail = None
    for node in copy.iter(etree.Element):
        for name in _CONTROL:
            node.attrib.pop(name, None)
    return copy


def collection_defs(definition: Element | None) -> dict[str, Element]:
    if definition is None:
        return {}
    return {name: e for name, e in definition.elements.items() if e.unbound and not e.is_link}


def merge(schema: Schema, stored: etree._Element | None, patch: etree._Element) -> etree._Element:
    """Apply `patch` to `stored` (or to an empty memo) and return the new memo root."""
    root = etree.Element(schema.name) if stored is None else stored
    _merge_element(root, patch, schema.root)
    return root


def _merge_element(target: etree._Element, patch: etree._Element, definition: Element | None) -> None:
    for name, value in patch.attrib.items():
        if name in _CONTROL:
            continue
        if value == "":
            target.attrib.pop(name, None)  # an empty value clears the field
        else:
            target.set(name, value)
    holds_text = definition.is_text if definition is not None else len(patch) == 0
    if holds_text and patch.text is not None:
        target.text = patch.text
    collections = collection_defs(definition)
    handled: set[str] = set()
    for child in patch:
        if not isinstance(child.tag, str):
            continue
        tag = child.tag
        child_def = definition.elements.get(tag) if definition is not None else None
        if tag in collections:
            if tag not in handled:
                handled.add(tag)
                _merge_collection(target, [c for c in patch if c.tag == tag], collections[tag])
            continue
        if child_def is not None and child_def.type == "ANY":
            _replace_all(target, tag, [child])  # free XML: replaced whole
            continue
        existing = target.find(tag)
        if existing is None:
            existing = etree.SubElement(target, tag)
        _merge_element(existing, child, child_def)


def _replace_all(target: etree._Element, tag: str, members: list[etree._Element]) -> None:
    old = [c for c in target if c.tag == tag]
    position = target.index(old[0]) if old else len(target)
    for node in old:
        target.remove(node)
    for offset, member in enumerate(members):
        target.insert(position + offset, strip_control(member))


def _merge_collection(target: etree._Element, members: list[etree._Element], definition: Element) -> None:
    if not all(m.get("_operation") for m in members):
        _replace_all(target, definition.name, members)
        return
    for member in members:
        operation = member.get("_operation", "insertOrUpdate")
        match = _find_member(target, member, definition)
        if operation == "delete":
            if match is not None:
                target.remove(match)
        elif operation == "insert" or (operation == "insertOrUpdate" and match is None):
            target.append(strip_control(member))
        elif operation in ("update", "insertOrUpdate") and match is not None:
            _merge_element(match, member, definition)
        # update without a match and none: nothing, as for SQL rows


def member_key(member: etree._Element, definition: Element) -> list[str]:
    """Attributes identifying a collection member: `_key`, else @name, else @id, else all given."""
    explicit = member.get("_key")
    if explicit:
        return [part.strip().lstrip("@") for part in explicit.split(",") if part.strip()]
    for candidate in ("name", "id"):
        if candidate in definition.attributes and member.get(candidate) is not None:
            return [candidate]
    return [name for name in member.attrib if name not in _CONTROL]


def _find_member(target: etree._Element, member: etree._Element, definition: Element) -> etree._Element | None:
    names = member_key(member, definition)
    if not names:
        return None
    wanted = [member.get(n, "") for n in names]
    for candidate in target.findall(definition.name):
        if [candidate.get(n, "") for n in names] == wanted:
            return candidate
    return None


def get_text(memo: etree._Element | None, xpath: str) -> str | None:
    """The stored text of an XML field ("@a", "where/@filteringSchema", "desc"), None if absent."""
    if memo is None:
        return None
    steps = [s for s in xpath.strip("[]").split("/") if s]
    node = memo
    for step in steps[:-1]:
        node = node.find(step)
        if node is None:
            return None
    last = steps[-1] if steps else ""
    if last.startswith("@"):
        return node.get(last[1:])
    child = node.find(last) if last else node
    return None if child is None else (child.text or "")


def apply_to_document(doc: etree._Element, memo: etree._Element | None) -> None:
    """Copy the memo content into an entity document (documents and memos share their shape)."""
    if memo is None:
        return
    _copy_into(doc, memo)


def _copy_into(target: etree._Element, source: etree._Element) -> None:
    for name, value in source.attrib.items():
        target.set(name, value)
    if source.text and source.text.strip():
        target.text = source.text
    for child in source:
        if not isinstance(child.tag, str):
            continue
        if len(child) == 0 and not child.attrib:
            etree.SubElement(target, child.tag).text = child.text
            continue
        existing = target.find(child.tag)
        if existing is None or len([c for c in source if c.tag == child.tag]) > 1:
            clone = deepcopy(child)
            clone.tail = None
            target.append(clone)
        else:
            _copy_into(existing, child)
