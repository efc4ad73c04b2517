// IMS-style bearer tokens with the official SDK: `ofImsBearerToken` (no logon call, every request carries
// `Authorization: Bearer`) and `ofBearerToken` (exchanged for a session through BearerTokenLogon).
// Usage: ACC_URL=... ACC_IMS_TOKEN=<access token> node ims.js   -> prints one JSON line with the results.
"use strict";
const sdk = require("@adobe/acc-js-sdk");

async function main() {
  const url = process.env.ACC_URL;
  const token = process.env.ACC_IMS_TOKEN;
  const out = {};
  const direct = await sdk.init(sdk.ConnectionParameters.ofImsBearerToken(url, token, { noStorage: true }));
  await direct.logon();
  const count = await direct.NLWS.xtkQueryDef.create({ schema: "nms:recipient", operation: "count" }).executeQuery();
  out.directCount = count.count;
  out.directServerTime = String(await direct.NLWS.xtkSession.getServerTime());
  const exchanged = await sdk.init(sdk.ConnectionParameters.ofBearerToken(url, token, { noStorage: true }));
  await exchanged.logon();
  out.exchangedLogin = exchanged.getSessionInfo().userInfo.login;
  out.exchangedOption = (await exchanged.getOption("XtkDatabaseId")) ? "set" : "empty";
  try {
    const bad = await sdk.init(sdk.ConnectionParameters.ofImsBearerToken(url, token + "x", { noStorage: true }));
    await bad.logon();
    await bad.NLWS.xtkQueryDef.create({ schema: "nms:recipient", operation: "count" }).executeQuery();
    out.tampered = "accepted";
  } catch (err) {
    out.tampered = err.errorCode || String(err.message || err);
  }
  console.log(JSON.stringify(out));
}

main().catch((err) => { console.error(err); process.exit(1); });
