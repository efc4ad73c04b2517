"""The JavaScript prelude evaluated once per pooled context: E4X object model, host API, helpers.

Host access goes through two callables added by `engine.py`: `__host(op, json) -> json` and `__cpu()`.
Names starting with `__` are internal; translated scripts call `__xml`, `__each`, `__chk`.
"""

PRELUDE = r"""
(function (G) {
"use strict";
var host = G.__host, cpu = G.__cpu;
var RUN = { deadline: Infinity, tripped: false, line: 0 };
var CHK_EVERY = 2048, left = CHK_EVERY;

function hcall(op, args) {
  if (RUN.tripped) throw new InternalError("time limit exceeded");
  var r = JSON.parse(host(op, JSON.stringify(args === undefined ? null : args)));
  if (r.e) { var err = new Error(r.e.message); err.code = r.e.code; err.name = "Error"; throw err; }
  return r.r;
}

// ---- CPU-time limit: loops and function entries call __chk() (inserted by the translator). The counter
// is a closure variable (scripts cannot reset it); the CPU clock is read every CHK_EVERY checks.
function chkSlow() {
  if (RUN.tripped) throw new InternalError("time limit exceeded");
  left = CHK_EVERY;
  if (cpu() > RUN.deadline) { RUN.tripped = true; left = 0; throw new InternalError("time limit exceeded"); }
  return true;
}
function chk() { return --left > 0 || chkSlow(); }
function ln(n) { RUN.line = n; return 0; }  // `throw x` -> `throw __ln(line), x`: the line of thrown strings
function InternalError(msg) { var e = new Error(msg); e.name = "InternalError"; e.__limit = "time"; return e; }

// ---- XML object model (E4X subset)
function XNode(name, attrs, kids) { this.n = name; this.a = attrs || {}; this.c = kids || []; this.p = null; }
var ENT = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };
function decode(s) {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);/g, function (m, e) {
    if (e[0] === "#") return String.fromCodePoint(e[1] === "x" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    return ENT[e] !== undefined ? ENT[e] : m;
  });
}
function escText(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }
function escAttr(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/"/g, "&quot;").replace(/\n/g, "&#10;"); }
var TOK = /<!--[\s\S]*?-->|<!\[CDATA\[([\s\S]*?)\]\]>|<\?[\s\S]*?\?>|<!DOCTYPE[^>]*>|<\/\s*([^\s>]+)\s*>|<([^\s\/>!?]+)((?:\s+[^\s=\/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>|([^<]+)|(<)/g;
var ATT = /([^\s=\/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;
function parseXML(src, list) {
  var root = new XNode("#root"), cur = root, m;
  TOK.lastIndex = 0; src = String(src);
  while ((m = TOK.exec(src)) !== null) {
    if (m[7] !== undefined) throw new SyntaxError("XML parse error: unexpected '<' at offset " + m.index);
    if (m[1] !== undefined) cur.c.push(m[1]);
    else if (m[2] !== undefined) {
      if (cur.n !== m[2]) throw new SyntaxError("XML parse error: closing tag </" + m[2] + "> does not match <" + cur.n + ">");
      cur = cur.p;
    } else if (m[3] !== undefined) {
      var el = new XNode(m[3]), a;
      ATT.lastIndex = 0;
      while ((a = ATT.exec(m[4])) !== null) el.a[a[1]] = decode(a[2] !== undefined ? a[2] : a[3]);
      el.p = cur; cur.c.push(el);
      if (!m[5]) cur = el;
    } else if (m[6] !== undefined) { if (/\S/.test(m[6])) cur.c.push(decode(m[6]).trim()); }
  }
  if (cur !== root) throw new SyntaxError("XML parse error: element <" + cur.n + "> is not closed");
  var els = root.c.filter(function (k) { return typeof k !== "string"; });
  els.forEach(function (k) { k.p = null; });
  if (list) return els;
  if (els.length !== 1) throw new SyntaxError("XML parse error: expected one root element, found " + els.length);
  return els[0];
}
function ser(node, pretty, ind) {
  if (typeof node === "string") return escText(node);
  ind = ind || "";
  var s = ind + "<" + node.n;
  for (var k in node.a) s += " " + k + '="' + escAttr(node.a[k]) + '"';
  if (!node.c.length) return s + "/>";
  var simple = node.c.every(function (c) { return typeof c === "string"; });
  if (simple || !pretty) return s + ">" + node.c.map(function (c) { return ser(c, false); }).join("") + "</" + node.n + ">";
  var inner = node.c.map(function (c) { return typeof c === "string" ? ind + "  " + escText(c) : ser(c, true, ind + "  "); });
  return s + ">\n" + inner.join("\n") + "\n" + ind + "</" + node.n + ">";
}
function text(node) { return typeof node === "string" ? node : node.c.map(text).join(""); }
function simpleContent(node) { return node.c.every(function (c) { return typeof c === "string"; }); }
function copy(node) {
  if (typeof node === "string") return node;
  var n = new XNode(node.n, Object.assign({}, node.a), node.c.map(copy));
  n.c.forEach(function (k) { if (typeof k !== "string") k.p = n; });
  return n;
}
function kids(node, name) {
  return node.c.filter(function (c) { return typeof c !== "string" && (name === "*" || c.n === name || c.n.split(":").pop() === name); });
}
function desc(node, name, out) {
  node.c.forEach(function (c) {
    if (typeof c === "string") return;
    if (name === "*" || c.n === name) out.push(c);
    desc(c, name, out);
  });
  return out;
}
function toNode(v) {
  if (v && v.__node) return v.__node;
  if (v && v.__nodes) { if (v.__nodes.length !== 1) throw new TypeError("XMLList of length " + v.__nodes.length + " used as XML"); return v.__nodes[0]; }
  return parseXML(String(v));
}
function fromJ(j) {
  if (typeof j === "string") return j;
  var n = new XNode(j[0], j[1], (j[2] || []).map(fromJ));
  n.c.forEach(function (k) { if (typeof k !== "string") k.p = n; });
  return n;
}
var NODEMETHODS = {
  toXMLString: function (n) { return function () { return ser(n, true); }; },
  toString: function (n) { return function () { return simpleContent(n) ? text(n) : ser(n, true); }; },
  valueOf: function (n) { return function () { return simpleContent(n) ? text(n) : ser(n, true); }; },
  toJSON: function (n) { return function () { return ser(n, false); }; },
  length: function () { return function () { return 1; }; },
  name: function (n) { return function () { return n.n; }; },
  localName: function (n) { return function () { return n.n.split(":").pop(); }; },
  nodeKind: function () { return function () { return "element"; }; },
  text: function (n) { return function () { return text(n); }; },
  hasSimpleContent: function (n) { return function () { return simpleContent(n); }; },
  hasComplexContent: function (n) { return function () { return !simpleContent(n); }; },
  children: function (n) { return function () { return wrapList(kids(n, "*")); }; },
  elements: function (n) { return function (name) { return wrapList(kids(n, name === undefined ? "*" : String(name))); }; },
  child: function (n) { return function (name) { return wrapList(kids(n, String(name)), n, String(name)); }; },
  descendants: function (n) { return function (name) { return wrapList(desc(n, name === undefined ? "*" : String(name), [])); }; },
  attribute: function (n) { return function (name) { return n.a[name] === undefined ? "" : n.a[name]; }; },
  attributes: function (n) { return function () { return Object.keys(n.a).map(function (k) { return n.a[k]; }); }; },
  parent: function (n) { return function () { return n.p ? wrap(n.p) : undefined; }; },
  copy: function (n) { return function () { return wrap(copy(n)); }; },
  setName: function (n) { return function (name) { n.n = String(name); }; },
  appendChild: function (n) { return function (v) { var c = copy(toNode(v)); c.p = n; n.c.push(c); return wrap(n); }; },
  prependChild: function (n) { return function (v) { var c = copy(toNode(v)); c.p = n; n.c.unshift(c); return wrap(n); }; },
  setAttribute: function (n) { return function (k, v) { n.a[k] = String(v); }; },
  getAttribute: function (n) { return function (k) { return n.a[k] === undefined ? "" : n.a[k]; }; },
  __filter: function (n) { return function (pred) { return wrapList(pred.call(wrap(n)) ? [n] : []); }; },
  __node: function (n) { return n; },
  __isXML: function () { return true; }
};
var elHandler = {
  get: function (n, key) {
    if (typeof key === "symbol") {
      if (key === Symbol.toPrimitive) return function () { return simpleContent(n) ? text(n) : ser(n, true); };
      if (key === Symbol.iterator) return function* () { yield wrap(n); };
      return undefined;
    }
    if (Object.prototype.hasOwnProperty.call(NODEMETHODS, key)) {
      var same = key.slice(0, 2) !== "__" && kids(n, key);  // a child named like a method (name, text...) wins
      return same && same.length ? wrapList(same, n, key, NODEMETHODS[key](n)) : NODEMETHODS[key](n);
    }
    if (key.slice(0, 2) === "__" || key === "then") return undefined;
    if (key[0] === "@") return key === "@*" ? Object.keys(n.a).map(function (k) { return n.a[k]; }) : (n.a[key.slice(1)] === undefined ? "" : n.a[key.slice(1)]);
    if (key.slice(0, 2) === "..") return wrapList(desc(n, key.slice(2), []));
    if (key === "0") return wrap(n);
    if (/^[0-9]+$/.test(key)) return undefined;
    return wrapList(kids(n, key), n, key);
  },
  set: function (n, key, v) {
    if (typeof key === "symbol") return false;
    if (key[0] === "@") { n.a[key.slice(1)] = String(v); return true; }
    setChild(n, key, v); return true;
  },
  has: function (n, key) {
    if (typeof key !== "string") return false;
    if (key[0] === "@") return n.a[key.slice(1)] !== undefined;
    return kids(n, key).length > 0 || Object.prototype.hasOwnProperty.call(NODEMETHODS, key);
  },
  deleteProperty: function (n, key) {
    if (key[0] === "@") delete n.a[key.slice(1)];
    else n.c = n.c.filter(function (c) { return typeof c === "string" || c.n !== key; });
    return true;
  },
  ownKeys: function (n) { return kids(n, "*").map(function (c) { return c.n; }).filter(function (v, i, a) { return a.indexOf(v) === i; }); },
  getOwnPropertyDescriptor: function (n, key) {
    var v = elHandler.get(n, key);
    return { value: v, enumerable: true, configurable: true, writable: true };
  }
};
function setChild(n, key, v) {
  var existing = kids(n, key), node;
  if (v && (v.__node || v.__nodes)) { node = copy(toNode(v)); node.n = key === "*" ? node.n : key; }
  else { node = new XNode(key, {}, v === null || v === undefined ? [] : [String(v)]); }
  node.p = n;
  if (existing.length) n.c[n.c.indexOf(existing[0])] = node;
  else n.c.push(node);
}
function wrap(n) { return new Proxy(n, elHandler); }
function listOf(nodes, parent, name, method) { var t = function () {}; t.nodes = nodes; t.parent = parent; t.pname = name; t.method = method; return t; }
var LISTMETHODS = {
  length: function (l) { return function () { return l.nodes.length; }; },
  toXMLString: function (l) { return function () { return l.nodes.map(function (n) { return ser(n, true); }).join("\n"); }; },
  toString: function (l) { return function () { return listStr(l); }; },
  valueOf: function (l) { return function () { return listStr(l); }; },
  toJSON: function (l) { return function () { return l.nodes.map(function (n) { return ser(n, false); }); }; },
  text: function (l) { return function () { return l.nodes.map(text).join(""); }; },
  children: function (l) { return function () { return wrapList([].concat.apply([], l.nodes.map(function (n) { return kids(n, "*"); }))); }; },
  elements: function (l) { return function (name) { return wrapList([].concat.apply([], l.nodes.map(function (n) { return kids(n, name === undefined ? "*" : String(name)); }))); }; },
  descendants: function (l) { return function (name) { var out = []; l.nodes.forEach(function (n) { desc(n, name === undefined ? "*" : String(name), out); }); return wrapList(out); }; },
  attribute: function (l) { return function (name) { return l.nodes.map(function (n) { return n.a[name] === undefined ? "" : n.a[name]; }).join(""); }; },
  copy: function (l) { return function () { return wrapList(l.nodes.map(copy)); }; },
  parent: function (l) { return function () { return l.parent ? wrap(l.parent) : undefined; }; },
  name: function (l) { return function () { return l.nodes.length ? l.nodes[0].n : undefined; }; },
  hasSimpleContent: function (l) { return function () { return l.nodes.length === 1 && simpleContent(l.nodes[0]); }; },
  appendChild: function (l) { return function (v) { return wrap(l.nodes[0]).appendChild(v); }; },
  __filter: function (l) { return function (pred) { return wrapList(l.nodes.filter(function (n) { return pred.call(wrap(n)); })); }; },
  __nodes: function (l) { return l.nodes; },
  __isXML: function () { return true; }
};
function listStr(l) {
  if (l.nodes.length === 1) return simpleContent(l.nodes[0]) ? text(l.nodes[0]) : ser(l.nodes[0], true);
  if (l.nodes.every(simpleContent)) return l.nodes.map(text).join("");
  return l.nodes.map(function (n) { return ser(n, true); }).join("\n");
}
var listHandler = {
  apply: function (l, self, args) {
    if (!l.method) throw new TypeError("XMLList is not a function");
    return l.method.apply(null, args);
  },
  get: function (l, key) {
    if (typeof key === "symbol") {
      if (key === Symbol.toPrimitive) return function () { return listStr(l); };
      if (key === Symbol.iterator) return function* () { for (var i = 0; i < l.nodes.length; i++) yield wrap(l.nodes[i]); };
      return undefined;
    }
    if (Object.prototype.hasOwnProperty.call(LISTMETHODS, key)) {
      var same = key.slice(0, 2) !== "__" && [].concat.apply([], l.nodes.map(function (n) { return kids(n, key); }));
      return same && same.length ? wrapList(same, l.nodes.length === 1 ? l.nodes[0] : null, key, LISTMETHODS[key](l)) : LISTMETHODS[key](l);
    }
    if (key.slice(0, 2) === "__" || key === "then") return undefined;
    if (/^[0-9]+$/.test(key)) { var i = +key; return i < l.nodes.length ? wrap(l.nodes[i]) : undefined; }
    if (key[0] === "@") return l.nodes.map(function (n) { return n.a[key.slice(1)] === undefined ? "" : n.a[key.slice(1)]; }).join("");
    if (key.slice(0, 2) === "..") { var out = []; l.nodes.forEach(function (n) { desc(n, key.slice(2), out); }); return wrapList(out); }
    if (l.nodes.length === 1) return wrapList(kids(l.nodes[0], key), l.nodes[0], key);
    return wrapList([].concat.apply([], l.nodes.map(function (n) { return kids(n, key); })));
  },
  set: function (l, key, v) {
    if (typeof key === "symbol") return false;
    if (/^[0-9]+$/.test(key)) { var i = +key; if (i < l.nodes.length) { var nn = copy(toNode(v)); nn.p = l.nodes[i].p; if (nn.p) nn.p.c[nn.p.c.indexOf(l.nodes[i])] = nn; l.nodes[i] = nn; } return true; }
    if (!l.nodes.length && l.parent) { var created = new XNode(l.pname); created.p = l.parent; l.parent.c.push(created); l.nodes.push(created); }
    l.nodes.forEach(function (n) { elHandler.set(n, key, v); });
    return true;
  },
  has: function (l, key) { return typeof key === "string" && /^[0-9]+$/.test(key) ? +key < l.nodes.length : false; },
  ownKeys: function (l) { return l.nodes.map(function (_, i) { return String(i); }).concat(["prototype"]); },
  getOwnPropertyDescriptor: function (l, key) {
    if (key === "prototype") return Object.getOwnPropertyDescriptor(l, key);
    return { value: listHandler.get(l, key), enumerable: true, configurable: true, writable: true };
  }
};
function wrapList(nodes, parent, name, method) { return new Proxy(listOf(nodes, parent, name, method), listHandler); }

function XML(v) {
  if (v && v.__node) return v;
  if (v === undefined || v === null || v === "") return wrapList([]);
  return wrap(parseXML(typeof v === "string" ? v : String(v)));
}
function XMLList(v) {
  if (v && v.__nodes) return v;
  if (v && v.__node) return wrapList([v.__node]);
  return wrapList(v === undefined ? [] : parseXML(String(v), true));
}
function isXML(v) { return !!(v && (typeof v === "object" || typeof v === "function") && v.__isXML === true); }
function xmlText(v) { return isXML(v) ? (v.__node ? ser(v.__node, false) : v.__nodes.map(function (n) { return ser(n, false); }).join("")) : escText(v === undefined ? "" : v); }
function xmlAttr(v) { return escAttr(v === undefined || v === null ? "" : (isXML(v) ? String(v) : v)); }
function xmlLit(s) { var l = parseXML(s, true); return l.length === 1 ? wrap(l[0]) : wrapList(l); }
function each(v) {
  if (v === null || v === undefined) return [];
  if (isXML(v)) return v.__node ? [v] : v.__nodes.map(wrap);
  if (Array.isArray(v) || typeof v === "string") return v;
  if (typeof v[Symbol.iterator] === "function") return v;
  return Object.keys(v).map(function (k) { return v[k]; });
}

// ---- values across the host boundary
function outv(v) { return out(v); }
function out(v) {
  if (isXML(v)) return { $xml: v.__node ? ser(v.__node, false) : v.__nodes.map(function (n) { return ser(n, false); }).join("") };
  if (v instanceof Date) return { $date: v.toISOString() };
  if (v && v.__entity) return { $xml: ser(v.__entity, false) };
  return v;
}
function inn(v) {
  if (v && typeof v === "object" && !Array.isArray(v)) {
    if (v.$xmlj !== undefined) return wrap(fromJ(v.$xmlj));
    if (v.$date !== undefined) return new Date(v.$date);
  }
  if (Array.isArray(v)) return v.map(inn);
  return v;
}

// ---- schema objects: nms.subscription.Subscribe(...), xtk.queryDef.create(doc).ExecuteQuery()
function entityNode(doc, schemaId) {
  var node;
  if (isXML(doc)) node = copy(toNode(doc));
  else if (typeof doc === "string") node = parseXML(doc);
  else node = fromJ(hcall("toXml", { schema: schemaId, json: doc }));
  if (node.a.xtkschema === undefined && schemaId) node.a.xtkschema = schemaId;
  return node;
}
function callMethod(schemaId, method, thisNode, args, json) {
  var r = hcall("call", { schema: schemaId, method: method, json: !!json,
                          this: thisNode ? ser(thisNode, false) : null, args: Array.prototype.map.call(args, out) });
  return { value: inn(r.value), entity: r.this ? fromJ(r.this) : null };
}
function entityObject(schemaId, node, json, fields) {
  var obj = { __entity: node };
  return new Proxy(obj, {
    get: function (o, key) {
      if (key === "__entity") return o.__entity;
      if (key === "entity") return json ? hcall("toJson", { xml: ser(o.__entity, false) }) : wrap(o.__entity);
      if (key === "save") return function () { callMethod("xtk:session", "Write", null, [wrap(o.__entity)]); };
      if (typeof key !== "string" || key === "then" || key === "toJSON") return undefined;
      if (key[0] === "@") return o.__entity.a[key.slice(1)];
      if (fields) {  // loaded entities expose their fields: r.email, r.country (element)
        if (o.__entity.a[key] !== undefined) return o.__entity.a[key];
        var k = kids(o.__entity, key);
        if (k.length) return simpleContent(k[0]) ? text(k[0]) : wrap(k[0]);
      }
      return function () {
        var name = key, lower = key[0] === key[0].toLowerCase();
        if (lower) name = key[0].toUpperCase() + key.slice(1);
        var r = callMethod(schemaId, name, o.__entity, arguments, json || lower);
        if (r.entity) o.__entity = r.entity;
        return r.value;
      };
    },
    set: function (o, key, v) {
      if (typeof key !== "string" || !fields) return false;
      o.__entity.a[key[0] === "@" ? key.slice(1) : key] = v === null || v === undefined ? "" : String(out(v) && out(v).$date || v);
      return true;
    }
  });
}
function loadEntity(schemaId, id, json) {
  var node = fromJ(hcall("load", { schema: schemaId, id: out(id) }));
  if (node.a.xtkschema === undefined) node.a.xtkschema = schemaId;
  return entityObject(schemaId, node, json, true);
}
function schemaObject(schemaId, json) {
  return new Proxy({}, {
    get: function (_, key) {
      if (typeof key !== "string" || key === "then" || key === "toJSON") return undefined;
      if (key === "create") return function (doc) { return entityObject(schemaId, entityNode(doc === undefined ? {} : doc, schemaId), json); };
      if (key === "load") return function (id) { return loadEntity(schemaId, id, json); };
      return function () {
        var name = key, lower = key[0] === key[0].toLowerCase();
        if (lower) name = key[0].toUpperCase() + key.slice(1);
        return callMethod(schemaId, name, null, arguments, json || lower).value;
      };
    }
  });
}
function namespaceObject(ns) {
  var cache = {};
  return new Proxy({}, { get: function (_, key) {
    if (typeof key !== "string" || key === "then" || key === "toJSON") return undefined;
    return cache[key] || (cache[key] = schemaObject(ns + ":" + key, false));
  } });
}
var NLWS = new Proxy({}, { get: function (_, key) {
  if (typeof key !== "string") return undefined;
  var m = /^([a-z0-9]+)([A-Z].*)$/.exec(key);
  if (!m) return undefined;
  return schemaObject(m[1] + ":" + m[2][0].toLowerCase() + m[2].slice(1), true);
} });

// ---- JS-implemented schema methods (methods.py): m = { f: name, lib: library, this: ..., args: [...] }
function callLib(fn, m) {
  if (typeof fn !== "function") throw new Error("function " + m.f + " is not defined in " + m.lib);
  var self = m.this ? inn(m.this) : null;
  var res = fn.apply(self, (self ? [self] : []).concat(m.args.map(inn)));
  return { result: out(res), self: self ? out(self) : null };
}

// ---- helpers
function fmt(v) {
  if (v === undefined) return "undefined";
  if (v === null) return "null";
  if (isXML(v)) return String(v);
  if (typeof v === "object" && !(v instanceof Date) && !(v instanceof Error)) { try { return JSON.stringify(v); } catch (e) { return String(v); } }
  return String(v);
}
function logger(level) { return function () { hcall("log", { level: level, message: Array.prototype.map.call(arguments, fmt).join(" ") }); }; }
function pad(n, w) { var s = String(Math.abs(n)); while (s.length < w) s = "0" + s; return s; }
var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
function toDate(d) {
  if (d instanceof Date) return d;
  if (typeof d === "number") return new Date(d);
  return parseTimeStamp(String(d));
}
function formatDate(d, f) {
  d = toDate(d);
  if (f === undefined) f = "%2D/%2M/%4Y";
  return String(f).replace(/%([0-9]?)([A-Za-z%])/g, function (m, w, c) {
    var width = w ? +w : 0, v;
    switch (c) {
      case "Y": v = d.getFullYear(); return width === 2 ? pad(v % 100, 2) : pad(v, width);
      case "M": return pad(d.getMonth() + 1, width);
      case "D": return pad(d.getDate(), width);
      case "H": return pad(d.getHours(), width);
      case "N": return pad(d.getMinutes(), width);
      case "S": return pad(d.getSeconds(), width);
      case "L": return pad(d.getMilliseconds(), width || 3);
      case "B": return MONTHS[d.getMonth()];
      case "%": return "%";
      default: return m;
    }
  });
}
function parseTimeStamp(s) {
  s = String(s).trim();
  var m = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$/.exec(s);
  if (!m) return new Date(NaN);
  var ms = m[7] ? Math.round(+("0." + m[7]) * 1000) : 0;
  if (m[8]) return new Date(s.replace(" ", "T"));
  return new Date(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0), ms);
}
function escapeUrl(s) { return encodeURIComponent(s === undefined || s === null ? "" : String(s)); }
function escapeXmlStr(s) { return escAttr(s === undefined || s === null ? "" : String(s)).replace(/>/g, "&gt;").replace(/'/g, "&apos;"); }
var DOMDocument = {
  fromXMLString: function (s) { var d = wrap(parseXML(s)); return domDoc(d); },
  newDocument: function (name) { return domDoc(wrap(new XNode(String(name)))); }
};
function domDoc(x) {
  return { root: x, documentElement: domEl(x.__node), toXMLString: function () { return x.toXMLString(); }, toXML: function () { return x; } };
}
function domEl(n) {
  return {
    tagName: n.n, nodeName: n.n,
    getAttribute: function (k) { return n.a[k] === undefined ? "" : n.a[k]; },
    setAttribute: function (k, v) { n.a[k] = String(v); },
    hasAttribute: function (k) { return n.a[k] !== undefined; },
    getElements: function (name) { return kids(n, name === undefined ? "*" : name).map(domEl); },
    getFirstElement: function (name) { var k = kids(n, name === undefined ? "*" : name); return k.length ? domEl(k[0]) : null; },
    get textContent() { return text(n); },
    toXMLString: function () { return ser(n, true); },
    toXML: function () { return wrap(n); }
  };
}

// ---- run control (called by engine.py)
function begin(cfg) {
  RUN.deadline = cpu() + cfg.cpu; RUN.tripped = false; RUN.line = 0; left = CHK_EVERY;
  Object.keys(cfg.globals || {}).forEach(function (k) { G[k] = cfg.globals[k]; });
  (cfg.namespaces || []).forEach(function (ns) { if (!(ns in G)) G[ns] = namespaceObject(ns); });
  return true;
}
function end(names) {
  var out = {}, out1 = function (x) { return isXML(x) || x instanceof Date ? outv(x) : x; };
  names.forEach(function (k) {
    var v = G[k];
    if (v === undefined) return;
    try { out[k] = JSON.parse(JSON.stringify(v, function (_, x) { return isXML(x) || x instanceof Date ? out1(x) : x; })); } catch (e) { out[k] = null; }
  });
  return JSON.stringify({ tripped: RUN.tripped, globals: out });
}
function errInfo(e) {
  var o = { name: "", message: "", stack: "", code: "", limit: "", isNull: e === null };
  if (e && typeof e === "object") {
    o.name = String(e.name || ""); o.message = String(e.message === undefined ? e : e.message);
    o.stack = String(e.stack || ""); o.code = String(e.code || ""); o.limit = e.__limit || "";
  } else { o.message = String(e); o.line = RUN.line; }
  if (RUN.tripped) o.limit = "time";
  return JSON.stringify(o);
}

var API = {
  __str: function (v) { return v === undefined || v === null ? "" : String(v); },
  __chk: chk, __ln: ln, __xml: xmlLit, __each: each, __xmlText: xmlText, __xmlAttr: xmlAttr,
  __errInfo: errInfo, __hcall: hcall, __callLib: callLib, __out: out, __in: inn, __fromJ: fromJ, __wrap: wrap,
  XML: XML, XMLList: XMLList, NLWS: NLWS, xtk: namespaceObject("xtk"), nms: namespaceObject("nms"),
  logInfo: logger("info"), logWarning: logger("warning"), logError: logger("error"), logVerbose: logger("verbose"),
  getOption: function (name) { return hcall("getOption", { name: String(name) }); },
  setOption: function (name, value) { hcall("setOption", { name: String(name), value: out(value) }); },
  loadLibrary: function (name) { var src = hcall("loadLibrary", { name: String(name) }); if (src) (0, eval)(src); },
  sqlGetInt: function (sql) { return hcall("sql", { mode: "int", sql: String(sql), args: Array.prototype.slice.call(arguments, 1).map(out) }); },
  sqlGetString: function (sql) { return hcall("sql", { mode: "string", sql: String(sql), args: Array.prototype.slice.call(arguments, 1).map(out) }); },
  sqlSelect: function (def, sql) { return wrap(fromJ(hcall("sql", { mode: "select", def: String(def), sql: String(sql), args: Array.prototype.slice.call(arguments, 2).map(out) }))); },
  sqlExec: function (sql) { return hcall("sql", { mode: "exec", sql: String(sql), args: Array.prototype.slice.call(arguments, 1).map(out) }); },
  formatDate: formatDate, parseTimeStamp: parseTimeStamp, escapeUrl: escapeUrl, escapeXmlStr: escapeXmlStr,
  DOMDocument: DOMDocument, __ns: namespaceObject
};
Object.keys(API).forEach(function (k) {
  Object.defineProperty(G, k, { value: API[k], writable: false, enumerable: false, configurable: false });
});
// run control, taken (and deleted) by engine.py before any user code runs
Object.defineProperty(G, "__internal", { value: { begin: begin, end: end }, configurable: true });
[Math, JSON, Reflect].forEach(Object.freeze);
})(globalThis);
"""
