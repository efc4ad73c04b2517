// The 29-step conformance script of soap-protocol.md §11, run with the official SDK over real HTTP.
// Usage: ACC_URL=http://127.0.0.1:8080 ACC_USER=admin ACC_PASSWORD=... [ACC_IMS_TOKEN=...] node conformance.js
// Prints one line per step and "N/29 OK" last; exits 0 only when every step passed.
"use strict";
const sdk = require("@adobe/acc-js-sdk");

const url = process.env.ACC_URL;
const user = process.env.ACC_USER || "admin";
const password = process.env.ACC_PASSWORD || "";
const outcomes = [];

async function step(label, body) {
  try {
    const value = await body();
    outcomes.push(true);
    console.log("OK  ", label, JSON.stringify(value));
  } catch (err) {
    outcomes.push(false);
    console.log("FAIL", label, (err && err.message) || err);
  }
}

function recipientQuery(operation, extra) {
  return Object.assign({ schema: "nms:recipient", operation,
    select: { node: [{ expr: "@id" }, { expr: "@name" }] } }, extra || {});
}

async function main() {
  const anonymous = await sdk.init(sdk.ConnectionParameters.ofAnonymousUser(url, { noStorage: true }));
  await step("01 /r/test (anonymous)", () => anonymous.test());
  await step("02 anonymous GetServerTime via makeSoapCall", async () => {
    const out = await anonymous.makeSoapCall("xtk:session", "GetServerTime", true, [], [{ name: "serverTime", type: "datetime" }]);
    return out[0];
  });

  const client = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(url, user, password, {
    noStorage: true, clientApp: "conformance/1.0", enableRequestIdHeader: true,
    refreshClient: async (c) => { await c.logon(); return c; },
  }));
  client.registerObserver({ onSOAPCall: (call) => console.log("   ->", call.request.headers.SoapAction) });

  await step("03 Logon", async () => { await client.logon(); return client.isLogged(); });
  await step("04 sessionInfo / application", async () => ({
    build: client.application.buildNumber, version: client.application.version,
    login: client.application.operator.login, pkgs: client.application.packages,
  }));
  await step("05 ping.jsp", () => client.ping());
  await step("06 mcPing.jsp", () => client.mcPing());
  await step("07 getOption (xtk:session schema + GetOption)", () => client.getOption("XtkDatabaseId"));
  await step("08 raw GetOption -> [value,type]", () => client.NLWS.xtkSession.getOption("XtkDatabaseId"));
  await step("09 missing option -> null", () => client.getOption("NoSuchOption", false));
  await step("10 setOption (Write xtk:option)", async () => {
    await client.setOption("ConformanceOpt", "v1");
    return client.getOption("ConformanceOpt", false);
  });
  await step("11 GetServerTime (datetime out)", async () => (await client.NLWS.xtkSession.getServerTime()).toISOString());
  await step("12 GetUserInfo (schema-local type)", () => client.NLWS.xtkSession.getUserInfo());
  await step("13 getSchema", async () => (await client.getSchema("nms:extAccount")).name);
  await step("14 getSysEnum", async () => (await client.getSysEnum("nms:extAccount:encryptionType")).name);
  await step("15 getEntityIfMoreRecent", async () =>
    (await client.getEntityIfMoreRecent("xtk:schema", "nms:delivery", "SimpleJson")).name);
  await step("16 select", () => client.NLWS.xtkQueryDef.create(recipientQuery("select", {
    lineCount: 10, where: { condition: [{ expr: sdk.escapeXtk`@name=${"a"}` }] }, orderBy: { node: [{ expr: "@id" }] },
  })).executeQuery());
  await step("17 get", () => client.NLWS.xtkQueryDef.create(recipientQuery("get")).executeQuery());
  await step("18 getIfExists", () => client.NLWS.xtkQueryDef.create(recipientQuery("getIfExists")).executeQuery());
  await step("19 count", () => client.NLWS.xtkQueryDef.create({ schema: "nms:recipient", operation: "count" }).executeQuery());
  await step("20 select, xml representation", async () => {
    const query = client.DomUtil.parse('<queryDef schema="nms:recipient" operation="select"><select><node expr="@id"/></select></queryDef>');
    return client.DomUtil.toXMLString(await client.NLWS.xml.xtkQueryDef.create(query).executeQuery());
  });
  await step("21 Write", () => client.NLWS.xtkSession.write({ xtkschema: "nms:recipient", _operation: "insert",
    email: "x@example.com", $desc: "hello" }));
  await step("22 WriteCollection", () => client.NLWS.xtkSession.writeCollection({ xtkschema: "nms:recipient",
    recipient: [{ _operation: "insert", email: "a@example.com" }, { _operation: "insert", email: "b@example.com" }] }));
  await step("23 NewInstance (non-static, xtk:persist|nms:delivery)", async () => {
    const delivery = client.NLWS.nmsDelivery.create({ label: "Test" });
    await delivery.newInstance();
    return delivery.entity;
  });
  await step("24 per-call headers + pushDown timeout", () =>
    client.NLWS.headers({ "X-Conformance": "1" }).pushDown({ timeout: 30000 }).xtkSession.getOption("XtkDatabaseId"));
  await step("25 SOAP fault -> CampaignException", async () => {
    try {
      await client.NLWS.xtkQueryDef.create({ schema: "nms:doesNotExist", operation: "select" }).executeQuery();
      return "no error?";
    } catch (err) {
      if (err.name !== "CampaignException") throw err;
      return { s: err.statusCode, code: err.errorCode, fc: err.faultCode };
    }
  });
  await step("26 unknown method -> SDK-000009", async () => {
    try { await client.NLWS.xtkSession.noSuchMethod(); } catch (err) { return err.errorCode; }
  });
  await step("27 Logoff", async () => { await client.logoff(); return client.isLogged(); });

  const bearer = await sdk.init(sdk.ConnectionParameters.ofImsBearerToken(url, process.env.ACC_IMS_TOKEN || "ims-token",
    { noStorage: true, sessionInfo: true }));
  await step("28 IMS bearer + sessionInfo", async () => {
    await bearer.logon();
    return { build: bearer.application.buildNumber, login: bearer.application.operator.login };
  });
  const bogus = await sdk.init(sdk.ConnectionParameters.ofSessionAndSecurityToken(url, "bogus", "bogus", { noStorage: true }));
  await step("29 invalid session -> 401 SDK-000012", async () => {
    await bogus.logon();
    try { await bogus.getOption("XtkDatabaseId"); return "no error?"; } catch (err) { return { s: err.statusCode, code: err.errorCode }; }
  });

  const passed = outcomes.filter(Boolean).length;
  console.log(`${passed}/${outcomes.length} OK`);
  process.exitCode = passed === outcomes.length ? 0 : 1;
}

main().catch((err) => { console.error(err); process.exitCode = 2; });
