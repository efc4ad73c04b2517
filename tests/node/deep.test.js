// Deeper checks with the official SDK: data written through it is read back through it.
// Run: ACC_URL=... ACC_USER=admin ACC_PASSWORD=... node --test deep.test.js
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const sdk = require("@adobe/acc-js-sdk");

const url = process.env.ACC_URL;
const run = Date.now().toString(36); // keeps rows of this run apart from earlier ones
let client;

function query(def) {
  return client.NLWS.xtkQueryDef.create(Object.assign({ schema: "nms:recipient" }, def)).executeQuery();
}

test.before(async () => {
  client = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(url, process.env.ACC_USER, process.env.ACC_PASSWORD,
    { noStorage: true }));
  await client.logon();
});

test.after(async () => { await client.logoff(); });

test("written rows are read back through select, get and count", async () => {
  const emails = [1, 2, 3, 4, 5].map((i) => `deep${i}.${run}@example.com`);
  await client.NLWS.xtkSession.write({ xtkschema: "nms:recipient", _operation: "insert", email: emails[0],
    firstName: "Ada", lastName: "Lovelace", name: `deep-${run}`, $desc: "first" });
  await client.NLWS.xtkSession.writeCollection({ xtkschema: "nms:recipient",
    recipient: emails.slice(1).map((email, i) => ({ _operation: "insert", email, firstName: `F${i + 2}`, name: `deep-${run}` })) });

  const all = await query({ operation: "select", select: { node: [{ expr: "@email" }, { expr: "@firstName" }, { expr: "desc" }] },
    where: { condition: [{ expr: sdk.escapeXtk`@name = ${"deep-" + run}` }] }, orderBy: { node: [{ expr: "@email" }] } });
  assert.deepEqual(all.recipient.map((r) => r.email), emails);
  assert.equal(all.recipient[0].firstName, "Ada");

  const one = await query({ operation: "get", select: { node: [{ expr: "@id" }, { expr: "@lastName" }] },
    where: { condition: [{ expr: sdk.escapeXtk`@email = ${emails[0]}` }] } });
  assert.equal(one.lastName, "Lovelace");
  assert.ok(Number(one.id) > 0);

  const count = await query({ operation: "count", where: { condition: [{ expr: sdk.escapeXtk`@name = ${"deep-" + run}` }] } });
  assert.equal(count.count, "5");

  // update through Write with a key, then read the change back
  await client.NLWS.xtkSession.write({ xtkschema: "nms:recipient", _key: "@email", email: emails[0], lastName: "Byron" });
  const updated = await query({ operation: "get", select: { node: [{ expr: "@lastName" }] },
    where: { condition: [{ expr: sdk.escapeXtk`@email = ${emails[0]}` }] } });
  assert.equal(updated.lastName, "Byron");
});

// Selecting a text element (`desc`) gives `<desc>first</desc>` (soap-protocol.md §7), i.e. `$desc` in SimpleJson.
test("text elements come back as child elements", async () => {
  const rows = await query({ operation: "select", select: { node: [{ expr: "@email" }, { expr: "desc" }] },
    where: { condition: [{ expr: sdk.escapeXtk`@email = ${"deep1." + run + "@example.com"}` }] } });
  assert.equal(rows.recipient[0].$desc, "first");
});

test("paging with startLine / lineCount follows orderBy", async () => {
  const base = { operation: "select", select: { node: [{ expr: "@email" }] },
    where: { condition: [{ expr: sdk.escapeXtk`@name = ${"deep-" + run}` }] } };
  const pages = [];
  for (let start = 0; start < 6; start += 2) {
    const page = await query(Object.assign({ startLine: start, lineCount: 2, orderBy: { node: [{ expr: "@email", sortDesc: true }] } }, base));
    pages.push(...page.recipient.map((r) => r.email));
  }
  assert.equal(pages.length, 5);
  assert.deepEqual(pages, [...pages].sort().reverse());
  const empty = await query(Object.assign({ startLine: 100, lineCount: 2 }, base));
  assert.deepEqual(empty.recipient, []);
});

test("link fields come back nested", async () => {
  const delivery = client.NLWS.nmsDelivery.create({ label: `Nested ${run}` });
  await delivery.newInstance();
  const id = delivery.entity.id;
  await client.NLWS.xtkSession.write(Object.assign({}, delivery.entity, { internalName: `DM${run}` }));
  const rows = await client.NLWS.xtkQueryDef.create({ schema: "nms:delivery", operation: "get",
    select: { node: [{ expr: "@label" }, { expr: "[createdBy/@name]" }] },
    where: { condition: [{ expr: `@id = ${id}` }] } }).executeQuery();
  assert.equal(rows.label, `Nested ${run}`);
  assert.deepEqual(rows.createdBy, { name: process.env.ACC_USER });
});

test("faults carry Campaign codes", async () => {
  await assert.rejects(query({ operation: "select", select: { node: [{ expr: "@noSuchField" }] } }), (err) => {
    assert.equal(err.name, "CampaignException");
    assert.equal(err.errorCode, "SOP-330011");
    assert.match(err.detail, /XTK-170036/);
    return true;
  });
  await assert.rejects(query({ operation: "get", select: { node: [{ expr: "@id" }] },
    where: { condition: [{ expr: "@email = 'nobody@nowhere.invalid'" }] } }), (err) => err.errorCode === "SOP-330011");
  const wrong = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(url, process.env.ACC_USER, "wrong-password",
    { noStorage: true }));
  await assert.rejects(wrong.logon(), (err) => err.errorCode === "XSV-350012");
});

test("every option type code round-trips through setOption / getOption", async () => {
  const samples = [[1, 12], [2, 1234], [3, 123456], [4, 1.5], [5, 2.25], [6, "text"], [12, "long text"],
    [13, "short memo"], [15, true], [15, false]];
  const columns = { 1: "longValue", 2: "longValue", 3: "longValue", 15: "longValue", 4: "doubleValue", 5: "doubleValue",
    6: "stringValue", 12: "memoValue", 13: "memoValue" };
  for (const [type, value] of samples) {
    const name = `DeepOpt${type}_${value}_${run}`;
    // create the option with its type (as an administrator would), then change it the SDK way
    await client.NLWS.xtkSession.write({ xtkschema: "xtk:option", _operation: "insert", name, dataType: type,
      [columns[type]]: typeof value === "string" ? "x" : (type === 15 ? !value : 0) });
    await client.setOption(name, value);
    await client.clearOptionCache();
    assert.equal(await client.getOption(name, false), value, `type ${type}`);
    const [raw, rawType] = await client.NLWS.xtkSession.getOption(name);
    assert.equal(rawType, type);
    assert.equal(typeof raw, "string");
  }
  // The SDK's setOption cannot send dates (a Date becomes an empty element) nor timespans (SDK-000006):
  // those options are written with Write, and read back with the right type.
  const stamp = new Date("2024-05-06T07:08:09.123Z");
  const direct = [[7, "timeStampValue", stamp.toISOString(), stamp], [10, "timeStampValue", "2024-05-06", new Date("2024-05-06T00:00:00.000Z")],
    [14, "doubleValue", 90, 90]];
  for (const [type, column, written, expected] of direct) {
    const name = `DeepOpt${type}_${run}`;
    await client.NLWS.xtkSession.write({ xtkschema: "xtk:option", _operation: "insert", name, dataType: type, [column]: written });
    const read = await client.getOption(name, false);
    if (expected instanceof Date) assert.equal(read.toISOString(), expected.toISOString(), `type ${type}`);
    else assert.equal(read, expected, `type ${type}`);
  }
  await assert.rejects(client.setOption(`DeepOpt7_${run}`, new Date()), (err) => err.errorCode === "SOP-330011"
    && /setOption cannot send dates/.test(err.detail));
});

test("mutable calls: NewInstance, Duplicate and SelectAll return the updated object", async () => {
  const delivery = client.NLWS.nmsDelivery.create({ label: `Dup ${run}` });
  await delivery.newInstance();
  assert.equal(delivery.entity._operation, "insert");
  await client.NLWS.xtkSession.write(delivery.entity);
  const copy = client.NLWS.nmsDelivery.create({});
  await copy.duplicate(`nms:delivery|${delivery.entity.id}`);
  assert.equal(copy.entity.label, `Dup ${run}`);
  assert.notEqual(copy.entity.id, delivery.entity.id);

  const qd = client.NLWS.xtkQueryDef.create({ schema: "nms:recipient", operation: "select" });
  await qd.selectAll(false);
  const exprs = qd.inspect().select.node.map((n) => n.expr);
  assert.ok(exprs.includes("@email") && exprs.includes("@id"));
});

test("BuildQuery returns the SQL; GetNewIds reserves ids; DeleteCollection deletes", async () => {
  const sql = await client.NLWS.xtkQueryDef.create({ schema: "nms:recipient", operation: "select",
    select: { node: [{ expr: "@email" }] } }).buildQuery();
  assert.match(sql, /NmsRecipient/);
  const ids = (await client.NLWS.xtkSession.getNewIds(3)).split(",");
  assert.equal(ids.length, 3);
  await client.NLWS.xtkSession.deleteCollection("nms:recipient",
    { condition: { expr: sdk.escapeXtk`@email = ${"deep5." + run + "@example.com"}` } }, false);
  const count = await query({ operation: "count", where: { condition: [{ expr: sdk.escapeXtk`@name = ${"deep-" + run}` }] } });
  assert.equal(count.count, "4");
});

test("xml representation keeps the result element", async () => {
  const xml = await client.NLWS.xml.xtkQueryDef.create(client.DomUtil.parse(
    `<queryDef schema="nms:recipient" operation="select" lineCount="2"><select><node expr="@email"/></select>
     <where><condition expr="@name = 'deep-${run}'"/></where><orderBy><node expr="@email"/></orderBy></queryDef>`)).executeQuery();
  assert.equal(xml.nodeName, "recipient-collection");
  assert.equal(xml.getElementsByTagName("recipient").length, 2);
});
