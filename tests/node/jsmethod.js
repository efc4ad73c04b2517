// A schema method implemented in a JavaScript library, called through the unchanged SDK.
// The library is stored with a Write of xtk:javascript (as any client would), then called:
// static (cus:greeter#Hello), non-static with the updated `this` (Rename), and a JS fault (Fail).
// Usage: ACC_URL=... ACC_USER=admin ACC_PASSWORD=... node jsmethod.js -> one JSON line.
"use strict";
const sdk = require("@adobe/acc-js-sdk");

const LIBRARY = `function cus_greeter_Hello(name) { logInfo("hello called"); return "Hello " + name; }
function cus_greeter_Rename(self, label) { var prev = self.@label; self.@label = label; return prev; }
function cus_greeter_Fail() { throw "CUS-000001 It failed"; }`;

async function main() {
  const client = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(
    process.env.ACC_URL, process.env.ACC_USER, process.env.ACC_PASSWORD, { noStorage: true }));
  await client.logon();
  await client.NLWS.xtkSession.write({ xtkschema: "xtk:javascript", _key: "@namespace,@name",
    namespace: "cus", name: "greeter.js", $data: LIBRARY });
  const out = {};
  out.hello = await client.NLWS.cusGreeter.hello("Ann");
  const greeter = client.NLWS.cusGreeter.create({ label: "old" });
  out.previous = await greeter.rename("new");
  out.thisLabel = greeter.entity.label;
  try {
    await client.NLWS.cusGreeter.fail();
    out.fault = "no fault";
  } catch (err) {
    out.fault = err.errorCode;
    out.faultMessage = [err.faultString, err.detail, err.message].filter(Boolean).join(" | ");
  }
  console.log(JSON.stringify(out));
}

main().catch((err) => { console.error(err); process.exit(1); });
